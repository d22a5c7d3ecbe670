"""Extract videos into a frame store: ``framegan-extract`` / ``python tools/extract_frames.py``.

    python tools/extract_frames.py game.mp4 [more.mp4 ...] [--out data/game] [--size 64 | HxW]
        [--crop none|center|x,y,w,h] [--fps F] [--start S] [--end S] [--scene-threshold T]
        [--min-segment N] [--drop-static] [--actions FILE|none] [--append | --overwrite]

Frames go decode -> crop + area resize (``Preprocess``) -> segment split -> store, one at a time,
so memory stays flat however long the video. A segment ends at a scene cut (a frame that the
previous one does not explain even allowing for motion and a screen flash, scored against chance
above ``--scene-threshold``; see ``framegan.scenecut``), at a decode gap (a timestamp jump of more
than 3 frame intervals) and at the end of each video; segments shorter than ``--min-segment``
frames (default 5 = one window of 4 context frames + 1 target) are dropped. Frames are uint8
(H, W, 3) here; the model's (B, T, C, H, W) floats in [-1, 1] are made later by
``framegan.frames.to_model``.

Sidecars (``framegan.actions``): ``<stem>.actions.npy`` beside a video (or ``--actions FILE`` for
a single video; ``--actions none`` ignores them) gives the action pressed after each video frame,
``<stem>.action_names.json`` their names, ``<stem>.cuts.npy`` the frames where a new episode
starts, which always start a new segment. Each stored frame gets the action that leads from it
to the next stored frame of its segment. A stored frame stands for the source frames from its
own up to the one before the next stored frame (frames skipped by ``--fps``, identical frames
dropped by ``--drop-static``), cut off before an episode cut; it takes the action pressed after
the *last* of them, the one that leads into the next stored frame. So with frames 0, 4, 8 kept
at a quarter of the rate, frame 0 takes ``actions[3]``; a duplicate made by raising the rate
takes its own source frame's action (nothing changed between the copies; the key is held); a
frame followed by 5 dropped static frames takes the action after the last of those, the one
after which the screen changed. The last stored frame of a video stands for every frame decoded
after it. Source frames are numbered by timestamp (``Frame.index``); with sidecars that must
match the decode order, else (variable frame rate, dropped frames) the alignment is ambiguous
and extraction stops with an error, as it does when the video and its actions differ in length.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from framegan import actions as sidecars
from framegan.cli import Parser, add_threads, run_main, set_threads
from framegan.preprocess import Preprocess, PreprocessError
from framegan.scenecut import SCENE_THRESHOLD, SceneCuts
from framegan.store import StoreError, StoreWriter
from framegan.video import Frame, VideoError, VideoInfo, VideoReader, probe

STATIC_TOLERANCE = 4   # frames whose pixels all differ by at most this (uint8) count as identical


class ExtractError(ValueError):
    """Bad extraction arguments; one line."""


@dataclass
class Sidecars:
    """What lies beside one video (see the module docstring); all optional."""

    actions: np.ndarray | None = None   # int64 [N] raw ids, one per video frame
    actions_file: Path | None = None
    names: dict[int, str] = field(default_factory=dict)
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # episode starts

    @property
    def needs_frame_numbers(self) -> bool:
        return self.actions is not None or self.cuts.size > 0


def find_sidecars(video: Path, info: VideoInfo, actions: str | None = None) -> Sidecars:
    """Read and check the sidecars of ``video``; ``actions`` is ``--actions`` (a file, "none" or
    None to look beside the video). Raises a one-line ``ExtractError``."""
    cars, cut_file = Sidecars(), sidecars.sidecar(video, sidecars.CUTS)
    file = Path(actions) if actions not in (None, "none") else sidecars.sidecar(video, sidecars.ACTIONS)
    names = [sidecars.sidecar(video, sidecars.NAMES)]
    if file.name.endswith(sidecars.ACTIONS):  # --actions other/x.actions.npy: x.action_names.json
        names.insert(0, file.with_name(file.name[:-len(sidecars.ACTIONS)] + sidecars.NAMES))
    try:
        if cut_file.is_file():
            cars.cuts = sidecars.read_cuts(cut_file)
        if actions != "none" and (actions is not None or file.is_file()):
            cars.actions, cars.actions_file = sidecars.read_ids(file), file
            names = [n for n in names if n.is_file()]
            cars.names = sidecars.read_names(names[0]) if names else {}
    except sidecars.ActionError as e:
        raise ExtractError(str(e)) from None
    if cars.actions is not None and info.frames is not None and info.frames != len(cars.actions):
        raise ExtractError(f"{video}: {info.frames} frames but {file} holds {len(cars.actions)} actions "
                           "(one per frame expected)")
    frames = info.frames if info.frames is not None else \
        len(cars.actions) if cars.actions is not None else None
    if cars.cuts.size and frames is not None and cars.cuts[-1] >= frames:
        raise ExtractError(f"{cut_file}: cut at frame {cars.cuts[-1]}, but {video} has {frames} frames")
    return cars


class Alignment:
    """Source frame numbers, episode cuts and the action of each stored frame, for one video
    (the rule is in the module docstring). Call ``next`` for every frame the reader yields, then
    ``merge`` (dropped) or ``keep`` (stored); ``action_before(s)`` / ``action_at_end()`` give the
    action of the frame kept last once the next one is known."""

    def __init__(self, video: Path, cars: Sidecars, reader: VideoReader, start: float | None):
        self.video, self.cars, self.reader = video, cars, reader
        self.base = 0 if start is None else None  # decode position of the first frame in range
        self.cut_pos = 0                          # cars.cuts[cut_pos] is the next cut ahead
        self.last_kept = self.merged = self.cap = 0

    def next(self, frame: Frame) -> tuple[int, bool]:
        """The frame's source number and whether a new episode starts at or before it."""
        s = frame.index
        if self.cars.needs_frame_numbers:
            decoded = self.reader.decoded - 1
            if self.base is None:
                self.base = s - decoded
            if s != self.base + decoded:
                raise ExtractError(f"{self.video}: frame {s} by its timestamp is frame "
                                   f"{self.base + decoded} in decode order (variable frame rate or "
                                   "dropped frames), so its per-frame actions/cuts cannot be aligned")
            self._check_length(s)
        cuts, episode = self.cars.cuts, False
        while self.cut_pos < len(cuts) and cuts[self.cut_pos] <= s:
            episode, self.cut_pos = True, self.cut_pos + 1
        return s, episode

    def merge(self, s: int) -> None:
        self.merged = max(self.merged, s)

    def keep(self, s: int) -> None:
        cuts = self.cars.cuts
        self.last_kept = self.merged = s
        self.cap = int(cuts[self.cut_pos]) - 1 if self.cut_pos < len(cuts) else sys.maxsize

    def action_before(self, s: int) -> int | None:
        """Action of the frame kept last, when the next frame stored from this video is ``s``."""
        return self._action(max(self.merged, s - 1))

    def action_at_end(self) -> int | None:
        return self._action(max(self.merged, self._last_decoded()))

    def finish(self, end: float | None) -> None:
        """After the last frame: a video read to its end must have exactly one action per frame."""
        if self.cars.actions is not None and end is None and self.reader.info.frames is None:
            frames = self._last_decoded() + 1
            if frames != len(self.cars.actions):
                raise ExtractError(f"{self.video}: {frames} frames but {self.cars.actions_file} holds "
                                   f"{len(self.cars.actions)} actions (one per frame expected)")

    def _last_decoded(self) -> int:
        return (self.base or 0) + self.reader.decoded - 1

    def _action(self, s: int) -> int | None:
        if self.cars.actions is None:
            return None
        s = min(s, self.cap)
        self._check_length(s)
        return int(self.cars.actions[s])

    def _check_length(self, s: int) -> None:
        if self.cars.actions is not None and s >= len(self.cars.actions):
            raise ExtractError(f"{self.video}: has a frame {s}, but {self.cars.actions_file} holds "
                               f"only {len(self.cars.actions)} actions (one per frame expected)")


def _store(writer: StoreWriter, video: Path, frame: Frame, action: int | None) -> None:
    writer.add(frame.image, source=video.name, index=frame.index, time=frame.time, action=action)


MAX_FPS = 1000.0  # resampling far above any source rate only repeats frames (and can fill a disk)


def _check_args(videos, size, crop, fps, start, end, scene_threshold, min_segment,
                actions) -> Preprocess:
    if not videos:
        raise ExtractError("no input videos")
    if actions not in (None, "none") and len(videos) != 1:
        raise ExtractError(f"--actions {actions}: needs exactly one video, got {len(videos)} "
                           "(sidecars beside each video are found without it)")
    prep = Preprocess(size, crop)
    for name, value in (("--fps", fps), ("--start", start), ("--end", end),
                        ("--scene-threshold", scene_threshold)):
        if value is not None and not math.isfinite(value):  # nan passes every comparison below
            raise ExtractError(f"{name} {value}: must be a finite number")
    if fps is not None and not 0 < fps <= MAX_FPS:
        raise ExtractError(f"--fps {fps}: must be positive and at most {MAX_FPS:g}")
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
            drop_static: bool = False, actions: str | None = None, append: bool = False,
            overwrite: bool = False, progress: bool = True) -> dict:
    """Extract ``videos`` into the store ``out`` (default ``data/<stem of the first video>``).

    ``actions``: None finds each video's sidecars, a path names the actions of the one video,
    "none" ignores actions (episode cuts still apply). Returns a summary dict: out, videos,
    frames_in (decoded in range), frames_out (stored), segments (new), store_segments (total),
    dropped_frames / dropped_segments (short segments), static_frames, actions (distinct ids in the
    store, 0 without), size, fps, seconds, frames_per_second (frames_in / seconds). Raises ``VideoError``,
    ``StoreError``, ``PreprocessError`` or ``ExtractError`` (all ``ValueError``, one line) and
    then leaves no partial store behind.
    """
    t0 = time.perf_counter()
    prep = _check_args(videos, size, crop, fps, start, end, scene_threshold, min_segment, actions)
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
    cars = [find_sidecars(v, i, actions) for v, i in zip(videos, infos)]
    with_actions = [c.actions is not None for c in cars]
    if any(with_actions) and not all(with_actions):
        a, b = videos[with_actions.index(True)], videos[with_actions.index(False)]
        raise ExtractError(f"{a} has actions but {b} has none (a store has actions in every segment "
                           "or in none; extract them into separate stores)")

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
                     overwrite=overwrite, min_segment=min_segment, actions=all(with_actions)) as writer, \
            tqdm(total=total, unit="frame", disable=not progress, desc=str(out)) as bar:
        old_segments = writer.segments  # > 0 when appending
        for video, car, info in zip(videos, cars, infos):
            writer.name_actions(car.names)
            reader = prep.iter_video(video, start=start, end=end, fps=fps, info=info)
            align, scenes = Alignment(video, car, reader, start), SceneCuts(scene_threshold)
            last = pending = None  # pending: kept last, stored once its action is known
            for frame in reader:
                bar.update()
                s, episode = align.next(frame)
                if drop_static and last is not None and not episode and \
                        cv2.norm(frame.image, last, cv2.NORM_INF) <= STATIC_TOLERANCE:
                    align.merge(s)
                    static += 1
                    continue
                # detect before the other reasons for a cut: it must see every stored frame
                cut = scenes.detect(frame.image) or episode or frame.gap
                if pending is not None:
                    _store(writer, video, pending, align.action_before(s))
                if cut:
                    writer.cut()
                pending = frame
                align.keep(s)
                last = frame.image
            if pending is not None:
                _store(writer, video, pending, align.action_at_end())
            writer.cut()
            align.finish(end)
            frames_in += reader.decoded
    seconds = time.perf_counter() - t0
    return {"out": str(out), "videos": len(videos), "frames_in": frames_in,
            "frames_out": writer.kept_frames, "segments": writer.segments - old_segments,
            "store_segments": writer.segments,
            "dropped_frames": writer.dropped_frames, "dropped_segments": writer.dropped_segments,
            "static_frames": static, "actions": len(writer.action_values),
            "size": list(prep.size), "fps": out_fps,
            "seconds": seconds, "frames_per_second": frames_in / max(seconds, 1e-9)}


def format_summary(s: dict) -> str:
    h, w = s["size"]
    text = (f"{s['out']}: {s['frames_in']} frames in -> {s['frames_out']} frames out in "
            f"{s['segments']} segments ({h}x{w} at {s['fps']:g} fps"
            f"{f', {n} distinct actions' if (n := s.get('actions')) else ''})\n"
            f"dropped {s['dropped_frames']} frames in {s['dropped_segments']} short segments, "
            f"{s['static_frames']} static frames; {s['seconds']:.1f} s, "
            f"{s['frames_per_second']:.0f} frames/s")
    if s["dropped_frames"] > 0.1 * s["frames_in"]:  # usually false cuts on fast motion
        text += ("\nnote: over 10% of the frames fell in short segments; if the video has fewer "
                 "cuts than that, raise --scene-threshold (or 0 to disable)")
    return text


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="framegan-extract", description=__doc__.splitlines()[0])
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
    p.add_argument("--actions", metavar="FILE|none",
                   help="actions of the one video, one int per frame (default: <stem>.actions.npy "
                        "beside each video if present; none: ignore)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--append", action="store_true", help="add to an existing store")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_threads(p)
    return p


def main(argv: list[str] | None = None) -> int:
    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    def work():
        args = _parser().parse_args(argv)
        set_threads(args.threads, opencv=True)
        summary = extract(args.videos, args.out, size=args.size, crop=args.crop, fps=args.fps,
                          start=args.start, end=args.end, scene_threshold=args.scene_threshold,
                          min_segment=args.min_segment, drop_static=args.drop_static,
                          actions=args.actions, append=args.append, overwrite=args.overwrite,
                          progress=not args.quiet)
        print(format_summary(summary))

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # each of ours is already once per file
        warnings.showwarning = one_line
        # OSError too: e.g. the disk filled up while writing segments
        return run_main(work, (VideoError, StoreError, PreprocessError, ExtractError))


if __name__ == "__main__":
    sys.exit(main())
