"""How close is extraction to decoding speed, and does loading keep up with training?

    python benchmarks/extract_speed.py [--sizes 640x480 1920x1080] [--seconds 60 10] [--repeats 2]

For each size, generates a 30 fps H.264 video (yuv420p, like most recordings) of moving content
(by default 60 s at 640x480 and 10 s at 1080p), then measures in the same run, best of ``--repeats``:
  decode only   PyAV decoding every frame, no pixel conversion: with threads AUTO, as extraction
                uses (FFmpeg starts CPUs + 1 frame threads), and with one thread per CPU, which
                decodes alone 15-35 % faster on a 2-core EPYC (but extracts no faster)
  naive         decode + full-size ``to_ndarray("rgb24")`` + cv2 INTER_AREA to 64x64 (for contrast)
  extract       the real thing: ``framegan.extract.extract`` to a 64x64 store, scene cuts on
  worst case    the same with the scene-cut colour gate off, so that every frame goes through the
                block-matching structure test (as in fast 3D footage; here it only runs on frames
                whose thumbnails change, which this slow scroll never does)
and prints extraction frames/s over the faster decode-only frames/s (target >= 0.8) and over
decode-only with extraction's own decoder settings, then dataset windows/s
for batches of 64 (context 4 + 1) through ``make_loader`` and through a plain per-item DataLoader.
Frames are uint8 (H, W, 3) until the dataset turns them into (B, T, C, H, W) floats in [-1, 1].
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framegan import scenecut
from framegan.data import ClipDataset, make_loader
from framegan.extract import extract
from framegan.precision import describe_cpu
from framegan.video import write_video


def gameplay_like(n: int, h: int = 480, w: int = 640):
    """A scrolling textured background with sprites moving over it: no scene cuts."""
    rng = np.random.default_rng(0)
    width = w + 2 * n  # scrolls 2 px per frame and never wraps (a wrap would be a scene cut)
    tiles = cv2.resize(rng.integers(0, 256, (h // 16, width // 16 + 1, 3), dtype=np.uint8),
                       ((width // 16 + 1) * 16, h), interpolation=cv2.INTER_NEAREST)
    for t in range(n):
        frame = tiles[:, 2 * t:2 * t + w].copy()
        for k in range(6):
            x = int((w - 48) * (0.5 + 0.5 * np.sin(t / (20 + 7 * k) + k)))
            y = int((h - 48) * (0.5 + 0.5 * np.cos(t / (25 + 5 * k) + 2 * k)))
            frame[y:y + 48, x:x + 48] = (255 - 40 * k, 40 * k, 200)
        yield frame


def timed(fn) -> tuple[float, float]:
    """(frames per wall second, frames per CPU second of this process, all threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    n = fn()
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def decode_only(path: Path, threads: int = 0) -> int:
    """Frames decoded; ``threads`` 0 lets FFmpeg choose (AUTO), as extraction does."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.thread_count = threads
        return sum(1 for _ in container.decode(stream))


def naive(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0
        for frame in container.decode(stream):
            cv2.resize(frame.to_ndarray(format="rgb24"), (64, 64), interpolation=cv2.INTER_AREA)
            n += 1
    return n


def extraction(path: Path, out: Path) -> int:
    summary = extract([path], out, size=64, overwrite=True, progress=False)
    assert summary["segments"] == 1, summary  # no false scene cuts in continuous motion
    return summary["frames_in"]


def extraction_ungated(path: Path, out: Path) -> int:
    gate, scenecut.GATE = scenecut.GATE, -1.0
    try:
        return extraction(path, out)
    finally:
        scenecut.GATE = gate


def windows_per_second(loader, batches: int) -> float:
    t0, n = time.perf_counter(), 0
    for i, (clips, _actions) in enumerate(loader):
        n += len(clips)
        if i + 1 == batches:
            break
    return n / (time.perf_counter() - t0)


def measure(size: tuple[int, int], seconds: float, repeats: int) -> tuple[dict, dict, float, float]:
    w, h = size
    with tempfile.TemporaryDirectory() as tmp:
        video, store = Path(tmp) / "game.mp4", Path(tmp) / "store"
        t0 = time.perf_counter()
        n = write_video(video, gameplay_like(int(seconds * 30), h, w), 30, crf=23,
                        pix_fmt="yuv420p", preset="veryfast")
        print(f"generated {n} frames {w}x{h} @ 30 fps in {time.perf_counter() - t0:.1f} s "
              f"({video.stat().st_size / 1e6:.1f} MB)", flush=True)
        cpus = len(os.sched_getaffinity(0))
        methods = {"decode": lambda: decode_only(video),
                   "decode_cpus": lambda: decode_only(video, cpus), "naive": lambda: naive(video),
                   "extract": lambda: extraction(video, store),
                   "worst": lambda: extraction_ungated(video, store)}
        wall, cpu = dict.fromkeys(methods, 0.0), dict.fromkeys(methods, 0.0)
        for _ in range(repeats):  # interleaved, so a busy moment hits every method alike
            for name, fn in methods.items():
                fw, fc = timed(fn)
                wall[name], cpu[name] = max(wall[name], fw), max(cpu[name], fc)
        ds = ClipDataset(store, context=4, horizon=1, split="all")
        batched = windows_per_second(make_loader(ds, 64, seed=0), 30)
        per_item = windows_per_second(DataLoader(ds, batch_size=64, shuffle=True), 10)
    return wall, cpu, batched, per_item


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", default=["640x480", "1920x1080"], help="WxH of the test videos")
    p.add_argument("--seconds", type=float, nargs="+", default=[60, 10], help="length of each test video")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    print(f"CPU: {describe_cpu()}")
    for k, text in enumerate(args.sizes):
        size = tuple(int(v) for v in text.lower().split("x"))
        seconds = args.seconds[min(k, len(args.seconds) - 1)]
        wall, cpu, batched, per_item = measure(size, seconds, args.repeats)
        print(f"\n{text}, {'best of ' + str(args.repeats):38s} {'frames/s':>9s} {'ratio':>6s} "
              f"{'frames/cpu-s':>13s} {'ratio':>6s}")
        rows = [("decode only (PyAV, no conversion, threads AUTO)", "decode"),
                ("decode only, one thread per CPU", "decode_cpus"),
                ("naive: full-size rgb24 + cv2 INTER_AREA 64x64", "naive"),
                ("extract to 64x64 store (framegan.extract)", "extract"),
                ("worst case: every frame block-matched", "worst")]
        fastest = max(("decode", "decode_cpus"), key=wall.get)  # ratios are against this row
        for label, key in rows:
            print(f"{label:48s} {wall[key]:9.0f} {wall[key] / wall[fastest]:6.2f} "
                  f"{cpu[key]:13.0f} {cpu[key] / cpu[fastest]:6.2f}")
        ratio = wall["extract"] / wall[fastest]
        print(f"{text}: extraction / fastest decode-only = {ratio:.2f} in frames/s (target >= 0.8: "
              f"{'met' if ratio >= 0.8 else 'NOT met'}); against decode-only with extraction's "
              f"threads AUTO {wall['extract'] / wall['decode']:.2f}; "
              f"{cpu['extract'] / cpu[fastest]:.2f} in frames per CPU-second (steadier when other "
              "processes share the cores)")
        print(f"{'dataset, batch 64 of 5 x 64x64 frames':48s} {'windows/s':>9s}")
        print(f"{'make_loader (one to_model per batch)':48s} {batched:9.0f}")
        print(f"{'DataLoader(batch_size=64), per-item to_model':48s} {per_item:9.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
