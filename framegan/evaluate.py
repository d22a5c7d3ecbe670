"""python -m framegan.evaluate: per-horizon metrics of a checkpoint against baselines, same windows.

Clips are ``(B, T, C, H, W)`` float in [-1, 1]: context ``clip[:, :K]``, truth ``clip[:, K:K+T]``.
Every model rolls out autoregressively (``framegan.rollout``) from the same held-out windows;
copy-last-frame is always in the table, plus any ``--baseline`` checkpoint.

How numbers are pooled (the same for every model):
- PSNR and sharpness difference (dB) are computed from the error *pooled* over windows (and over
  the moving pixels for the moving-area variant): 10·log10(1 / mean error). Averaging per-frame dB
  values instead would let one exact frame (copy-last on a static window: +inf dB) decide the
  mean. A pooled value is +inf only when every frame is exact; JSON writes it as "inf". (Pooled
  PSNR is never above the mean of per-frame PSNRs that papers usually quote.)
- SSIM is the mean over frames (moving area: the SSIM map averaged over all moving pixels).
- Moving area: pixels that change by more than ``metrics.MOVING_THRESHOLD`` between the last
  context frame and the truth at that step. Steps with no moving pixel anywhere give null.
- With S samples, "mean of S" pools every sample (the quality of one random draw); "best of S"
  keeps, per window and per metric, the sample with the best horizon-pooled value: one sample
  for all T steps, not the best frame of each step (SAVP reports best/mean of 100 samples).
- Diversity: mean pairwise L1 between the S samples, on [0, 1] intensities.

    python -m framegan.evaluate --checkpoint run/checkpoints/last.pt --data data/sample \\
        --horizon 6 --samples 4 --baseline regression/checkpoints/last.pt --out run/eval
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from einops import rearrange, reduce, repeat
from tqdm import tqdm

from framegan import metrics
from framegan.atomic import atomic_path
from framegan.inference import BACKENDS, BackendError, autoregress, predictor, prepare
from framegan.rollout import Parser, UsageError, positive, resolve_device

COPY_LAST = "copy-last"
# reported name -> (per-frame value from ``metrics.frame_scores``, higher is better, dB after pooling)
METRICS = {"psnr": ("mse", False, True), "ssim": ("ssim", True, False),
           "sharpness": ("sharpness_error", False, True)}
LABELS = {"psnr": "PSNR dB", "ssim": "SSIM", "sharpness": "sharpness diff. dB"}


def pick_windows(n: int, max_windows: int | None) -> list[int]:
    """All window indices, or ``max_windows`` of them evenly spread (deterministic)."""
    if not max_windows or n <= max_windows:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_windows).round().astype(int).tolist()))


def _frame_stats(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-frame values ``(B, S, T)`` of every metric, whole frame and moving area."""
    s = pred.shape[1]
    scores = metrics.frame_scores(pred, repeat(truth, "b t c h w -> b s t c h w", s=s),
                                  repeat(mask, "b t h w -> b s t h w", s=s))
    out = {}
    for name, (source, _, _) in METRICS.items():
        out[name] = scores[source].numpy()
        out[name + "_moving"] = scores[source + "_moving"].numpy()
    return out


def evaluate_models(models: dict, dataset, horizon: int, samples: int = 1, seed: int = 0,
                    max_windows: int | None = None, batch_size: int = 8, precision: str = "auto",
                    progress: bool = True, backend: str = "torch") -> dict:
    """Roll out every model on the same windows of ``dataset`` and score each horizon step.

    ``models``: name -> generator (a module, run by ``backend`` in ``precision``, or a
    ``framegan.inference.Predictor``), or None for copy-last-frame. A deterministic G (z_dim 0) and
    copy-last are run with one sample. ``dataset[i]`` is a clip ``(K' + T', C, H, W)`` with
    ``K' = dataset.context`` >= every model's K and ``T' >= horizon``. Returns a JSON-ready dict
    (see ``summarise``); the same seed gives the same numbers.
    """
    K = dataset.context
    too_long = [n for n, G in models.items() if G is not None and G.context > K]
    if too_long:
        raise ValueError(f"models {too_long} need more than the dataset's {K} context frames")
    windows = pick_windows(len(dataset), max_windows)
    models = {n: None if G is None else predictor(G, backend, precision) for n, G in models.items()}
    n_samples = {n: samples if G is not None and G.z_dim > 0 else 1 for n, G in models.items()}
    gens = {n: torch.Generator(G.device).manual_seed(seed)
            for n, G in models.items() if G is not None}
    stats = {n: [] for n in models}
    moving, diversity = [], {n: [] for n in models}
    batches = [windows[i:i + batch_size] for i in range(0, len(windows), batch_size)]
    for batch in tqdm(batches, desc="evaluate", unit="batch", disable=not progress):
        clip = torch.stack([dataset[i] for i in batch])
        ctx, truth = clip[:, :K], clip[:, K:K + horizon]
        last = ctx[:, -1]
        mask = metrics.moving_mask(repeat(last, "b c h w -> b t c h w", t=horizon), truth)
        moving.append(reduce(mask.int(), "b t h w -> b t", "sum").numpy())
        for name, G in models.items():
            if G is None:
                pred = repeat(last, "b c h w -> b 1 t c h w", t=horizon)
            else:
                pred = autoregress(G, ctx, horizon, n_samples[name], gens[name]).cpu()
            stats[name].append(_frame_stats(pred, truth, mask))
            diversity[name].append(metrics.diversity(rearrange(pred, "b s t c h w -> s b t c h w")).numpy())
    n_moving = np.concatenate(moving).astype(np.float64)  # (N, T) moving pixels per truth frame
    h, w = clip.shape[-2:]
    results = {
        "windows": len(windows), "horizon": horizon, "samples": samples, "seed": seed, "context": K,
        "moving_threshold": metrics.MOVING_THRESHOLD,
        "moving_fraction": (n_moving.mean(0) / (h * w)).tolist(),
        "models": {},
    }
    for name in models:
        per_frame = {k: np.concatenate([b[k] for b in stats[name]]) for k in stats[name][0]}
        results["models"][name] = summarise(per_frame, n_moving, np.concatenate(diversity[name]))
        results["models"][name]["samples"] = n_samples[name]
    return results


def _pool(values: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Weighted mean along ``axis``; NaN values carry weight 0; all-zero weight -> NaN."""
    num = (np.nan_to_num(values) * weights).sum(axis)
    den = weights.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def summarise(per_frame: dict[str, np.ndarray], n_moving: np.ndarray, diversity: np.ndarray) -> dict:
    """Per-frame values ``(N, S, T)`` -> {metric: {"mean": {...}, "best": {...}}, "diversity": ...},
    each {"steps": [T values], "all": value pooled over every step}."""
    out = {}
    whole = np.ones_like(n_moving)
    for key, values in per_frame.items():
        _, higher_better, in_db = METRICS[key.removesuffix("_moving")]
        weights = n_moving if key.endswith("_moving") else whole            # (N, T)
        # best of S: per window, the sample whose horizon-pooled value is best
        per_sample = _pool(values, weights[:, None], axis=2)                # (N, S)
        per_sample = np.nan_to_num(per_sample, nan=0.0)  # windows without motion: weight 0 anyway
        pick = per_sample.argmax(1) if higher_better else per_sample.argmin(1)
        variants = {"mean": values.mean(axis=1),  # NaN (no motion) only where the weight is 0
                    "best": values[np.arange(len(values)), pick]}           # (N, T) each
        out[key] = {}
        for variant, v in variants.items():
            steps, overall = _pool(v, weights, axis=0), _pool(v, weights, axis=(0, 1))
            if in_db:
                steps, overall = _db(steps), _db(overall)
            out[key][variant] = {"steps": steps.tolist(), "all": float(overall)}
    out["diversity"] = {"steps": diversity.mean(0).tolist(), "all": float(diversity.mean())}
    return out


def _db(error: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return 10.0 * np.log10(1.0 / np.asarray(error, dtype=np.float64))


# ----------------------------------------------------------------------------- reporting
def _json_ready(x):
    """inf -> "inf" / "-inf", NaN -> null (strict JSON has neither)."""
    if isinstance(x, dict):
        return {k: _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def write_json(path: Path, results: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_json_ready(results), indent=1, allow_nan=False) + "\n")


def _steps_shown(T: int) -> list[int]:
    if T <= 8:
        return list(range(1, T + 1))
    return sorted({1, 2, 3} | {2**i for i in range(2, T.bit_length())} | {T})


def format_table(results: dict) -> str:
    """The readable table: one block per metric, one row per model (and per mean/best-of-S)."""
    T = results["horizon"]
    steps = _steps_shown(T)
    head = f"{'':30}" + "".join(f"{'t=' + str(t):>8}" for t in steps) + f"{'all':>8}"
    rows = []

    def fmt(v):
        return f"{'n/a':>8}" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:>8.3f}"

    def row(label, entry):
        return f"{label:30}" + "".join(fmt(entry['steps'][t - 1]) for t in steps) + fmt(entry["all"])

    for key in [*METRICS, *(k + "_moving" for k in METRICS)]:
        label = LABELS[key.removesuffix("_moving")] + (", moving area" if key.endswith("_moving") else "")
        rows += ["", label + " " + "-" * max(0, len(head) - len(label) - 1), head]
        for name, m in results["models"].items():
            s = m["samples"]
            rows.append(row(f"  {name}" + (f" (mean of {s})" if s > 1 else ""), m[key]["mean"]))
            if s > 1:
                rows.append(row(f"  {name} (best of {s})", m[key]["best"]))
    rows += ["", "diversity (mean pairwise L1, [0,1] scale)", head]
    rows += [row(f"  {name}", m["diversity"]) for name, m in results["models"].items()]
    return "\n".join(rows)


def plot(path: Path, results: dict) -> None:
    """metrics.png: PSNR and SSIM vs horizon step, one line per model (best-of-S thinner), via PIL."""
    from PIL import Image, ImageDraw, ImageFont

    colours = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
               (140, 86, 75), (227, 119, 194), (23, 190, 207)]
    W, H, pad = 420, 300, 48
    names = list(results["models"])
    img = Image.new("RGB", (2 * W, H + 18 * (len(names) + 1)), "white")
    d = ImageDraw.Draw(img)
    d.font = ImageFont.load_default(size=13)  # Pillow's bundled scalable font: no system fonts needed
    T = results["horizon"]
    for panel, key in enumerate(("psnr", "ssim")):
        x0 = panel * W
        lines = []
        for i, name in enumerate(names):
            m = results["models"][name]
            lines.append((m[key]["mean"]["steps"], colours[i % len(colours)], 3))
            if m["samples"] > 1:
                lines.append((m[key]["best"]["steps"], colours[i % len(colours)], 1))
        finite = [v for vals, _, _ in lines for v in vals if v is not None and math.isfinite(v)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        lo, hi = (lo - 0.5, hi + 0.5) if hi - lo < 1e-6 else (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))

        def xy(t, v, x0=x0, lo=lo, hi=hi):
            v = hi if math.isinf(v) else v  # a perfect (inf dB) step is drawn at the top edge
            x = x0 + pad + (t - 1) / max(1, T - 1) * (W - 1.5 * pad)
            return x, H - pad - (v - lo) / (hi - lo) * (H - 1.5 * pad)

        d.rectangle([x0 + pad, pad / 2, x0 + W - pad / 2, H - pad], outline="black")
        d.text((x0 + pad, 6), f"{LABELS[key]} vs step (higher is better)", fill="black")
        for v in (lo, (lo + hi) / 2, hi):
            d.text((x0 + 4, xy(1, v)[1] - 6), f"{v:.3g}", fill="black")
        for t in _steps_shown(T):
            d.text((xy(t, lo)[0] - 4, H - pad + 6), str(t), fill="black")
        d.text((x0 + W / 2, H - pad + 22), "step", fill="black")
        for vals, colour, width in lines:
            pts = [xy(t + 1, v) for t, v in enumerate(vals) if v is not None and not math.isnan(v)]
            if len(pts) > 1:
                d.line(pts, fill=colour, width=width)
            for p in pts:
                d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
    for i, name in enumerate(names):
        y = H + 4 + 18 * i
        d.line([pad, y + 7, pad + 30, y + 7], fill=colours[i % len(colours)], width=3)
        s = results["models"][name]["samples"]
        d.text((pad + 40, y), name + (f"  (thick: mean of {s}, thin: best of {s})" if s > 1 else ""), fill="black")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    ap = Parser(prog="python -m framegan.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint to evaluate (G_ema)")
    ap.add_argument("--data", required=True, help="frame store")
    ap.add_argument("--split", choices=["val", "train", "all"], default="val",
                    help="windows to score (val: the split training held out)")
    ap.add_argument("--horizon", type=positive, default=4,
                    help="steps to predict (T); windows need K + T frames inside one segment")
    ap.add_argument("--samples", type=positive, default=4, help="samples per window (S)")
    ap.add_argument("--baseline", action="append", default=[], metavar="CKPT",
                    help="another checkpoint for the same table (repeatable)")
    ap.add_argument("--max-windows", type=positive, default=200, help="windows, evenly spread")
    ap.add_argument("--stride", type=positive, default=1, help="step between window starts")
    ap.add_argument("--batch", type=positive, default=8, help="windows per forward batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="output directory (default: eval/ next to the checkpoint)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="inference backend (auto: the fastest measured here; see framegan.inference)")
    args = ap.parse_args(argv)
    args.out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    return args


def run(args) -> dict:
    from framegan.checkpoint import load_generator
    from framegan.data import ClipDataset
    from framegan.store import open_store

    device = resolve_device(args.device)
    store = open_store(args.data)
    models, val_fraction = {}, None
    for path in [args.checkpoint, *args.baseline]:
        G, cfg, info = load_generator(path, device)
        size = tuple(info.get("size") or store.size)
        if size != store.size:
            raise UsageError(f"{args.data}: store frames are {store.size[0]}x{store.size[1]}, "
                             f"{path} was trained on {size[0]}x{size[1]}")
        # runs/<run>/checkpoints/last.pt -> "<run>": two runs of one config keep their own names.
        ckpt = Path(path)
        name = base = ckpt.parent.parent.name if ckpt.parent.name == "checkpoints" else cfg.run.name or ckpt.stem
        i = 2
        while name in models or name == COPY_LAST:  # two runs of one config: default, default#2
            name, i = f"{base}#{i}", i + 1
        try:
            models[name] = predictor(prepare(G, device), args.backend, args.precision, checkpoint=path)
        except BackendError as e:
            raise UsageError(str(e)) from None
        val_fraction = cfg.data.val_fraction if val_fraction is None else val_fraction
    models[COPY_LAST] = None
    K = max(G.context for G in models.values() if G is not None)
    predict = models[next(iter(models))]
    dataset = ClipDataset(store, context=K, horizon=args.horizon, stride=args.stride, split=args.split,
                          val_fraction=val_fraction)
    print("note: FVD and LPIPS skipped (they need pretrained network weights, which framegan never "
          "downloads at run time)")
    results = evaluate_models(models, dataset, args.horizon, args.samples, args.seed, args.max_windows,
                              args.batch, args.precision)
    for note in dict.fromkeys(n for G in models.values() if G is not None for n in G.notes):
        print(f"note: {note}")
    backend, precision = predict.describe(args.batch * (args.samples if predict.z_dim > 0 else 1)).split()
    results.update(data=str(args.data), split=args.split, checkpoint=str(args.checkpoint),
                   baselines=[str(b) for b in args.baseline], precision=precision, backend=backend)
    print(f"{results['windows']} {args.split} windows of {args.data} (K={K}, T={args.horizon}), "
          f"seed {args.seed}, {results['backend']} {results['precision']}; moving area: change > "
          f"{round(metrics.MOVING_THRESHOLD * 255)}/255 from the last context frame")
    print(format_table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "metrics.json", results)
    plot(args.out / "metrics.png", results)
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'metrics.png'}")
    return results


def main(argv=None) -> int:
    from framegan.checkpoint import CheckpointError
    from framegan.store import StoreError

    try:
        run(parse_args(argv))
    except (UsageError, CheckpointError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
