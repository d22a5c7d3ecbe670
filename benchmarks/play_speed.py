"""Play speed: frames/s end to end in a real headless browser, key-press-to-frame latency, and the
server's step alone, for ``python -m framegan.play`` at 64x64 on this CPU.

End to end = frames drawn by the page (``framegan/play_page.html``) per second of page time while
keys are pressed and released, with ``--fps 0`` (no pacing: as fast as the loop goes): keys over
the WebSocket -> the server runs G -> raw RGB bytes back -> putImageData. Latency = from the
keydown event's timestamp to the end of putImageData of the first frame made with that key (the
display's own refresh delay comes on top and is not measured). "server-only" = ``Game.step`` timed
in this process (no WebSocket, no browser); "step" = the same as the server timed it during the
browser runs, so frame - step is what the transport and the page add. CPU ms per frame of the
server and of chromium come from the OS (psutil), which a busy machine distorts less than wall
time. Each number is one of ``--repeats`` interleaved runs (median and best are printed: the
machine may be shared); every run starts a fresh server process, and its exit after the page is
closed (``/bye``) is checked on the way.

Model: the default config with ``model.actions=18`` (the full ALE action set, random weights;
speed does not depend on the weights), unless ``--checkpoint`` is given.

    python benchmarks/play_speed.py [--threads 1 2] [--fps 0] [--seconds 5] [--repeats 3] [--checkpoint CKPT]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import torch

from framegan.checkpoint import save_checkpoint
from framegan.config import load_config, to_dict
from framegan.nets import build_generator, count_params
from framegan.play import load_context, load_model, make_game
from framegan.precision import describe_cpu
from framegan.sample_game import episodes
from framegan.store import StoreWriter

TARGET_FPS = 30     # issue 12: end to end, 64x64, 2 CPU cores (DIAMOND: 15 fps on a GPU)
ALE = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
       "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE"]
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"]
KEYS = ["ArrowLeft", "ArrowUp", "ArrowRight", "Space"]


def build_default(root: Path) -> tuple[Path, Path]:
    """A checkpoint of the default config with 18 actions (random weights) and a 64x64 store of the
    sample game to start from."""
    store = root / "store"
    with StoreWriter(store, size=(64, 64), fps=15.0) as w:
        for frame in next(episodes(1, seed=0, size=64)).frames:
            w.add(frame, source="sample")
    cfg = load_config(None, ["model.actions=18", f"data.root={store}"])
    torch.manual_seed(0)
    weights = build_generator(cfg.model, cfg.data.context).state_dict()
    info = {"size": [64, 64], "crop": "none", "fps": 15.0, "actions": {"values": list(range(18)), "names": ALE}}
    ckpt = root / "default.pt"
    save_checkpoint(ckpt, {"step": 0, "config": to_dict(cfg), "store": info, "G": weights, "G_ema": weights})
    return ckpt, store


def server_only(ckpt: Path, context: str | None, threads: int, seconds: float) -> float:
    """ms per ``Game.step`` in this process (what /step does, without HTTP and browser).

    Timed in a worker thread, as the server runs it: on the shared machine torch with 2 threads was
    several times slower called from the main thread than from a worker thread (each thread gets its
    own OpenMP team), so the main thread would not stand for the server."""
    torch.set_num_threads(threads)
    G, cfg, info = load_model(ckpt)  # the backend play itself runs (auto: ONNX Runtime at batch 1)
    ctx, _, _ = load_context(context, cfg, info, G.context, None, None)
    game = make_game(G, cfg, info, ctx, seed=0)
    result = []

    def timed():
        for _ in range(5):
            game.step(["ArrowLeft"])
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            game.step(["ArrowLeft"] if n % 20 < 10 else [])
            n += 1
        result.append((time.perf_counter() - t0) / n * 1e3)

    worker = threading.Thread(target=timed)
    worker.start()
    worker.join()
    return result[0]


def cpu_seconds(procs) -> float:
    """User + system CPU seconds of these processes (ones that ended meanwhile count 0)."""
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


@dataclass
class Run:
    fps: float             # frames drawn per second of page time
    latencies: list        # ms, key press -> first frame with that key drawn
    step_ms: float         # mean X-Step-Ms: the server's G step as the page saw it
    server_cpu_ms: float   # CPU ms per frame of the server process
    browser_cpu_ms: float  # CPU ms per frame of chromium (all its processes) and the playwright driver
    exit_code: int | None  # the server's, after the page was closed


def browser_run(browser, ckpt: Path, context: str | None, threads: int, fps: float, seconds: float) -> Run:
    """One served session: start the server, open the page, press keys for ``seconds``, close the page."""
    cmd = [sys.executable, "-m", "framegan.play", "--checkpoint", str(ckpt), "--no-browser", "--threads", str(threads),
           "--fps", str(fps), "--seed", "0", "--idle-timeout", "0"] + (["--context", context] if context else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = next(line.strip() for line in proc.stdout if line.startswith("http://"))
        page = browser.new_page(viewport={"width": 800, "height": 700})
        page.goto(url)
        page.wait_for_function("framegan.ready && framegan.frames > 20", timeout=60000)
        server = [psutil.Process(proc.pid)]
        others = [c for c in psutil.Process().children(recursive=True) if c.pid != proc.pid]  # driver + chromium
        c0, b0 = cpu_seconds(server), cpu_seconds(others)
        f0, t0, s0, n0 = page.evaluate("[framegan.frames, performance.now(), framegan.stepTotal,"
                                       " framegan.latencies.length]")
        end, i = time.perf_counter() + seconds, 0
        while time.perf_counter() < end:  # press a key, hold it a little, release, next key
            key = KEYS[i % len(KEYS)]
            page.keyboard.down(key)
            time.sleep(0.15)
            page.keyboard.up(key)
            time.sleep(0.1)
            i += 1
        f1, t1, s1, lat = page.evaluate("[framegan.frames, performance.now(), framegan.stepTotal, framegan.latencies]")
        c1, b1 = cpu_seconds(server), cpu_seconds(others)
        page.goto("about:blank")  # pagehide -> /bye: the server stops after its grace period
        page.close()
        proc.communicate(timeout=30)
        frames = max(f1 - f0, 1)
        return Run(frames / (t1 - t0) * 1e3, lat[n0:], (s1 - s0) / frames, (c1 - c0) / frames * 1e3,
                   (b1 - b0) / frames * 1e3, proc.returncode)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint to play (default: built here, see above)")
    ap.add_argument("--context", default=None, help="video or store (default: the checkpoint's training store)")
    ap.add_argument("--threads", type=int, nargs="+", default=sorted({1, len(os.sched_getaffinity(0))}))
    ap.add_argument("--fps", type=float, nargs="+", default=[0.0], help="page pacing (0 = as fast as possible)")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = ap.parse_args(argv)
    if args.chromium is None:
        print("error: chromium not found (apt-get install chromium)", file=sys.stderr)
        return 2
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: playwright not installed (pip install playwright)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="play-bench-") as tmp:
        ckpt = Path(args.checkpoint) if args.checkpoint else build_default(Path(tmp))[0]
        G, _, info = load_model(ckpt)
        h, w = info.get("size", ["?", "?"])
        print(f"CPU: {describe_cpu()}; torch {torch.__version__}")
        print(f"model: {'default config + model.actions=18, random weights' if not args.checkpoint else ckpt}; "
              f"{count_params(G.G) / 1e6:.2f} M params, {h}x{w}, K={G.context}, {G.num_actions} actions, "
              f"{G.describe(1)} at batch 1 (what framegan.play runs)")
        print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)

        configs = [(n, f) for n in args.threads for f in args.fps]
        runs: dict[tuple, list[Run]] = {c: [] for c in configs}
        alone: dict[int, list[float]] = {n: [] for n in args.threads}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=BROWSER_ARGS)
            try:
                browser_version = browser.version
                for r in range(args.repeats):  # interleaved, so a burst of load hits every config alike
                    for n in args.threads:
                        alone[n].append(server_only(ckpt, args.context, n, min(args.seconds, 3.0)))
                    for c in configs:
                        run = browser_run(browser, ckpt, args.context, *c, args.seconds)
                        runs[c].append(run)
                        print(f"  repeat {r + 1}: threads {c[0]}, fps cap {c[1]:g}: {run.fps:.1f} frames/s, "
                              f"step {run.step_ms:.1f} ms, CPU ms/frame server {run.server_cpu_ms:.1f} browser "
                              f"{run.browser_cpu_ms:.1f}, {len(run.latencies)} key presses; "
                              f"load {os.getloadavg()[0]:.1f}", flush=True)
            finally:
                browser.close()

    med = lambda xs: statistics.median(xs) if xs else float("nan")
    print(f"\nchromium {browser_version} headless; {args.repeats} repeats of {args.seconds:g} s; "
          f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"{'threads':>7}{'fps cap':>8}{'end-to-end f/s':>16}{'key->frame ms':>15}{'frame':>7}{'step':>7}"
          f"{'rest':>7}{'server-only':>12}{'CPU ms/frame':>20}{'sequential':>12}")
    print(f"{'':>7}{'':>8}{'median (best)':>16}{'median / p90':>15}{'ms':>7}{'ms':>7}{'ms':>7}{'f/s':>12}"
          f"{'server + browser':>20}{'est. f/s':>12}")
    for n, f in configs:
        rs = runs[n, f]
        fps, step = med([r.fps for r in rs]), med([r.step_ms for r in rs])
        lat = [x for r in rs for x in r.latencies]
        p90 = float(np.percentile(lat, 90)) if lat else float("nan")
        scpu, bcpu = med([r.server_cpu_ms for r in rs]), med([r.browser_cpu_ms for r in rs])
        print(f"{n:>7}{f:>8g}{fps:>9.1f} ({max(r.fps for r in rs):>4.1f}){med(lat):>8.1f} / {p90:>4.0f}"
              f"{1e3 / fps:>7.1f}{step:>7.1f}{1e3 / fps - step:>7.1f}{1e3 / med(alone[n]):>12.1f}"
              f"{scpu:>11.1f} + {bcpu:>5.1f}{1e3 / (scpu + bcpu):>12.1f}")
    print("frame = 1000 / end-to-end f/s; step = the server's G step as it reported it to the page, same runs;\n"
          "rest = frame - step (transport, page, waiting for a CPU); server-only = Game.step in this process,\n"
          "no WebSocket or browser; CPU ms/frame = CPU time of the server process and of chromium + driver per\n"
          "frame drawn; sequential est. = 1000 / (their sum): an estimate (not a measurement) of frames/s on an\n"
          "idle machine if server and browser ran one after the other for every frame, at the CPU cost measured here")
    unpaced = {n: med([r.fps for r in v]) for (n, f), v in runs.items() if f == 0}
    if unpaced:
        n, fps = max(unpaced.items(), key=lambda kv: kv[1])
        print(f"\nend to end at 64x64: {fps:.0f} frames/s (median, {n} threads) vs target {TARGET_FPS}: "
              f"{'met' if fps >= TARGET_FPS else 'NOT met'}")
    exits = [r.exit_code for v in runs.values() for r in v]
    print(f"server exits after the page closed: {sum(c == 0 for c in exits)}/{len(exits)} clean (exit code 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
