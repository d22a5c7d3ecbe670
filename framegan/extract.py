"""Extract videos into a frame store: ``framegan-extract`` / ``python tools/extract_frames.py``.

    python tools/extract_frames.py game.mp4 [more.mp4 ...] [--out data/game] [--size 64 | HxW]
        [--crop none|center|x,y,w,h] [--fps F] [--start S] [--end S] [--scene-threshold T]
        [--min-segment N] [--drop-static] [--append | --overwrite]

Frames go decode -> crop + area resize (``Preprocess``) -> segment split -> store, one at a time,
so memory stays flat however long the video. A segment ends at a scene cut (a frame that the
previous one does not explain even allowing for motion and a screen flash, scored against chance
above ``--scene-threshold``; see ``framegan.scenecut``), at a decode gap (a timestamp jump of more
than 3 frame intervals) and at the end of each video; segments shorter than ``--min-segment``
frames (default 5 = one window of 4 context frames + 1 target) are dropped. Frames are uint8
(H, W, 3) here; the model's (B, T, C, H, W) floats in [-1, 1] are made later by
``framegan.frames.to_model``.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import cv2
from tqdm import tqdm

from framegan.preprocess import Preprocess, PreprocessError
from framegan.scenecut import SCENE_THRESHOLD, SceneCuts
from framegan.store import StoreError, StoreWriter
from framegan.video import VideoError, probe

STATIC_TOLERANCE = 4   # frames whose pixels all differ by at most this (uint8) count as identical


class ExtractError(ValueError):
    """Bad extraction arguments; one line."""


def _check_args(videos, size, crop, fps, start, end, scene_threshold, min_segment) -> Preprocess:
    if not videos:
        raise ExtractError("no input videos")
    prep = Preprocess(size, crop)
    if fps is not None and not fps > 0:
        raise ExtractError(f"--fps {fps}: must be positive")
    if start is not None and start < 0:
        raise ExtractError(f"--start {start}: must be >= 0")
    if end is not None and end <= (start or 0):
        raise ExtractError(f"--end {end}: must be after --start {start or 0}")
    if scene_threshold < 0:
        raise ExtractError(f"--scene-threshold {scene_threshold}: must be >= 0 (0 disables)")
    if min_segment < 1:
        raise ExtractError(f"--min-segment {min_segment}: must be >= 1")
    return prep


def extract(videos: list[str | Path], out: str | Path | None = None, *, size=64, crop="none",
            fps: float | None = None, start: float | None = None, end: float | None = None,
            scene_threshold: float = SCENE_THRESHOLD, min_segment: int = 5,
            drop_static: bool = False, append: bool = False, overwrite: bool = False,
            progress: bool = True) -> dict:
    """Extract ``videos`` into the store ``out`` (default ``data/<stem of the first video>``).

    Returns a summary dict: out, videos, frames_in (decoded in range), frames_out (stored),
    segments (new), store_segments (total), dropped_frames / dropped_segments (short segments),
    static_frames, size, fps, seconds, frames_per_second (frames_in / seconds). Raises ``VideoError``,
    ``StoreError``, ``PreprocessError`` or ``ExtractError`` (all ``ValueError``, one line) and
    then leaves no partial store behind.
    """
    t0 = time.perf_counter()
    prep = _check_args(videos, size, crop, fps, start, end, scene_threshold, min_segment)
    videos = [Path(v) for v in videos]
    out = Path(out) if out is not None else Path("data") / videos[0].stem
    infos = [probe(v) for v in videos]  # fail on any bad input before writing anything
    for v, info in zip(videos, infos):
        try:
            prep.crop.region(info.width, info.height)
        except PreprocessError as e:
            raise PreprocessError(f"{v}: {e}") from None
    if fps is None and any(abs(i.fps - infos[0].fps) > 1e-3 * infos[0].fps for i in infos):
        rates = ", ".join(f"{v.name} {i.fps:g}" for v, i in zip(videos, infos))
        raise ExtractError(f"videos have different frame rates ({rates}); pass --fps")
    out_fps = fps or infos[0].fps

    def expected(info) -> int | None:  # for the progress bar only
        if fps is None and start is None and end is None and info.frames:
            return info.frames
        if info.duration is None:
            return None
        return max(0, round((min(end or info.duration, info.duration) - (start or 0)) * out_fps))

    counts = [expected(i) for i in infos]
    total = sum(counts) if None not in counts else None
    frames_in = static = 0
    with StoreWriter(out, size=prep.size, fps=out_fps, preprocess=prep.to_dict(), append=append,
                     overwrite=overwrite, min_segment=min_segment) as writer, \
            tqdm(total=total, unit="frame", disable=not progress, desc=str(out)) as bar:
        old_segments = writer.segments  # > 0 when appending
        for video in videos:
            reader = prep.iter_video(video, start=start, end=end, fps=fps)
            last, scenes = None, SceneCuts(scene_threshold)
            for frame in reader:
                bar.update()
                if drop_static and last is not None and \
                        cv2.norm(frame.image, last, cv2.NORM_INF) <= STATIC_TOLERANCE:
                    static += 1
                    continue
                cut = scenes.detect(frame.image) or frame.gap  # detect first: it sees every frame
                if cut:
                    writer.cut()
                writer.add(frame.image, source=video.name, index=frame.index, time=frame.time)
                last = frame.image
            writer.cut()
            frames_in += reader.decoded
    seconds = time.perf_counter() - t0
    return {"out": str(out), "videos": len(videos), "frames_in": frames_in,
            "frames_out": writer.kept_frames, "segments": writer.segments - old_segments,
            "store_segments": writer.segments,
            "dropped_frames": writer.dropped_frames, "dropped_segments": writer.dropped_segments,
            "static_frames": static, "size": list(prep.size), "fps": out_fps,
            "seconds": seconds, "frames_per_second": frames_in / max(seconds, 1e-9)}


def format_summary(s: dict) -> str:
    h, w = s["size"]
    text = (f"{s['out']}: {s['frames_in']} frames in -> {s['frames_out']} frames out in "
            f"{s['segments']} segments ({h}x{w} at {s['fps']:g} fps)\n"
            f"dropped {s['dropped_frames']} frames in {s['dropped_segments']} short segments, "
            f"{s['static_frames']} static frames; {s['seconds']:.1f} s, "
            f"{s['frames_per_second']:.0f} frames/s")
    if s["dropped_frames"] > 0.1 * s["frames_in"]:  # usually false cuts on fast motion
        text += ("\nnote: over 10% of the frames fell in short segments; if the video has fewer "
                 "cuts than that, raise --scene-threshold (or 0 to disable)")
    return text


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line like every other error, not usage + error
        self.exit(2, f"error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="framegan-extract", description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="any file FFmpeg can decode")
    p.add_argument("--out", help="frame store directory (default: data/<stem of first video>)")
    p.add_argument("--size", default="64", help="output frame size: N or HxW (default 64)")
    p.add_argument("--crop", default="none", help="none | center (square) | x,y,w,h (default none)")
    p.add_argument("--fps", type=float, help="resample to this rate on timestamps (default: keep)")
    p.add_argument("--start", type=float, help="seconds from the start of each video")
    p.add_argument("--end", type=float, help="stop at this many seconds into each video")
    p.add_argument("--scene-threshold", type=float, default=SCENE_THRESHOLD,
                   help=f"scene change that starts a new segment: how badly the previous frame "
                        f"explains a frame after motion search, against an unrelated picture of the "
                        f"same texture (about 1); lower cuts more; 0 disables (default "
                        f"{SCENE_THRESHOLD})")
    p.add_argument("--min-segment", type=int, default=5,
                   help="drop segments shorter than this many frames (default 5)")
    p.add_argument("--drop-static", action="store_true",
                   help="drop frames identical to the previous one (pause screens)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to an existing store")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse already printed usage and the error
        return int(e.code or 0)

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # each of ours is already once per file
        warnings.showwarning = one_line
        try:
            summary = extract(args.videos, args.out, size=args.size, crop=args.crop, fps=args.fps,
                              start=args.start, end=args.end, scene_threshold=args.scene_threshold,
                              min_segment=args.min_segment, drop_static=args.drop_static,
                              append=args.append, overwrite=args.overwrite, progress=not args.quiet)
        except (VideoError, StoreError, PreprocessError, ExtractError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # e.g. the disk filled up while writing segments
            print(f"error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted; nothing written", file=sys.stderr)
            return 130
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
