"""python -m framegan.experiments.d_probe — does a checkpoint's discriminator tell anything apart?

Training logs D's mean score per kind of pair; a collapsed D shows there only as equal numbers.
This probe loads D and G_ema from a checkpoint, takes evenly spread held-out windows of a store,
and scores four kinds of (context, key, frame) pairs, as the D phase builds them: real (the
recorded next frame), fake (G_ema's sample), wrong context (the real frame under the next
window's context and key) and wrong key (the real frame under a key that was not pressed; models
with keys only). It prints each kind's mean patch logit, on the moving patches (some pixel
changes from the last context frame to the real frame by more than ``losses.MOTION_THRESHOLD``,
as for the D phase's patch weights) and on the static ones, and how often real outscores each
negative on the same moving patch: about 50 % = D cannot tell them apart there, and its
gradient tells G nothing.

Frames are ``(B, T, C, H, W)`` float in [-1, 1], as everywhere in the model code.

    python -m framegan.experiments.d_probe --checkpoint runs/X/checkpoints/last.pt --data data/X
        [--windows 128] [--seed 0] [--retrain STEPS [key=value ...]]

``--retrain STEPS`` probes a *fresh* D instead of the saved one, trained alone for STEPS D phases
(``engine.d_step``, the training run's batch size and losses, ``key=value`` overrides for D's
side: ``loss.adv_type``, ``model.d_spectral_norm``, ``train.lr_d``, ...) against the checkpoint's
frozen G_ema on the store's training windows, probed every STEPS/5. A D that learns here where
the saved one did not collapsed in training; one that learns nothing in either says that G's
samples are too close to the truth for this D at this budget.
"""
from __future__ import annotations

import argparse
import sys

import torch
from tqdm import tqdm

from framegan.checkpoint import CheckpointError, checkpoint_config, generator_from_state, load_checkpoint, load_weights
from framegan.cli import Parser, positive, run_main
from framegan.config import ConfigError, load_config, to_dict
from framegan.data import ClipDataset, pick_windows
from framegan.engine import NonFiniteLoss, build_gan, d_step, step_actions, wrong_actions
from framegan.losses import patch_weight
from framegan.nets import build_discriminator
from framegan.precision import autocast_dtype
from framegan.store import StoreError


def probe(checkpoint, data, windows: int = 128, seed: int = 0, retrain: int = 0,
          overrides: list[str] | None = None, report=None) -> dict:
    """{kind: {"mean", "moving", "static"}} for the kinds scored, plus "moving_share" and
    "real_wins" {negative kind: share of moving patches where real scores higher}. With
    ``retrain`` > 0 a fresh D is trained that many steps first (module docstring); ``report(step,
    result)`` sees the probe every ``retrain // 5`` steps."""
    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state, checkpoint)
    if "D" not in state and not retrain:
        raise CheckpointError(f"{checkpoint}: holds no discriminator")
    G = generator_from_state(state, cfg, checkpoint)
    K, vf = cfg.data.context, cfg.data.val_fraction
    ds = ClipDataset(data, context=K, horizon=1, split="val", val_fraction=vf)
    if len(ds) < 2:
        raise StoreError(f"{data}: fewer than 2 held-out windows of {K + 1} frames")
    idx = pick_windows(len(ds), windows)
    clip, actions = (torch.as_tensor(v) for v in ds[idx])
    if G.num_actions and (actions < 0).any():
        raise StoreError(f"{data}: has no keys, but {checkpoint} was trained with them")
    if not retrain:
        D = build_discriminator(cfg.model, cfg.data.context)
        load_weights(D, state["D"], f"{checkpoint} [D]")
        return _score(D.eval(), G, clip, actions, K, seed)
    del state
    cfg_d = load_config(base=to_dict(cfg), overrides=overrides)  # D's side may differ from the run's
    fixed = [k for k, a, b in (("data.context", cfg.data.context, cfg_d.data.context),
                               ("model.actions", cfg.model.actions, cfg_d.model.actions),
                               ("model.action_history", cfg.model.action_history, cfg_d.model.action_history))
             if a != b]
    if fixed:  # what G was trained on: D must see the same windows and keys
        raise ConfigError(f"{', '.join(fixed)} must stay as the checkpoint has it")
    torch.manual_seed(seed)  # D's initial weights
    D = build_discriminator(cfg_d.model, K)
    cpu = torch.device("cpu")
    gan = build_gan(cfg_d, G, D, cpu, autocast_dtype(cfg_d.train.precision, cpu))
    train = ClipDataset(data, context=K, horizon=1, split="train", val_fraction=vf)
    gen = torch.Generator().manual_seed(seed + 1)
    every = max(1, retrain // 5)
    for step in tqdm(range(retrain), desc="D alone", unit="step", disable=report is None):
        batch = torch.randint(len(train), (cfg_d.train.batch_size,), generator=gen).tolist()
        c, a = (torch.as_tensor(v) for v in train[batch])
        d_step(gan, cfg_d, c, step, actions=a if D.num_actions else None)
        if report is not None and (step + 1) % every == 0 and step + 1 < retrain:
            report(step + 1, _score(D.eval(), G, clip, actions, K, seed))
            D.train()
    return _score(D.eval(), G, clip, actions, K, seed)


@torch.no_grad()
def _score(D, G, clip, actions, K, seed) -> dict:
    ctx, real = clip[:, :K], clip[:, K]
    gen = torch.Generator().manual_seed(seed)
    a = step_actions(actions, K, history=D.action_history) if D.num_actions else None
    fake = G(ctx, G.sample_z(len(ctx), generator=gen) if G.z_dim else None, a).float()
    kinds = {"real": D(ctx, real, a), "fake": D(ctx, fake, a),
             "wrong context": D(ctx.roll(1, 0), real, None if a is None else a.roll(1, 0))}
    if D.num_actions > 1:
        kinds["wrong key"] = D(ctx, real, wrong_actions(a, D.num_actions, gen))
    logits = {k: v.float() for k, v in kinds.items()}
    patches = logits["real"].shape[-2:]
    moving = patch_weight(ctx[:, -1], [real], 1.0, patches) > 1  # the D phase's moving patches
    out = {k: {"mean": float(v.mean()),
               "moving": float(v[moving].mean()) if moving.any() else float("nan"),
               "static": float(v[~moving].mean()) if (~moving).any() else float("nan")}
           for k, v in logits.items()}
    out["moving_share"] = float(moving.float().mean())
    out["real_wins"] = {k: float((logits["real"] > v)[moving].float().mean()) if moving.any() else float("nan")
                        for k, v in logits.items() if k != "real"}
    out["windows"] = len(ctx)
    return out


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m framegan.experiments.d_probe", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a training checkpoint (it holds D)")
    p.add_argument("--data", required=True, help="frame store; its held-out windows are scored")
    p.add_argument("--windows", type=positive, default=128, help="held-out windows, evenly spread (default 128)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", type=positive, default=None, metavar="STEPS",
                   help="probe a fresh D trained alone for STEPS D phases against the frozen G_ema instead")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="with --retrain: config overrides for that D")
    return p


def _print(r: dict) -> None:
    print(f"  {'pair':14s} {'all':>7s} {'moving':>7s} {'static':>7s}  real scores higher on a moving patch")
    for k, v in r.items():
        if isinstance(v, dict) and "mean" in v:
            wins = r["real_wins"].get(k)
            print(f"  {k:14s} {v['mean']:+7.3f} {v['moving']:+7.3f} {v['static']:+7.3f}"
                  + (f"  {wins:.1%}" if wins is not None else ""))


def main(argv: list[str] | None = None) -> int:
    def work():
        args = _parser().parse_args(argv)
        if args.overrides and not args.retrain:
            raise ConfigError("key=value overrides only apply to a --retrain D")

        def report(step, r):
            tqdm.write(f"after {step} steps:")
            _print(r)

        r = probe(args.checkpoint, args.data, args.windows, args.seed, args.retrain or 0, args.overrides, report)
        which = f"a fresh D trained {args.retrain} steps against" if args.retrain else "D of"
        print(f"{which} {args.checkpoint} on {r['windows']} held-out windows of {args.data} "
              f"({r['moving_share']:.1%} of the patches move); mean patch logit:")
        _print(r)

    return run_main(work, (CheckpointError, StoreError, ConfigError, NonFiniteLoss))


if __name__ == "__main__":
    sys.exit(main())
