"""Does scene-cut detection find the real cuts and leave camera motion and flashes alone?

    python benchmarks/scenecut_quality.py [--vizdoom data/vizdoom_deathmatch.mp4 ...]
        [--thresholds 0.8,0.87,0.95] [--episodes 400]

Footage, each decoded to 64x64 as ``tools/extract_frames.py`` does, with its true cuts:
  sample game   ``framegan.sample_game`` video; every episode start is a cut (new palette).
  synthetic     4 textured scenes, each panned up to 5 px/frame with colour flashes (a blend
                toward red or white) and a brightness drop; the 3 scene changes are the cuts.
  vizdoom       each ``--vizdoom`` recording (``tools/record_vizdoom.py``); its episode starts,
                from the recorder's ``<stem>.cuts.npy``, are the truth; the detector never sees
                that file, and the extractor run below reads a sidecar-free link to the video.
For the old detector (16x16 RGB thumbnail difference > 0.05) and ``framegan.scenecut`` at each
threshold it prints cuts found / true cuts, false cuts, precision, recall, the segments kept and
dropped (shorter than 5 frames, as the extractor does) against the true number of scenes, and
the detector's CPU time per frame. Frames are uint8 (H, W, 3) throughout.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from framegan import sample_game
from framegan.extract import extract
from framegan.precision import describe_cpu
from framegan.preprocess import Preprocess
from framegan.scenecut import SCENE_THRESHOLD, SceneCuts, colour_change, thumbnail
from framegan.video import write_video

MIN_SEGMENT = 5  # the extractor's default


def decoded(path: Path) -> np.ndarray:
    return np.stack([f.image for f in Preprocess(64, "none").iter_video(path)])


def pans_and_flashes(seed: int = 0, scenes: int = 4, length: int = 120, size: int = 64):
    """uint8 (scenes * length, size, size, 3) and the cut indices: a 128x128 window panning over
    a 192x768 textured picture (colour noise + rectangles), flashes on 2 frames in every 37, a
    40 % brightness drop on 1 in 53, a new picture for each scene."""
    rng = np.random.default_rng(seed)
    frames, cuts = [], []
    for _ in range(scenes):
        cells = rng.integers(0, 256, (12, 48, 3)).astype(np.float32)
        picture = cv2.resize(cells, (768, 192), interpolation=cv2.INTER_CUBIC)
        for _ in range(40):
            x, y = (int(v) for v in rng.integers(0, (768, 192)))
            w, h = (int(v) for v in rng.integers(8, 40, 2))
            cv2.rectangle(picture, (x, y), (x + w, y + h), [int(c) for c in rng.integers(0, 256, 3)], -1)
        x, y, speed = float(rng.integers(0, 300)), 32.0, 0.0
        for t in range(length):
            if t % 20 == 0:
                speed = float(rng.uniform(-10, 10))  # px per frame in the 128 window: 5 at 64
            x = float(np.clip(x + speed, 0, 768 - 130))
            y = float(np.clip(y + rng.uniform(-2, 2), 0, 192 - 130))
            frame = cv2.resize(picture[int(y):int(y) + 128, int(x):int(x) + 128], (size, size),
                               interpolation=cv2.INTER_AREA)
            if t % 37 in (5, 6):
                frame = 0.4 * frame + 0.6 * np.float32([255, 40, 20] if t % 2 else [255, 255, 255])
            if t % 53 == 30:
                frame = frame * 0.4
            frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        cuts.append(len(frames))
    return np.stack(frames), np.array(cuts[:-1])


def old_cuts(frames: np.ndarray) -> tuple[np.ndarray, float]:
    t0 = time.process_time()
    thumbs = [thumbnail(f) for f in frames]
    cut = np.array([False] + [colour_change(a, b) > 0.05 for a, b in zip(thumbs, thumbs[1:])])
    return cut, (time.process_time() - t0) / len(frames)


def new_cuts(frames: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    scenes = SceneCuts(threshold)
    t0 = time.process_time()
    cut = np.array([scenes.detect(f) for f in frames])
    return cut, (time.process_time() - t0) / len(frames)


def segments(cut: np.ndarray) -> tuple[int, int]:
    """(kept, dropped) segments: runs between cuts, dropped when shorter than MIN_SEGMENT."""
    bounds = [0, *np.flatnonzero(cut).tolist(), len(cut)]
    lengths = np.diff(bounds)
    lengths = lengths[lengths > 0]
    return int((lengths >= MIN_SEGMENT).sum()), int((lengths < MIN_SEGMENT).sum())


def report(name: str, frames: np.ndarray, truth: np.ndarray, thresholds: list[float]) -> None:
    true = np.zeros(len(frames), bool)
    true[truth] = True
    print(f"\n{name}: {len(frames)} frames, {len(truth)} true cuts ({len(truth) + 1} scenes)")
    print(f"  {'detector':22s} {'found':>9s} {'false':>6s} {'precision':>9s} {'recall':>6s} "
          f"{'segments kept/dropped':>22s} {'ms/frame':>8s}")
    runs = [("old: thumbnail > 0.05", *old_cuts(frames))]
    runs += [(f"scenecut {t:g}", *new_cuts(frames, t)) for t in thresholds]
    for label, cut, seconds in runs:
        found, false = int((cut & true).sum()), int((cut & ~true).sum())
        precision = found / max(found + false, 1)
        kept, dropped = segments(cut)
        print(f"  {label:22s} {found:4d}/{len(truth):<4d} {false:6d} {precision:9.3f} "
              f"{found / max(len(truth), 1):6.3f} {kept:14d}/{dropped:<7d} {seconds * 1e3:8.3f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vizdoom", nargs="*", default=[], help="recordings with <stem>.cuts.npy")
    p.add_argument("--thresholds", default=f"0.8,{SCENE_THRESHOLD:g},0.95")
    p.add_argument("--episodes", type=int, default=400, help="sample game episodes")
    args = p.parse_args()
    thresholds = [float(t) for t in args.thresholds.split(",")]
    print(f"CPU: {describe_cpu()}; per-frame times are CPU seconds of this process")
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "sample.mp4"
        eps = list(sample_game.episodes(args.episodes, seed=0))
        write_video(video, (f for e in eps for f in e.frames), 15)
        report("sample game", decoded(video), np.cumsum([len(e.frames) for e in eps])[:-1], thresholds)

        frames, cuts = pans_and_flashes()
        video = Path(tmp) / "synthetic.mp4"
        write_video(video, frames, 15)
        report("synthetic pans + flashes", decoded(video), cuts, thresholds)

        for path in map(Path, args.vizdoom):
            truth = np.load(path.with_name(f"{path.stem}.cuts.npy"))
            report(f"vizdoom {path.name}", decoded(path), truth, thresholds)
            link = Path(tmp) / f"nosidecars{path.suffix}"  # the extractor must not read the cuts
            link.unlink(missing_ok=True)
            os.symlink(path.resolve(), link)
            s = extract([link], Path(tmp) / "store", size=64, overwrite=True, progress=False)
            print(f"  extractor (default threshold {SCENE_THRESHOLD:g}): {s['segments']} segments, "
                  f"{s['dropped_segments']} dropped ({s['dropped_frames']} frames) for "
                  f"{len(truth) + 1} episodes; {s['frames_per_second']:.0f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
