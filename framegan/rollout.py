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
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from einops import repeat

from framegan.atomic import atomic_path, output_dir
from framegan.cli import Parser, UsageError, add_precision, add_threads, positive, resolve_device, run_main, set_threads
from framegan.frames import to_model, to_pixels
from framegan.inference import BACKENDS, BackendError, autoregress, predictor, prepare

SUFFIXES = (".mp4", ".gif", ".png", ".npy")
PREDICTION_COLOUR = (230, 40, 40)   # border of predicted panels: where the model takes over
TRUTH_COLOUR = (40, 190, 60)        # border of the ground-truth panel / row
CONTEXT_COLOUR = (128, 128, 128)    # border while every panel still shows real context
BORDER = 2                          # px, after upscaling


# ----------------------------------------------------------------------------- sampling
def rollout_batch(G, context: torch.Tensor, horizon: int, samples: int = 1,
                  generator: torch.Generator | None = None, precision: str = "auto",
                  actions: torch.Tensor | None = None, history: torch.Tensor | None = None,
                  prior=None) -> torch.Tensor:
    """Contexts ``(B, K', C, H, W)`` (K' >= G.context; the last K are used) -> futures
    ``(B, S, T, C, H, W)`` float32 in [-1, 1] on G's device. Noise comes from ``generator``;
    ``actions`` ``(B, T)``: the action index of predicted step t is ``actions[:, t]`` (required
    when ``G.num_actions > 0``); ``history`` ``(B, L-1)``: the keys before them, for a model with
    a key history (``inference.autoregress``); ``prior``: draw each sample's noise class from it
    (``inference.autoregress``) instead of cycling the classes. ``G``: a module (run by torch eager in
    ``precision``), or a ``framegan.inference.Predictor`` (any backend, its own precision; build it
    once: an ONNX export or a compile costs seconds)."""
    return autoregress(predictor(G, "torch", precision), context, horizon, samples, generator, actions,
                       history=history, prior=prior)


def rollout(G, context: torch.Tensor, horizon: int, samples: int = 1, seed: int = 0,
            precision: str = "auto", actions: torch.Tensor | None = None,
            history: torch.Tensor | None = None, prior=None) -> torch.Tensor:
    """One context ``(K, C, H, W)`` -> ``samples`` futures ``(S, T, C, H, W)``, reproducible by seed.
    ``actions`` ``(T,)``: one action index per predicted step (models with actions); ``history``
    ``(L-1,)``: the keys pressed before the first of them (models with a key history; default:
    the first key, held)."""
    device = predictor(G).device
    generator = torch.Generator(device).manual_seed(seed)
    return rollout_batch(G, context[None], horizon, samples, generator, precision,
                         None if actions is None else torch.as_tensor(actions)[None],
                         None if history is None else torch.as_tensor(history)[None], prior)[0]


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


def recorded_actions(src: Path, segment: int, start: int | None, horizon: int, resampled: bool,
                     before: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """Raw action ids pressed after the last context frame and after each predicted frame but the
    last (what leads to predicted steps 1..T), from a store or a video's ``.actions.npy`` sidecar,
    and the ``before`` ids pressed after the context frames before those (fewer where the
    recording starts later): ``(before ids, step ids)``; None where nothing is recorded for the
    predicted steps."""
    from framegan.actions import ACTIONS, read_ids, sidecar
    from framegan.store import open_store

    if src.is_dir():
        store = open_store(src)
        if not store.action_values:
            return None
        ids = store.actions[segment]
    else:
        file = sidecar(src, ACTIONS)
        if resampled or not file.is_file():  # a resampled video's frames are not the sidecar's
            return None
        ids = read_ids(file)
    first = (len(ids) if start is None else start) - 1
    if not 0 <= first < len(ids):
        return None
    return np.array(ids[max(first - before, 0):first]), np.array(ids[first:first + horizon])


def step_actions(args, G, store_info: dict, src: Path,
                 resampled: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(T,)`` action indices of the model for the rollout: ``--actions``, else the recorded ones
    (a list shorter than the horizon holds its last key); and for a model with a key history of L,
    the recorded ``(L-1,)`` keys pressed before them, with ``--actions`` too: they belong to the
    context (None where not recorded: the first key is then taken as held)."""
    from framegan.actions import ActionError, index_map, parse_actions

    if not G.num_actions:
        if args.actions:
            raise UsageError("--actions: this model takes no action input")
        return None, None
    known = store_info.get("actions", {})
    values, names = known.get("values", []), known.get("names", [])
    before = getattr(G, "action_history", 1) - 1
    raw = recorded_actions(src, args.segment, args.start, args.horizon, resampled, before)
    if not args.actions and (raw is None or not len(raw[1])):
        raise UsageError(f"{src}: no recorded actions for the predicted steps; this model plays keys: "
                         f"pass --actions (e.g. --actions {','.join(names[:2] or ['0'])})")
    indices = None
    if raw is not None:
        ids = np.concatenate(raw)
        recorded = np.unique(ids)  # sorted distinct raw ids -> the model's indices
        try:
            indices = index_map(recorded, values, str(src))[np.searchsorted(recorded, ids)]
        except ActionError:
            if not args.actions:
                raise
    history = None  # the recorded keys before the first step, when all L-1 are there
    if indices is not None and before and len(raw[0]) == before:
        history = torch.as_tensor(indices[:before])
    keys = parse_actions(args.actions, values, names) if args.actions else indices[len(raw[0]):]
    if len(keys) < args.horizon:
        keys = np.concatenate([keys, np.full(args.horizon - len(keys), keys[-1])])
    return torch.as_tensor(keys[:args.horizon]), history


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
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, future)  # a file object: to a path not ending in ".npy" np.save adds one
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
    ap.add_argument("--classes", choices=["cycle", "prior"], default="cycle",
                    help="noise classes: sample s takes class s mod C (every future the model knows "
                         "shows), or drawn from the class prior the run learned (the model's own odds)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--actions", default=None, metavar="FILE|a,b,c",
                    help="keys of a model with action input, one per predicted step (ids or names, or a "
                         ".npy of ids; a shorter list holds its last key; default: the recorded ones)")
    ap.add_argument("--out", default=None, help="output: .mp4 .gif .png .npy (default: rollout.mp4 "
                                                "next to the checkpoint)")
    ap.add_argument("--fps", type=float, default=None, help="video frame rate (default: the store's)")
    ap.add_argument("--upscale", type=positive, default=None,
                    help="nearest-neighbour zoom for viewing (default: to about 128 px)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    add_precision(ap, "inference dtype (auto: bf16 where the hardware has it)")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="inference backend (auto: the fastest measured here; see framegan.inference)")
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
    from framegan.checkpoint import check_path

    set_threads(args.threads, opencv=True)  # OpenCV resizes a video context
    check_path(args.checkpoint)  # before --out: its default lies beside the checkpoint
    with output_dir(args.out.parent, args.out):  # an --out that cannot be written fails now, not after the work
        return _rollout(args)


def _rollout(args: argparse.Namespace) -> Path:
    from framegan.checkpoint import checkpoint_config, generator_from_state, inverse_from_state, load_checkpoint
    from framegan.video import probe

    def video_fps(path: Path) -> float:
        return probe(path).fps

    device = resolve_device(args.device)
    state = load_checkpoint(args.checkpoint)  # read once: G, its store info and (--classes prior) q
    cfg = checkpoint_config(state, args.checkpoint)
    G, store_info = generator_from_state(state, cfg, args.checkpoint, device), state.get("store", {})
    K, src = G.context, Path(args.context)
    if not src.exists():
        raise UsageError(f"{src}: no such video file or frame store")
    if src.is_dir():
        context, truth, fps = context_from_store(src, store_info, K, args.horizon, args.segment, args.start)
    else:
        context, truth, fps = context_from_video(src, store_info, K, args.horizon, args.start)
    resampled = not src.is_dir() and abs(fps - video_fps(src)) > 1e-3 * fps
    keys, history = step_actions(args, G, store_info, src, resampled)
    prior = None
    if args.classes == "prior":
        Q = inverse_from_state(state, cfg, args.checkpoint, device) if G.z_classes else None
        if Q is None or not Q.has_prior:
            raise UsageError(f"{args.checkpoint} learned no class prior (trained before it, or without noise "
                             f"classes): use --classes cycle")
        prior = Q.prior
    try:
        predict = predictor(prepare(G, device), args.backend, args.precision, checkpoint=args.checkpoint)
    except BackendError as e:
        raise UsageError(str(e)) from None
    ctx = to_model(context)
    warm = None if keys is None else keys[:1]
    rollout(predict, ctx, 1, args.samples, args.seed, actions=warm)  # warm-up: ONNX export / kernels
    for note in predict.notes:
        print(f"note: {note}")
    t0 = time.perf_counter()
    future = rollout(predict, ctx, args.horizon, args.samples, args.seed, actions=keys, history=history,
                     prior=prior).cpu()
    seconds = time.perf_counter() - t0
    n = args.samples * args.horizon
    print(f"generated {args.samples} x {args.horizon} frames in {seconds:.2f} s: {n / seconds:.1f} frames/s "
          f"({device.type}, {predict.describe(args.samples)}, batch {args.samples})")
    h, w = context.shape[1:3]
    upscale = args.upscale or max(1, 128 // max(h, w))
    write_output(args.out, context, to_pixels(future), truth if len(truth) else None,
                 args.fps or fps, upscale)
    print(f"wrote {args.out}")
    return args.out


def main(argv=None) -> int:
    from framegan.actions import ActionError
    from framegan.checkpoint import CheckpointError
    from framegan.preprocess import PreprocessError
    from framegan.store import StoreError
    from framegan.video import VideoError

    return run_main(lambda: run(parse_args(argv)),
                    (CheckpointError, StoreError, VideoError, PreprocessError, ActionError))


if __name__ == "__main__":
    sys.exit(main())
