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
        [--windows 128] [--seed 0]
"""
from __future__ import annotations

import argparse
import sys

import torch

from framegan.checkpoint import CheckpointError, checkpoint_config, generator_from_state, load_checkpoint, load_weights
from framegan.cli import Parser, positive, run_main
from framegan.data import ClipDataset, pick_windows
from framegan.engine import wrong_actions
from framegan.losses import patch_weight
from framegan.nets import build_discriminator
from framegan.store import StoreError


@torch.no_grad()
def probe(checkpoint, data, windows: int = 128, seed: int = 0) -> dict:
    """{kind: {"mean", "moving", "static"}} for the kinds scored, plus "moving_share" and
    "real_wins" {negative kind: share of moving patches where real scores higher}."""
    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state, checkpoint)
    if "D" not in state:
        raise CheckpointError(f"{checkpoint}: holds no discriminator")
    D = build_discriminator(cfg.model, cfg.data.context)
    load_weights(D, state["D"], f"{checkpoint} [D]")
    D.eval()
    G = generator_from_state(state, cfg, checkpoint)
    del state
    K = cfg.data.context
    ds = ClipDataset(data, context=K, horizon=1, split="val")
    if len(ds) < 2:
        raise StoreError(f"{data}: fewer than 2 held-out windows of {K + 1} frames")
    idx = pick_windows(len(ds), windows)
    clip, actions = (torch.as_tensor(v) for v in ds[idx])
    ctx, real = clip[:, :K], clip[:, K]
    gen = torch.Generator().manual_seed(seed)
    a = actions[:, K - 1] if D.num_actions else None
    if a is not None and (a < 0).any():
        raise StoreError(f"{data}: has no keys, but {checkpoint} was trained with them")
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
    out["windows"] = len(idx)
    return out


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m framegan.experiments.d_probe", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="a training checkpoint (it holds D)")
    p.add_argument("--data", required=True, help="frame store; its held-out windows are scored")
    p.add_argument("--windows", type=positive, default=128, help="held-out windows, evenly spread (default 128)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    def work():
        args = _parser().parse_args(argv)
        r = probe(args.checkpoint, args.data, args.windows, args.seed)
        print(f"D of {args.checkpoint} on {r['windows']} held-out windows of {args.data} "
              f"({r['moving_share']:.1%} of the patches move); mean patch logit:")
        print(f"  {'pair':14s} {'all':>7s} {'moving':>7s} {'static':>7s}  real scores higher on a moving patch")
        for k, v in r.items():
            if isinstance(v, dict) and "mean" in v:
                wins = r["real_wins"].get(k)
                print(f"  {k:14s} {v['mean']:+7.3f} {v['moving']:+7.3f} {v['static']:+7.3f}"
                      + (f"  {wins:.1%}" if wins is not None else ""))

    return run_main(work, (CheckpointError, StoreError))


if __name__ == "__main__":
    sys.exit(main())
