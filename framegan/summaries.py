"""What a run writes besides checkpoints: TensorBoard scalars/images/GIF videos and metrics.jsonl.

Frames arrive as uint8 ``(T, H, W, 3)`` (see ``frames.to_pixels``).

``SummaryWriter.add_video`` needs ``moviepy<2``; without it, it warns and writes nothing. An
animated GIF inside an image summary is exactly what ``add_video`` would have written, so we
encode the GIF with Pillow ourselves and TensorBoard's Images tab plays it.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary

from framegan.atomic import atomic_path


def gif_bytes(frames: np.ndarray, fps: float = 8.0) -> bytes:
    """uint8 (T, H, W, 3) -> looping animated GIF."""
    imgs = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:],
                 duration=max(1, int(round(1000 / fps))), loop=0)
    return buf.getvalue()


def add_gif(writer, tag: str, frames: np.ndarray, step: int, fps: float = 8.0) -> None:
    """Write ``frames`` as an animated image summary (what ``add_video`` produces)."""
    T, H, W, C = frames.shape
    img = Summary.Image(height=H, width=W, colorspace=C, encoded_image_string=gif_bytes(frames, fps))
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=img)]), step)


def tile(rows: list[np.ndarray], pad: int = 1) -> np.ndarray:
    """Rows of uint8 (N, H, W, 3) strips -> one (R*(H+pad), N*(W+pad), 3) image, white gutters."""
    n = max(len(r) for r in rows)
    H, W = rows[0].shape[1:3]
    out = np.full((len(rows) * (H + pad), n * (W + pad), 3), 255, np.uint8)
    for i, r in enumerate(rows):
        for j, f in enumerate(r):
            out[i * (H + pad):i * (H + pad) + H, j * (W + pad):j * (W + pad) + W] = f
    return out


class JsonlLog:
    """metrics.jsonl: one JSON object per line. On resume, lines past the checkpoint's step are
    dropped first (the crashed run logged them; the resumed run logs them again), and so is a
    line that is not JSON: the torn last line a ``kill -9`` can leave mid-write."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        if resume_step is not None and path.exists():
            keep = [rec for rec in map(_record, path.read_text(errors="replace").splitlines())
                    if rec is not None and rec.get("step", 0) <= resume_step]
            with atomic_path(path) as tmp:
                tmp.write_text("".join(json.dumps(rec) + "\n" for rec in keep))
        self.f = open(path, "a", buffering=1)

    def write(self, record: dict) -> None:
        self.f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.f.close()


def _record(line: str) -> dict | None:
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None
