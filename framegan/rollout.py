"""python -m framegan.rollout: sampled futures of a trained generator, as video, image grid or array.

Frames are ``(B, T, C, H, W)`` float in [-1, 1] in here (uint8 ``(T, H, W, 3)`` on disk).
Autoregressive: G sees the last K frames, predicts one, the prediction is appended to the
window and fed back, T times; S noise draws run as one batch. Each sample keeps one z for its
whole future (z picks a future; redrawing z every step would let a sample change its mind).

    python -m framegan.rollout --checkpoint run/checkpoints/last.pt --context game.mp4 \\
        --horizon 32 --samples 4 --out future.mp4
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from einops import rearrange, repeat

from framegan.atomic import atomic_path
from framegan.cli import Parser, UsageError, add_threads, positive, resolve_device, run_main, set_threads
from framegan.frames import to_model, to_pixels
from framegan.precision import autocast_dtype

SUFFIXES = (".mp4", ".gif", ".png", ".npy")
PREDICTION_COLOUR = (230, 40, 40)   # border of predicted panels: where the model takes over
TRUTH_COLOUR = (40, 190, 60)        # border of the ground-truth panel / row
CONTEXT_COLOUR = (128, 128, 128)    # border while every panel still shows real context
BORDER = 2                          # px, after upscaling


# ----------------------------------------------------------------------------- sampling
def use_bf16(device: torch.device | str, precision: str = "auto") -> bool:
    """bf16 autocast for inference? ``auto``: on CUDA and on CPUs with native bf16 (AVX512-BF16 /
    AMX), where benchmarks/rollout_speed.py measured it faster; fp32 elsewhere."""
    return autocast_dtype(precision, device) == torch.bfloat16


def prepare(G: torch.nn.Module, device: torch.device | str) -> torch.nn.Module:
    """G for fast inference: on ``device``, eval, channels_last weights (oneDNN's preferred layout
    on CPU, tensor cores' on CUDA)."""
    return G.to(device).eval().to(memory_format=torch.channels_last)


@contextlib.contextmanager
def inference(G: torch.nn.Module, precision: str = "auto"):
    """Context for running G: ``no_grad`` + (if ``use_bf16``) bf16 autocast that casts each weight
    once per context, not once per call.

    Autocast caches its bf16 weight casts only for leaf tensors that require grad, and not at all
    under ``inference_mode`` (measured: 46 vs 21 copies per forward, ~1.5x frames/s at batch 1 on
    CPU). So this uses ``no_grad`` and marks the parameters requires_grad for the duration.
    """
    device = next(G.parameters()).device
    bf16 = use_bf16(device, precision)
    frozen = [p for p in G.parameters() if not p.requires_grad] if bf16 else []
    for p in frozen:
        p.requires_grad_(True)
    try:
        amp = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.no_grad(), amp:
            yield
    finally:
        for p in frozen:
            p.requires_grad_(False)


def rollout_batch(G, context: torch.Tensor, horizon: int, samples: int = 1,
                  generator: torch.Generator | None = None, precision: str = "auto") -> torch.Tensor:
    """Contexts ``(B, K', C, H, W)`` (K' >= G.context; the last K are used) -> futures
    ``(B, S, T, C, H, W)`` float32 in [-1, 1] on G's device. Noise comes from ``generator``."""
    K = G.context
    if context.shape[1] < K:
        raise ValueError(f"context has {context.shape[1]} frames, the model needs {K}")
    if horizon < 1 or samples < 1:
        raise ValueError(f"horizon and samples must be >= 1, got {horizon} and {samples}")
    device = next(G.parameters()).device
    x = repeat(context[:, -K:].to(device, torch.float32), "b k c h w -> (b s) k c h w", s=samples)
    z = G.sample_z(x.shape[0], device=device, generator=generator) if G.z_dim > 0 else None
    future = []
    with inference(G, precision):
        for _ in range(horizon):
            y = G(x, z).float().clamp(-1.0, 1.0)
            future.append(y)
            x = torch.cat([x[:, 1:], rearrange(y, "n c h w -> n 1 c h w")], dim=1)
    return rearrange(torch.stack(future, dim=1), "(b s) t c h w -> b s t c h w", s=samples)


def rollout(G, context: torch.Tensor, horizon: int, samples: int = 1, seed: int = 0,
            precision: str = "auto") -> torch.Tensor:
    """One context ``(K, C, H, W)`` -> ``samples`` futures ``(S, T, C, H, W)``, reproducible by seed."""
    device = next(G.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    return rollout_batch(G, context[None], horizon, samples, generator, precision)[0]


# ----------------------------------------------------------------------------- context sources
def context_from_store(path: Path, store_info: dict, K: int, horizon: int, segment: int,
                       start: int | None):
    """(context uint8 (K, H, W, 3), known future uint8 (<= T, H, W, 3), fps) from a frame store."""
    from framegan.store import open_store

    store = open_store(path)
    want = tuple(store_info.get("size") or store.size)
    if store.size != want:
        raise UsageError(f"{path}: store frames are {store.size[0]}x{store.size[1]}, "
                         f"the checkpoint was trained on {want[0]}x{want[1]}")
    if not 0 <= segment < len(store.segments):
        raise UsageError(f"{path}: no segment {segment} (the store has {len(store.segments)})")
    frames = store.segments[segment]
    if start is not None and start > len(frames):
        raise UsageError(f"{path}: --start {start} is past the end of segment {segment} ({len(frames)} frames)")
    start = len(frames) if start is None else start
    if start < K:
        raise UsageError(f"{path}: only {start} frames precede the prediction start in segment "
                         f"{segment}; the model needs a context of {K}")
    return np.array(frames[start - K:start]), np.array(frames[start:start + horizon]), store.fps


def context_from_video(path: Path, store_info: dict, K: int, horizon: int, start: int | None):
    """The same from a video file, cropped/resized/resampled as the checkpoint's store was."""
    from framegan.preprocess import Preprocess
    from framegan.video import probe

    if "size" not in store_info:
        raise UsageError(f"{path}: the checkpoint records no frame-store preprocessing, "
                         "so a video cannot be resized like its training data (use a store)")
    pre = Preprocess.from_dict(store_info)
    fps = store_info.get("fps")
    resample = fps if fps and abs(probe(path).fps - fps) > 1e-3 * fps else None
    past: deque = deque(maxlen=K)  # only the last K frames before start stay in memory
    future, before = [], 0
    with pre.iter_video(path, fps=resample) as frames:
        for i, frame in enumerate(frames):
            if start is not None and i >= start + horizon:
                break
            if start is None or i < start:
                past.append(frame.image)
                before += 1
            else:
                future.append(frame.image)
    if start is not None and before < start:
        raise UsageError(f"{path}: --start {start} is past the end of the video ({before} frames)")
    if before < K:
        where = "in the video" if start is None else f"before --start {start}"
        raise UsageError(f"{path}: {before} frames {where}; the model needs a context of {K}")
    empty = np.zeros((0, *pre.size, 3), np.uint8)
    return np.stack(past), (np.stack(future) if future else empty), fps or probe(path).fps


# ----------------------------------------------------------------------------- output
def _panel(frame: np.ndarray, upscale: int, colour) -> np.ndarray:
    """One uint8 frame, nearest-neighbour upscaled, inside a ``BORDER``-px frame of ``colour``."""
    big = repeat(frame, "h w c -> (h u) (w v) c", u=upscale, v=upscale)
    out = np.empty((big.shape[0] + 2 * BORDER, big.shape[1] + 2 * BORDER, 3), np.uint8)
    out[:] = colour
    out[BORDER:-BORDER, BORDER:-BORDER] = big
    return out


def video_frames(context: np.ndarray, future: np.ndarray, truth: np.ndarray | None, upscale: int):
    """Frames of the side-by-side video: [truth,] sample 1..S; context first (grey borders, every
    panel alike), then the future (red borders on predictions, green on the truth)."""
    blank = np.zeros_like(context[0])
    panels = future.shape[0] + (truth is not None)
    for frame in context:
        yield np.concatenate([_panel(frame, upscale, CONTEXT_COLOUR)] * panels, axis=1)
    for t in range(future.shape[1]):
        row = [_panel(f, upscale, PREDICTION_COLOUR) for f in future[:, t]]
        if truth is not None:
            row.insert(0, _panel(truth[t] if t < len(truth) else blank, upscale, TRUTH_COLOUR))
        yield np.concatenate(row, axis=1)


def grid_image(context: np.ndarray, future: np.ndarray, truth: np.ndarray | None, upscale: int) -> np.ndarray:
    """PNG grid: rows are samples (the ground truth on top when known), columns are time."""
    blank = np.zeros_like(context[0])
    ctx = [_panel(f, upscale, CONTEXT_COLOUR) for f in context]
    rows = [ctx + [_panel(f, upscale, PREDICTION_COLOUR) for f in sample] for sample in future]
    if truth is not None:
        known = [truth[t] if t < len(truth) else blank for t in range(future.shape[1])]
        rows.insert(0, ctx + [_panel(f, upscale, TRUTH_COLOUR) for f in known])
    return np.concatenate([np.concatenate(r, axis=1) for r in rows], axis=0)


def write_output(path: Path, context: np.ndarray, future: np.ndarray, truth: np.ndarray | None,
                 fps: float, upscale: int) -> None:
    """``future`` uint8 (S, T, H, W, 3) to ``path`` in the format its suffix names."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        with atomic_path(path) as tmp:
            np.save(tmp, future)
    elif suffix == ".png":
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(grid_image(context, future, truth, upscale)).save(tmp, format="PNG")
    else:
        from framegan.video import write_video

        path.parent.mkdir(parents=True, exist_ok=True)
        write_video(path, video_frames(context, future, truth, upscale), fps)


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None) -> argparse.Namespace:
    ap = Parser(prog="python -m framegan.rollout", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint file (G_ema is used)")
    ap.add_argument("--context", required=True, help="video file, or frame-store directory")
    ap.add_argument("--segment", type=int, default=0, help="store segment to take frames from")
    ap.add_argument("--start", type=int, default=None,
                    help="index of the first predicted frame: the context is the K frames before it "
                         "(default: the end of the video / segment)")
    ap.add_argument("--horizon", type=positive, default=16, help="frames to predict (T)")
    ap.add_argument("--samples", type=positive, default=4, help="futures to sample (S)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="output: .mp4 .gif .png .npy (default: rollout.mp4 "
                                                "next to the checkpoint)")
    ap.add_argument("--fps", type=float, default=None, help="video frame rate (default: the store's)")
    ap.add_argument("--upscale", type=positive, default=None,
                    help="nearest-neighbour zoom for viewing (default: to about 128 px)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="inference dtype (auto: bf16 where the hardware has it)")
    add_threads(ap)
    args = ap.parse_args(argv)
    args.out = Path(args.out) if args.out else Path(args.checkpoint).parent / "rollout.mp4"
    if args.out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"{args.out}: unknown output format {args.out.suffix or '(no suffix)'!r}; "
                         f"use one of {' '.join(SUFFIXES)}")
    if args.fps is not None and args.fps <= 0:
        raise UsageError(f"--fps must be > 0, got {args.fps}")
    if args.start is not None and args.start < 0:
        raise UsageError(f"--start must be >= 0, got {args.start}")
    return args


def run(args: argparse.Namespace) -> Path:
    from framegan.checkpoint import load_generator

    set_threads(args.threads, opencv=True)  # OpenCV resizes a video context
    device = resolve_device(args.device)
    G, _, store_info = load_generator(args.checkpoint, device)
    K, src = G.context, Path(args.context)
    if not src.exists():
        raise UsageError(f"{src}: no such video file or frame store")
    if src.is_dir():
        context, truth, fps = context_from_store(src, store_info, K, args.horizon, args.segment, args.start)
    else:
        context, truth, fps = context_from_video(src, store_info, K, args.horizon, args.start)
    G = prepare(G, device)
    ctx = to_model(context)
    rollout(G, ctx, 1, args.samples, args.seed, args.precision)  # warm-up: oneDNN / cuDNN pick kernels
    t0 = time.perf_counter()
    future = rollout(G, ctx, args.horizon, args.samples, args.seed, args.precision).cpu()
    seconds = time.perf_counter() - t0
    n = args.samples * args.horizon
    print(f"generated {args.samples} x {args.horizon} frames in {seconds:.2f} s: {n / seconds:.1f} frames/s "
          f"({device.type}, {'bf16' if use_bf16(device, args.precision) else 'fp32'}, batch {args.samples})")
    h, w = context.shape[1:3]
    upscale = args.upscale or max(1, 128 // max(h, w))
    write_output(args.out, context, to_pixels(future), truth if len(truth) else None,
                 args.fps or fps, upscale)
    print(f"wrote {args.out}")
    return args.out


def main(argv=None) -> int:
    from framegan.checkpoint import CheckpointError
    from framegan.preprocess import PreprocessError
    from framegan.store import StoreError
    from framegan.video import VideoError

    return run_main(lambda: run(parse_args(argv)), (CheckpointError, StoreError, VideoError, PreprocessError))


if __name__ == "__main__":
    sys.exit(main())
