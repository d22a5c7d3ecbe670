"""Shared fixtures: tiny synthetic videos and stores written on the fly in tmp_path; and the
recorders' bad-input check."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from framegan.store import StoreWriter
from framegan.video import write_video


def moving_square(n: int, h: int = 48, w: int = 64, color=(250, 200, 0), background=(20, 60, 150),
                  side: int = 12, speed: int = 3) -> np.ndarray:
    """uint8 (n, h, w, 3): a square sliding left and right over a flat background (continuous
    motion, no jumps that scene-cut detection would take for a cut; easy on the codec)."""
    frames = np.empty((n, h, w, 3), np.uint8)
    frames[:] = background
    span = w - side
    for t in range(n):
        x = abs((t * speed) % (2 * span) - span)
        frames[t, (h - side) // 2:(h + side) // 2, x:x + side] = color
    return frames


@pytest.fixture(autouse=True)
def seeded_torch():
    """Every test starts from the same global torch seed. The process's own seed is random, and
    a net built from it can start too weak for a threshold (about 8 % of random inits of the
    tiny composite-head G moved its output by less than 1e-3 when z changed): a test then failed
    one run in four, on no change."""
    torch.manual_seed(0)


@pytest.fixture
def make_video(tmp_path):
    """``make_video(name, frames, fps=10, **write_video_kwargs) -> Path`` inside tmp_path."""
    def make(name: str, frames: np.ndarray, fps: float = 10, **kwargs):
        path = tmp_path / name
        write_video(path, frames, fps, **kwargs)
        return path
    return make


@pytest.fixture
def make_store(tmp_path):
    """``make_store(segments, name="store", fps=10) -> Path``: a store holding these uint8 arrays."""
    def make(segments: list[np.ndarray], name: str = "store", fps: float = 10):
        h, w = segments[0].shape[1:3]
        with StoreWriter(tmp_path / name, size=(h, w), fps=fps) as writer:
            for k, seg in enumerate(segments):
                for i, frame in enumerate(seg):
                    writer.add(frame, source=f"clip{k}.mp4", index=i, time=i / fps)
                writer.cut()
        return tmp_path / name
    return make


@pytest.fixture
def make_timed_video(tmp_path):
    """``make_timed_video(name, frames, times) -> Path``: H.264 with these timestamps (seconds),
    for variable frame rate and timestamp-gap cases."""
    import av

    def make(name: str, frames: np.ndarray, times):
        path = tmp_path / name
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.options = {"crf": "18", "bf": "0"}
            for frame, t in zip(frames, times):
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts, vf.time_base = round(t * 1000), Fraction(1, 1000)
                container.mux(stream.encode(vf))
            container.mux(stream.encode(None))
        return path
    return make


def assert_bad_input(main, argv: list[str], tmp_path, capsys, message: str) -> None:
    """``main(argv + --out tmp_path/x.mp4)`` exits 2 with one ``error:`` line holding ``message``
    and writes nothing."""
    assert main([*argv, "--out", str(tmp_path / "x.mp4"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
