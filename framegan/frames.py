"""The one place where frames change representation.

On disk and in video files a clip is uint8 ``(T, H, W, 3)`` RGB. Inside the model it is float
``(..., C, H, W)`` in [-1, 1] (a batch is ``(B, T, C, H, W)``). Every conversion goes through
``to_model`` / ``to_pixels`` so the scaling convention lives in exactly one spot.
"""
from __future__ import annotations

import numpy as np
import torch
from einops import rearrange


def to_model(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(..., H, W, 3)`` -> float32 ``(..., 3, H, W)`` in [-1, 1]."""
    t = torch.as_tensor(np.asarray(frames)) if isinstance(frames, np.ndarray) else frames
    if t.dtype != torch.uint8:
        raise TypeError(f"to_model expects uint8 frames, got {t.dtype}")
    t = rearrange(t, "... h w c -> ... c h w")
    return t.float().div_(127.5).sub_(1.0)


def to_pixels(frames: torch.Tensor) -> np.ndarray:
    """float ``(..., 3, H, W)`` in [-1, 1] -> uint8 numpy ``(..., H, W, 3)`` (clamped, rounded)."""
    t = frames.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    return np.ascontiguousarray(rearrange(t.cpu(), "... c h w -> ... h w c").numpy())
