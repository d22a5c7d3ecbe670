"""Crop and resize frames to a frame store's size: one definition for extraction and rollout.

Frames here are uint8 ``(H, W, 3)`` RGB (the model's ``(B, T, C, H, W)`` float tensors in [-1, 1]
come from ``framegan.frames.to_model``). A ``Preprocess`` is recorded in the store manifest
(``to_dict``) and from there in checkpoints, so a rollout from a video file resizes its context
exactly as the training store was made: both call ``Preprocess.iter_video``, which crops and
area-resizes inside FFmpeg while converting to RGB (see ``framegan.video``). ``__call__`` does the
same with OpenCV's INTER_AREA for frames that are already arrays (recorders, game environments);
the two area filters agree to within rounding.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from einops import repeat

from framegan.video import VideoInfo, VideoReader, iter_frames, probe

MAX_SIZE = 4096  # output height and width: beyond this FFmpeg's scaler refuses the frame


class PreprocessError(ValueError):
    """Bad size or crop settings; the message is one line."""


def parse_size(text: str | int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``64`` -> (64, 64); ``"48x64"`` -> (48, 64), i.e. HxW."""
    if isinstance(text, (tuple, list)):
        parts = list(text)
    else:
        parts = str(text).lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except (ValueError, IndexError):
        raise PreprocessError(f"size {text!r}: expected N or HxW, e.g. 64 or 48x64") from None
    if len(parts) > 2 or h <= 0 or w <= 0:
        raise PreprocessError(f"size {text!r}: height and width must be positive integers")
    if max(h, w) > MAX_SIZE:
        raise PreprocessError(f"size {text!r}: height and width must be at most {MAX_SIZE}")
    return h, w


@dataclass(frozen=True)
class CropSpec:
    """``none`` (whole frame), ``center`` (the largest centred square) or ``x,y,w,h`` (a box)."""

    mode: str = "none"
    box: tuple[int, int, int, int] | None = None

    @classmethod
    def parse(cls, text: str | CropSpec | None) -> CropSpec:
        if isinstance(text, CropSpec):
            return text
        text = (text or "none").strip().lower()
        if text in ("none", "center"):
            return cls(text)
        try:
            box = tuple(int(v) for v in text.split(","))
        except ValueError:
            box = ()
        if len(box) != 4 or box[0] < 0 or box[1] < 0 or box[2] <= 0 or box[3] <= 0:
            raise PreprocessError(f"crop {text!r}: expected none, center or x,y,w,h "
                                  "(non-negative x, y and positive w, h)")
        return cls("box", box)

    def region(self, width: int, height: int) -> tuple[int, int, int, int]:
        """The crop as ``(x, y, w, h)`` in pixels of a ``width`` x ``height`` frame."""
        if self.mode == "none":
            return 0, 0, width, height
        if self.mode == "center":
            side = min(width, height)
            return (width - side) // 2, (height - side) // 2, side, side
        x, y, w, h = self.box
        if x + w > width or y + h > height:
            raise PreprocessError(f"crop box {self} (x,y,w,h) does not fit in a {height}x{width} "
                                  "(HxW) frame")
        return self.box

    def __str__(self) -> str:
        return ",".join(map(str, self.box)) if self.mode == "box" else self.mode


@dataclass(frozen=True)
class Preprocess:
    size: tuple[int, int] = (64, 64)  # (H, W) of the output frames
    crop: CropSpec = CropSpec()

    def __post_init__(self):
        object.__setattr__(self, "size", parse_size(self.size))
        object.__setattr__(self, "crop", CropSpec.parse(self.crop))

    def to_dict(self) -> dict:
        return {"size": list(self.size), "crop": str(self.crop)}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        if not isinstance(d, dict) or "size" not in d:
            raise PreprocessError(f"preprocess settings {d!r}: expected {{'size': [H, W], 'crop': ...}}")
        return cls(d["size"], d.get("crop", "none"))

    def region(self, width: int, height: int, name: str | Path = "frame") -> tuple[int, int, int, int]:
        """Crop box for a source of this size; warns once when the result must be upscaled."""
        x, y, w, h = self.crop.region(width, height)
        if w < self.size[1] or h < self.size[0]:
            warnings.warn(f"{name}: source frames are {h}x{w} (HxW, after crop), smaller than "
                          f"the {self.size[0]}x{self.size[1]} output; upscaling", stacklevel=3)
        return x, y, w, h

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Any uint8 frame (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> uint8 (*size, 3) RGB."""
        frame = np.asarray(frame)
        if frame.dtype != np.uint8:
            raise PreprocessError(f"frames must be uint8, got {frame.dtype}")
        if frame.ndim == 2:
            frame = frame[..., None]
        if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4):
            raise PreprocessError(f"expected an (H, W[, 1|3|4]) frame, got shape {frame.shape}")
        if frame.shape[2] == 1:
            frame = repeat(frame[..., 0], "h w -> h w c", c=3)
        frame = frame[..., :3]  # RGBA: alpha dropped, as FFmpeg's rgb24 conversion does
        x, y, w, h = self.region(frame.shape[1], frame.shape[0])
        frame = frame[y:y + h, x:x + w]
        if (h, w) != self.size:
            frame = cv2.resize(frame, self.size[::-1], interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame)

    def iter_video(self, path: str | Path, *, start: float | None = None, end: float | None = None,
                   fps: float | None = None, info: VideoInfo | None = None) -> VideoReader:
        """Frames of a video file cropped and resized as this store wants (see module docstring).
        ``info``: the file's ``probe``, when the caller has it (each open probes the stream,
        ~17 ms for 1080p H.264)."""
        info = info or probe(path)
        try:
            box = self.region(info.width, info.height, path)
        except PreprocessError as e:
            raise PreprocessError(f"{path}: {e}") from None
        crop = None if box == (0, 0, info.width, info.height) else box
        return iter_frames(path, start=start, end=end, size_hint=self.size, crop=crop, fps=fps)
