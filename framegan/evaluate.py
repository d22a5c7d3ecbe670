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
- High-frequency power ratio (``hf_ratio``, ``metrics.hf_energy``: luma power above
  ``metrics.HF_CUTOFF`` cycles/pixel, Tukey-windowed; moving area: under ``metrics.moving_window``):
  the prediction's power summed over windows (and samples) divided by the truth's summed power, so a
  near-flat truth frame cannot blow the value up. 1 = as detailed as the truth, below = blurred,
  above = noise or artifacts. "mean of S" pools every sample; "best of S" is the ratio of the sample
  that best-of-S PSNR keeps (whole frame / moving area), i.e. whether the sample closest to the
  truth is also sharp. (Picking the sample whose ratio is nearest 1 would select on the measure
  itself and reward a model whose samples merely vary in sharpness.)

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
from framegan.actions import ActionError, index_map
from framegan.atomic import atomic_path, output_dir
from framegan.cli import Parser, UsageError, add_precision, add_threads, positive, resolve_device, run_main, set_threads
from framegan.data import pick_windows
from framegan.engine import step_actions
from framegan.inference import BACKENDS, BackendError, autoregress, predictor, prepare

COPY_LAST = "copy-last"
# reported name -> (per-frame value from ``metrics.frame_scores``, higher is better, dB after pooling)
METRICS = {"psnr": ("mse", False, True), "ssim": ("ssim", True, False),
           "sharpness": ("sharpness_error", False, True)}
LABELS = {"psnr": "PSNR dB", "ssim": "SSIM", "sharpness": "sharpness diff. dB",
          "hf_ratio": "high-frequency power ratio (1 = as detailed as the truth)"}
HF_RATIO = "hf_ratio"
REPORTED = [*METRICS, HF_RATIO]  # table and plot order; each also "<name>_moving"


def _frame_stats(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-frame values ``(B, S, T)`` of every metric, whole frame and moving area, and the
    prediction's high-frequency energy (``hf_energy``, ``hf_energy_moving``)."""
    s = pred.shape[1]
    masks = repeat(mask, "b t h w -> b s t h w", s=s)
    scores = metrics.frame_scores(pred, repeat(truth, "b t c h w -> b s t c h w", s=s), masks)
    out = {}
    for name, (source, _, _) in METRICS.items():
        out[name] = scores[source].numpy()
        out[name + "_moving"] = scores[source + "_moving"].numpy()
    out["hf_energy"] = metrics.hf_energy(pred).double().numpy()
    out["hf_energy_moving"] = metrics.hf_energy(pred, masks).double().numpy()
    return out


def evaluate_models(models: dict, dataset, horizon: int, samples: int = 1, seed: int = 0,
                    max_windows: int | None = None, batch_size: int = 8, precision: str = "auto",
                    progress: bool = True, backend: str = "torch",
                    action_maps: dict[str, np.ndarray] | None = None, priors: dict | None = None) -> dict:
    """Roll out every model on the same windows of ``dataset`` and score each horizon step.
    ``priors``: name -> class prior (``inference.autoregress``) for the models that draw their
    noise classes from one; the others draw stratified.

    ``models``: name -> generator (a module, run by ``backend`` in ``precision``, or a
    ``framegan.inference.Predictor``), or None for copy-last-frame. A deterministic G (z_dim 0) and
    copy-last are run with one sample. ``dataset[i][0]`` is a clip ``(K' + T', C, H, W)`` with
    ``K' = dataset.context`` >= every model's K and ``T' >= horizon``. Returns a JSON-ready dict
    (see ``summarise``); the same seed gives the same numbers.

    Models with action input play the recorded actions of each window (``dataset[i][1]``; the
    partners' from ``dataset.window_actions``, as ``ClipDataset`` has it), mapped
    to the model's own indices by ``action_maps[name]``, default: the same indices) and are rolled
    out a second time with the actions of another window (``partners``: half the evaluated windows
    away; Genie's controllability, delta-PSNR = PSNR with the true actions - PSNR with the shuffled
    ones). A model with a key history also gets the recorded keys pressed after the context frames
    before the last (the partner's, in the second rollout).
    """
    K = dataset.context
    too_long = [n for n, G in models.items() if G is not None and G.context > K]
    if too_long:
        raise ValueError(f"models {too_long} need more than the dataset's {K} context frames")
    windows = pick_windows(len(dataset), max_windows)
    partner = dict(zip(windows, partners(windows)))
    models = {n: None if G is None else predictor(G, backend, precision) for n, G in models.items()}
    n_samples = {n: samples if G is not None and G.z_dim > 0 else 1 for n, G in models.items()}
    gens = {n: torch.Generator(G.device).manual_seed(seed)
            for n, G in models.items() if G is not None}
    keyed = [n for n, G in models.items() if G is not None and G.num_actions]
    maps = {n: torch.as_tensor((action_maps or {}).get(n, np.arange(G.num_actions))) for n, G in models.items()
            if n in keyed}
    shuffled_err = {n: [] for n in keyed}  # (B, T) mse of the mean of S with shuffled actions, + moving
    stats = {n: [] for n in models}
    moving, diversity = [], {n: [] for n in models}
    truth_hf = {"hf_energy": [], "hf_energy_moving": []}
    batches = [windows[i:i + batch_size] for i in range(0, len(windows), batch_size)]
    for batch in tqdm(batches, desc="evaluate", unit="batch", disable=not progress):
        items = [dataset[i] for i in batch]
        clip = torch.stack([frames for frames, _ in items])
        recorded = torch.stack([a for _, a in items])
        acts = recorded[:, K - 1:K - 1 + horizon]  # (B, T) keys of each step
        before = recorded[:, :K - 1]  # (B, K-1) keys after the context frames before the last
        if keyed and ((acts < 0).any() or (before < 0).any()):
            raise ValueError(f"models {keyed} play recorded actions, but these windows have none")
        if keyed:  # the keys of each window's partner, for the second rollout
            theirs = dataset.window_actions([partner[i] for i in batch])
            other_acts, other_before = theirs[:, K - 1:K - 1 + horizon], theirs[:, :K - 1]
        ctx, truth = clip[:, :K], clip[:, K:K + horizon]
        last = ctx[:, -1]
        mask = metrics.moving_mask(repeat(last, "b c h w -> b t c h w", t=horizon), truth)
        moving.append(reduce(mask.int(), "b t h w -> b t", "sum").numpy())
        truth_hf["hf_energy"].append(metrics.hf_energy(truth).double().numpy())
        truth_hf["hf_energy_moving"].append(metrics.hf_energy(truth, mask).double().numpy())
        for name, G in models.items():
            a = maps[name][acts] if name in keyed else None
            hist = maps[name][before] if name in keyed and G.action_history > 1 else None
            if G is None:
                pred = repeat(last, "b c h w -> b 1 t c h w", t=horizon)
            else:
                noise = gens[name].get_state()
                prior = (priors or {}).get(name)
                pred = autoregress(G, ctx, horizon, n_samples[name], gens[name], a, history=hist, prior=prior).cpu()
            if name in keyed:  # the same noise draws under another window's keys
                again = torch.Generator(G.device).set_state(noise)
                if len(windows) > 1:
                    other_a, other_hist = maps[name][other_acts], None if hist is None else maps[name][other_before]
                else:  # no other window: every key shifted to the next action index
                    other_a, other_hist = (a + 1) % G.num_actions, None if hist is None else (hist + 1) % G.num_actions
                other = autoregress(G, ctx, horizon, n_samples[name], again, other_a, history=other_hist, prior=prior)
                shuffled_err[name].append(_shuffled_errors(other.cpu(), truth, mask))
            stats[name].append(_frame_stats(pred, truth, mask))
            diversity[name].append(metrics.diversity(rearrange(pred, "b s t c h w -> s b t c h w")).numpy())
    n_moving = np.concatenate(moving).astype(np.float64)  # (N, T) moving pixels per truth frame
    h, w = clip.shape[-2:]
    results = {
        "windows": len(windows), "horizon": horizon, "samples": samples, "seed": seed, "context": K,
        "moving_threshold": metrics.MOVING_THRESHOLD,
        "moving_fraction": (n_moving.mean(0) / (h * w)).tolist(),
        "hf_cutoff": metrics.HF_CUTOFF,
        "models": {},
    }
    truth_energy = {k: np.concatenate(v) for k, v in truth_hf.items()}
    for name in models:
        per_frame = {k: np.concatenate([b[k] for b in stats[name]]) for k in stats[name][0]}
        hf = {k: (per_frame.pop(k), truth_energy[k]) for k in truth_energy}
        results["models"][name] = summarise(per_frame, n_moving, np.concatenate(diversity[name]), hf)
        results["models"][name]["samples"] = n_samples[name]
        if shuffled_err.get(name):
            true_err = {"": per_frame["psnr"], "_moving": per_frame["psnr_moving"]}  # mse (N, S, T)
            results["models"][name].update(_controllability(results["models"][name], shuffled_err[name], n_moving,
                                                            true_err, seed))
    return results


DECISIVE = 0.25  # [0, 1] scale: some pixel differs this much between two classes' predictions


@torch.no_grad()
def latent_report(Q, G, dataset, windows: list[int], seed: int = 0, batch_size: int = 32,
                  action_map: np.ndarray | None = None) -> dict:
    """How a latent-action model's classes (``model.z_classes``) are used, through its inverse
    model q(class | context, next frame), on the *decisive* steps: those where G's predictions
    for two classes differ somewhere by more than ``DECISIVE`` (elsewhere every class draws the
    same frame and a class means nothing):

    - ``decisive``: the share of steps that are;
    - ``usage``: the share of decisive real steps q labels with each class;
    - ``identifiable``: per class c, how often q gives c back for G's own sample drawn with c;
    - with recorded keys, ``purity``: the share of decisive real steps whose key is the most
      common key of their class (1 = every class stands for one key in every context), beside
      ``chance``: the most common key's share, what one class for everything would score.

    G and q see the last ``G.context`` frames of the dataset's context (a baseline may need more);
    ``action_map``: store action index -> the model's (``actions.index_map``), as in
    ``evaluate_models``.
    """
    K, C = dataset.context, Q.classes
    keymap = None if action_map is None else torch.as_tensor(action_map)
    gen = torch.Generator().manual_seed(seed)
    labels, keys, hits, seen, total = [], [], torch.zeros(C), 0, 0
    for i in range(0, len(windows), batch_size):
        items = [dataset[j] for j in windows[i:i + batch_size]]
        clip = torch.stack([f for f, _ in items])
        recorded = torch.stack([a for _, a in items])
        acts = recorded[:, K - 1]  # store indices: purity counts the store's keys
        ctx, real = clip[:, K - G.context:K], clip[:, K]
        model_keys = recorded if keymap is None or not G.num_actions else keymap[recorded]
        a = step_actions(model_keys, K, history=getattr(G, "action_history", 1)) if G.num_actions else None
        preds = torch.stack([G(ctx, G.sample_z(len(ctx), generator=gen, classes=torch.full((len(ctx),), c)), a)
                             for c in range(C)])                                  # (C, B, C, H, W)
        gap = reduce(preds.amax(0) - preds.amin(0), "b ch h w -> b", "max") / 2  # [0, 1] scale
        decisive = gap > DECISIVE
        total += len(ctx)
        if not decisive.any():
            continue
        seen += int(decisive.sum())
        labels.append(Q(ctx[decisive], real[decisive]).argmax(1))
        keys.append(acts[decisive])
        for c in range(C):
            hits[c] += (Q(ctx[decisive], preds[c][decisive]).argmax(1) == c).sum()
    out = {"classes": C, "steps": total, "decisive": seen / max(total, 1)}
    if not seen:
        return out
    labels, keys = torch.cat(labels), torch.cat(keys)
    out.update(usage=(torch.bincount(labels, minlength=C) / seen).tolist(), identifiable=(hits / seen).tolist())
    if (keys >= 0).all():
        table = torch.zeros(C, int(keys.max()) + 1)
        table.index_put_((labels, keys), torch.ones(seen), accumulate=True)
        out.update(purity=float(table.amax(1).sum() / seen), chance=float(table.sum(0).max() / seen))
    return out


def partners(windows: list[int]) -> list[int]:
    """The window whose keys each of ``windows`` plays in the shuffled rollout: the one half the
    list away (a derangement for two or more windows). Why not the next one: the windows are
    spread evenly, so neighbours are a few frames apart, and players hold keys (the recorder for
    up to 15 frames): a neighbour's keys were often the same keys, which pulled delta-PSNR toward
    0 (Enduro at step 1: 0.72 dB with the next window's keys, 1.14 / 1.43 / 1.46 two, three and
    five windows away)."""
    n = len(windows)
    return [windows[(i + n // 2) % n] for i in range(n)]


def _shuffled_errors(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-frame mse ``(B, S, T)`` of a rollout under the wrong actions, whole frame and moving area."""
    s = pred.shape[1]
    return {key: metrics.mse(pred, repeat(truth, "b t c h w -> b s t c h w", s=s),
                             None if key == "mse" else repeat(mask, "b t h w -> b s t h w", s=s)).numpy()
            for key in ("mse", "mse_moving")}


def _controllability(model: dict, shuffled: list[dict[str, np.ndarray]], n_moving: np.ndarray,
                     true_err: dict[str, np.ndarray], seed: int = 0) -> dict:
    """psnr_shuffled(_moving): PSNR (mean of S) under another window's actions, pooled like "psnr";
    delta_psnr(_moving) = psnr - psnr_shuffled per step (> 0: the keys steer the prediction), with
    "se" / "se_all": its standard error over the windows (``delta_se``). ``true_err``: the
    per-frame mse ``(N, S, T)`` under the recorded actions, keys "" and "_moving"."""
    out = {}
    for suffix in ("", "_moving"):
        err = np.concatenate([b["mse" + suffix] for b in shuffled]).mean(axis=1)  # (N, T): mean of S
        weights = n_moving if suffix else np.ones_like(n_moving)
        steps, overall = _db(_pool(err, weights, axis=0)), _db(_pool(err, weights, axis=(0, 1)))
        ref = model["psnr" + suffix]["mean"]
        se, se_all = delta_se(true_err[suffix].mean(axis=1), err, weights, seed)
        out["psnr_shuffled" + suffix] = {"steps": steps.tolist(), "all": float(overall)}
        out["delta_psnr" + suffix] = {"steps": (np.array(ref["steps"]) - steps).tolist(),
                                      "all": float(ref["all"] - overall), "se": se.tolist(), "se_all": se_all}
    return out


BOOTSTRAP = 1000  # resamples of the windows behind delta-PSNR's standard error


def delta_se(true_err: np.ndarray, other_err: np.ndarray, weights: np.ndarray, seed: int = 0
             ) -> tuple[np.ndarray, float]:
    """Standard error of delta-PSNR, per step ``(T,)`` and over all steps: the spread of the
    pooled difference over ``BOOTSTRAP`` resamples of the N windows (with replacement, the same
    resample for both rollouts, so it is a paired difference). ``true_err``, ``other_err``:
    ``(N, T)`` mse under the recorded and the other window's actions; ``weights`` ``(N, T)`` pixel
    counts, as pooled. Why: PSNR pools the mse over windows, so a few windows where the keys
    change a lot can carry the figure (Enduro, with the neighbour pairing before ``partners``:
    1.03 dB at step 4 on 100 windows, 0.25 on 200 others); the error says how far one evaluation
    can be trusted. NaN where a resample has no finite difference (an exact model: infinite PSNR
    both ways)."""
    n = len(true_err)
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=BOOTSTRAP).astype(np.float64)

    def pooled(err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (R, T) and (R,) dB per resample
        w = counts @ weights                                          # (R, T)
        num = counts @ (np.nan_to_num(err) * weights)                 # (R, T)
        with np.errstate(invalid="ignore", divide="ignore"):
            return _db(num / w), _db(num.sum(1) / w.sum(1))

    (t_steps, t_all), (o_steps, o_all) = pooled(true_err), pooled(other_err)
    with np.errstate(invalid="ignore"):
        return _finite_std(t_steps - o_steps), float(_finite_std((t_all - o_all)[:, None])[0])


def _finite_std(x: np.ndarray) -> np.ndarray:
    """Per column of ``(R, T)``: the standard deviation of its finite values (NaN with fewer than 2)."""
    ok = np.isfinite(x)
    n = ok.sum(0)
    mean = np.where(ok, x, 0).sum(0) / np.maximum(n, 1)
    var = np.where(ok, (x - mean) ** 2, 0).sum(0) / np.maximum(n - 1, 1)
    return np.where(n >= 2, np.sqrt(var), np.nan)


def _pool(values: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    """Weighted mean along ``axis``; NaN values carry weight 0; all-zero weight -> NaN."""
    num = (np.nan_to_num(values) * weights).sum(axis)
    den = weights.sum(axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def summarise(per_frame: dict[str, np.ndarray], n_moving: np.ndarray, diversity: np.ndarray,
              hf: dict[str, tuple[np.ndarray, np.ndarray]] | None = None) -> dict:
    """Per-frame values ``(N, S, T)`` -> {metric: {"mean": {...}, "best": {...}}, "diversity": ...},
    each {"steps": [T values], "all": value pooled over every step}.

    ``hf``: {"hf_energy" / "hf_energy_moving": (prediction ``(N, S, T)``, truth ``(N, T)``)} adds
    "hf_ratio" / "hf_ratio_moving" (summed prediction energy / summed truth energy; "best" follows
    the best-of-S PSNR pick)."""
    out, picks = {}, {}
    whole = np.ones_like(n_moving)
    for key, values in per_frame.items():
        _, higher_better, in_db = METRICS[key.removesuffix("_moving")]
        weights = n_moving if key.endswith("_moving") else whole            # (N, T)
        # best of S: per window, the sample whose horizon-pooled value is best
        per_sample = _pool(values, weights[:, None], axis=2)                # (N, S)
        per_sample = np.nan_to_num(per_sample, nan=0.0)  # windows without motion: weight 0 anyway
        pick = per_sample.argmax(1) if higher_better else per_sample.argmin(1)
        picks[key] = pick
        variants = {"mean": values.mean(axis=1),  # NaN (no motion) only where the weight is 0
                    "best": values[np.arange(len(values)), pick]}           # (N, T) each
        out[key] = {}
        for variant, v in variants.items():
            steps, overall = _pool(v, weights, axis=0), _pool(v, weights, axis=(0, 1))
            if in_db:
                steps, overall = _db(steps), _db(overall)
            out[key][variant] = {"steps": steps.tolist(), "all": float(overall)}
    for suffix in ("", "_moving") if hf else ():
        pred, truth = hf["hf_energy" + suffix]
        variants = {"mean": pred.mean(axis=1), "best": pred[np.arange(len(pred)), picks["psnr" + suffix]]}
        out[HF_RATIO + suffix] = {}
        with np.errstate(divide="ignore", invalid="ignore"):  # no truth detail (no motion): NaN
            for variant, v in variants.items():
                out[HF_RATIO + suffix][variant] = {"steps": (v.sum(0) / truth.sum(0)).tolist(),
                                                   "all": float(v.sum() / truth.sum())}
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

    for key in [*REPORTED, *(k + "_moving" for k in REPORTED)]:
        label = LABELS[key.removesuffix("_moving")] + (", moving area" if key.endswith("_moving") else "")
        rows += ["", label + " " + "-" * max(0, len(head) - len(label) - 1), head]
        best = "best-PSNR" if key.startswith(HF_RATIO) else "best"
        for name, m in results["models"].items():
            s = m["samples"]
            rows.append(row(f"  {name}" + (f" (mean of {s})" if s > 1 else ""), m[key]["mean"]))
            if s > 1:
                rows.append(row(f"  {name} ({best} of {s})", m[key]["best"]))
    rows += ["", "diversity (mean pairwise L1, [0,1] scale)", head]
    rows += [row(f"  {name}", m["diversity"]) for name, m in results["models"].items()]
    for name, m in results["models"].items():
        if "latent" in m:
            lat = m["latent"]
            rows += ["", f"latent actions of {name}: {lat['decisive']:.1%} of {lat['steps']} steps are decisive "
                     f"(the classes' predictions differ by > {DECISIVE:.2f} somewhere)"]
            if "usage" in lat:
                usage, known = (" ".join(f"{u:.2f}" for u in lat[k]) for k in ("usage", "identifiable"))
                rows += [f"  class usage (inverse model q on the real steps) {usage}",
                         f"  q recognises G's own class-c samples {known}"]
            if "purity" in lat:
                rows.append(f"  key purity of the classes {lat['purity']:.3f} (one class for all: {lat['chance']:.3f})")
    keyed = {name: m for name, m in results["models"].items() if "delta_psnr" in m}
    if keyed:
        rows += ["", "controllability: delta-PSNR dB = PSNR with the recorded keys - with those of a window "
                 "half the set away (mean of S); +- its standard error over the windows (bootstrap)", head]
        for name, m in keyed.items():
            for label, entry in ((f"  {name}", m["delta_psnr"]), (f"  {name}, moving area", m["delta_psnr_moving"])):
                rows.append(row(label, entry))
                if "se" in entry:
                    rows.append(row("    +-", {"steps": entry["se"], "all": entry["se_all"]}))
    return "\n".join(rows)


PANELS = [*REPORTED, "diversity"]  # top row: whole frame; bottom row: the same on the moving area
TITLES = {"psnr": "PSNR (dB) ↑", "ssim": "SSIM ↑", "sharpness": "sharpness difference (dB) ↑",
          "hf_ratio": "high-frequency power ratio (1 = truth)", "diversity": "diversity (pairwise L1) of samples"}


def _values(entry: dict) -> np.ndarray:
    """JSON-ready or raw step values -> float array (null -> NaN, "inf" -> inf)."""
    return np.array([np.nan if v is None else float(v) for v in entry["steps"]], dtype=np.float64)


def figure(results: dict):
    """The ``metrics.png`` figure (matplotlib, no display): one panel per metric and horizon step on
    the x axis; top row whole frame, bottom row moving area; per model one colour, mean of S
    thick, best of S thin. An infinite value (an exact prediction) is drawn as a triangle on the
    panel's top edge."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator, ScalarFormatter

    T, names = results["horizon"], list(results["models"])
    colours = [f"C{i % 10}" for i in range(len(names))]
    fig = Figure(figsize=(3.4 * len(PANELS), 7.0), dpi=100, layout="constrained")
    axes = fig.subplots(2, len(PANELS), squeeze=False)
    any_infinite = False
    for row, suffix in enumerate(("", "_moving")):
        for col, metric in enumerate(PANELS):
            ax, key = axes[row, col], metric + suffix
            if metric == "diversity" and suffix:
                continue  # the legend goes here
            area = "moving area" if suffix else "whole frame"
            ax.set_title(f"{TITLES[metric]}\n{area}" if metric != "diversity" else TITLES[metric], fontsize=10)
            infinite = []
            for name, colour in zip(names, colours):
                m = results["models"][name]
                lines = [(m[key], 2.2)] if metric == "diversity" else [(m[key]["mean"], 2.2)]
                if metric != "diversity" and m["samples"] > 1:
                    lines.append((m[key]["best"], 0.9))
                for entry, width in lines:
                    v = _values(entry)
                    steps = np.arange(1, T + 1)
                    finite = np.isfinite(v)
                    ax.plot(steps, np.where(finite, v, np.nan), color=colour, lw=width,
                            marker="o", ms=2.5 if width > 1 else 1.5)
                    infinite += [(t, colour) for t in steps[np.isposinf(v)]]
            if metric == HF_RATIO:
                # Blur spans decades (sigma 1 px leaves ~5 % of the power), noise only a factor of a
                # few: a log axis shows both; the band is the "as sharp as the truth" target.
                ax.set_yscale("log")
                ax.axhspan(0.8, 1.25, color="0.5", alpha=0.12, lw=0)
                ax.axhline(1.0, color="0.25", lw=1.0, ls=":")
                ax.yaxis.set_major_formatter(ScalarFormatter())
                ax.yaxis.set_minor_locator(NullLocator())
                lo, hi = ax.get_ylim()  # the band is always in view, so 1 always is
                ticks = ((0.5, 0.6, 0.7, 0.8, 1, 1.25, 1.6, 2) if hi / lo < 6 else
                         (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30))
                ax.set_yticks([t for t in ticks if lo <= t <= hi])
            any_infinite = any_infinite or bool(infinite)
            if infinite:
                top = ax.get_ylim()[1]
                for t, colour in infinite:
                    ax.plot([t], [top], marker="^", color=colour, ms=6, clip_on=False)
            ax.xaxis.set_major_locator(FixedLocator(_steps_shown(T)))
            ax.set_xlim(0.7, T + 0.3)
            ax.grid(alpha=0.3)
            if row == 1 or metric == "diversity":
                ax.set_xlabel("horizon step")
    legend = axes[1, -1]
    legend.set_axis_off()
    handles = [legend.plot([], [], color=c, lw=2.2, label=n)[0] for n, c in zip(names, colours)]
    samples = max(m["samples"] for m in results["models"].values())
    if samples > 1:
        handles += [legend.plot([], [], color="0.3", lw=2.2, label=f"mean of {samples} samples")[0],
                    legend.plot([], [], color="0.3", lw=0.9, label=f"best of {samples} (HF ratio: of the\n"
                                "best-PSNR sample)")[0]]
    if any_infinite:
        handles.append(legend.plot([], [], color="0.3", marker="^", ls="", label="exact (+inf dB)")[0])
    legend.legend(handles=handles, loc="center", frameon=False, fontsize=10,
                  title=f"{results['windows']} windows, horizon {T}")
    return fig


def plot(path: Path, results: dict) -> None:
    """Write ``figure(results)`` as a PNG (atomically)."""
    fig = figure(results)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    ap = Parser(prog="python -m framegan.evaluate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint to evaluate (G_ema)")
    ap.add_argument("--data", default=None,
                    help="frame store (default: the one the checkpoint trained on, data.root in its config)")
    ap.add_argument("--split", choices=["val", "train", "all"], default="val",
                    help="windows to score (val: the split training held out)")
    ap.add_argument("--horizon", type=positive, default=4,
                    help="steps to predict (T); windows need K + T frames inside one segment")
    ap.add_argument("--samples", type=positive, default=4, help="samples per window (S)")
    ap.add_argument("--classes", choices=["cycle", "prior"], default="cycle",
                    help="noise classes of the samples: sample s takes class s mod C (best-of-S covers every "
                         "class), or drawn from the class prior the run learned (the mean of S is then the "
                         "expected quality under the model's own odds; a run without a prior: as cycle)")
    ap.add_argument("--baseline", action="append", default=[], metavar="CKPT",
                    help="another checkpoint for the same table (repeatable)")
    ap.add_argument("--max-windows", type=positive, default=200, help="windows, evenly spread")
    ap.add_argument("--stride", type=positive, default=1, help="step between window starts")
    ap.add_argument("--batch", type=positive, default=8, help="windows per forward batch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="output directory (default: eval/ next to the checkpoint)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    add_precision(ap)
    ap.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="inference backend (auto: the fastest measured here; see framegan.inference)")
    add_threads(ap)
    args = ap.parse_args(argv)
    args.out = Path(args.out) if args.out else Path(args.checkpoint).parent / "eval"
    return args


def training_store(checkpoint: str) -> str:
    """The store ``checkpoint`` trained on (its config's ``data.root``), when it is here; its
    held-out split is what ``--split val`` scores."""
    from framegan.checkpoint import checkpoint_config, load_checkpoint
    from framegan.store import is_store

    root = checkpoint_config(load_checkpoint(checkpoint), checkpoint).data.root
    if not is_store(root):
        raise UsageError(f"no --data given, and the store {checkpoint} trained on ({root}) is not here: "
                         f"pass --data STORE")
    print(f"data: {root} (the store the checkpoint trained on; --data to score another)")
    return root


def run(args) -> dict:
    from framegan.checkpoint import check_path

    set_threads(args.threads)
    check_path(args.checkpoint)  # before --out: its default lies beside the checkpoint
    # --out is made (and checked writable) next: one that cannot be written fails before the
    # rollouts, and is removed again if the evaluation fails
    with output_dir(args.out):
        return _evaluate(args)


def _evaluate(args) -> dict:
    from framegan.checkpoint import checkpoint_config, generator_from_state, inverse_from_state, load_checkpoint
    from framegan.data import ClipDataset
    from framegan.store import open_store

    device = resolve_device(args.device)
    if args.data is None:
        args.data = training_store(args.checkpoint)
    store = open_store(args.data)
    models, action_maps, inverses, priors, val_fraction = {}, {}, {}, {}, None
    for path in [args.checkpoint, *args.baseline]:
        state = load_checkpoint(path)  # read once: G, q and the store info all come from it
        cfg = checkpoint_config(state, path)
        G, info = generator_from_state(state, cfg, path, device), state.get("store", {})
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
        if G.num_actions:
            if not store.action_values:
                raise UsageError(f"{path} plays recorded actions, but {args.data} has none")
            action_maps[name] = index_map(store.action_values, info["actions"]["values"], str(args.data))
        try:
            models[name] = predictor(prepare(G, device), args.backend, args.precision, checkpoint=path)
        except BackendError as e:
            raise UsageError(str(e)) from None
        val_fraction = cfg.data.val_fraction if val_fraction is None else val_fraction
        # q: the latent-action report below; its prior: the noise classes with --classes prior
        Q = inverses[name] = inverse_from_state(state, cfg, path, device)
        if args.classes == "prior" and Q is not None and Q.has_prior:  # runs from before the prior: cycled
            priors[name] = Q.prior
    models[COPY_LAST] = None
    K = max(G.context for G in models.values() if G is not None)
    predict = models[next(iter(models))]
    dataset = ClipDataset(store, context=K, horizon=args.horizon, stride=args.stride, split=args.split,
                          val_fraction=val_fraction)
    print("note: FVD and LPIPS skipped (they need pretrained network weights, which framegan never "
          "downloads at run time)")
    results = evaluate_models(models, dataset, args.horizon, args.samples, args.seed, args.max_windows,
                              args.batch, args.precision, action_maps=action_maps, priors=priors)
    for note in dict.fromkeys(n for G in models.values() if G is not None for n in G.notes):
        print(f"note: {note}")
    backend, precision = predict.describe(args.batch * (args.samples if predict.z_dim > 0 else 1)).split()
    results.update(data=str(args.data), split=args.split, checkpoint=str(args.checkpoint), classes=args.classes,
                   baselines=[str(b) for b in args.baseline], precision=precision, backend=backend)
    for name, Q in inverses.items():
        if Q is not None:
            results["models"][name]["latent"] = latent_report(
                Q, models[name], dataset, pick_windows(len(dataset), args.max_windows), args.seed,
                action_map=action_maps.get(name))
    print(f"{results['windows']} {args.split} windows of {args.data} (K={K}, T={args.horizon}), "
          f"seed {args.seed}, {results['backend']} {results['precision']}; moving area: change > "
          f"{round(metrics.MOVING_THRESHOLD * 255)}/255 from the last context frame")
    print(format_table(results))
    write_json(args.out / "metrics.json", results)
    plot(args.out / "metrics.png", results)
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'metrics.png'}")
    return results


def main(argv=None) -> int:
    from framegan.checkpoint import CheckpointError
    from framegan.store import StoreError

    return run_main(lambda: run(parse_args(argv)), (CheckpointError, StoreError, ActionError))


if __name__ == "__main__":
    sys.exit(main())
