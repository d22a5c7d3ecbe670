"""python -m framegan.experiments.fork — the lecture's claim, measured on a family of fork games.

At the junction of a fork game (``framegan.sample_game``; ``--game NAME``) the character takes one
of N branches, each with probability 1/N, and nothing in the past frames says which. An L1 model
must predict the average (N faded part-characters); a GAN fed noise should draw one *sharp*
branch, each about 1/N of the time. This script generates the game's training data into its own
frame store, trains both models on it (configs/fork.yaml and configs/fork_regression.yaml),
rolls out S samples from fresh contexts that end exactly at the fork, and scores every
predicted frame against the N possible futures, which the game renders exactly:

* alpha(pixel) = how much of the character colour the pixel holds over the true background,
  projected on (character - background): 1 = character, 0 = background.
* a_b = mean alpha over branch b's sprite box at that step, less the parts other boxes share;
  a_0 = the same over the boxes of the step before (a frozen or ghosted character shows there).
* sharp: exactly one branch >= SHARP_ON, every other branch and the old box <= OFF, and the rest
  of the frame intact (at most NOISY_SHARE of the pixels away from the sprite boxes off by more
  than NOISY_LEVEL): one whole character of its colour and size where one future has it;
  split: two or more branches >= SPLIT_ON: part-characters on several branches, the L1 failure;
  blurred: anything else (faded, frozen, smeared, vanished, a broken scene).
  branch: the branch with the largest a_b (counted for sharp frames).

Fresh contexts (``check_fresh``): the store a model was trained on records the (game, seed,
episodes) it was generated from (``sample_game.build_sample_store``). Its episodes are rendered
again, the store is checked to hold exactly those renders (one segment per episode, every frame
within codec error), and then no scoring context may equal K consecutive rendered frames of any
training episode (SHA-256 of the uint8 pixels) or lie within codec error of any K-frame window
of the store. Why that is a proof: every training window is K consecutive frames of one segment,
i.e. the codec's copy of K consecutive renders of one training episode; a scoring context whose
renders differ from all of those differs from the source of every training window in at least
one pixel (up to a SHA-256 collision), and the distance check shows the difference is not
within codec noise. Otherwise the script stops with an error instead of scoring.

Branch shares: under uniform random noise (a model with ``model.z_classes`` draws each sample's
class uniformly at random, as rollout does; the draws are reported), per context, and per class
(each class sampled explicitly). With a class model the uniform share follows from the class
draws whenever each class keeps to one branch, so the per-class and per-context shares are the
figures that can fail: does every class keep to one branch, do the classes cover every branch,
and does every context reach every branch?

Trail (``TRAIL_LEVEL``): the share of the pixels away from the boxes that a rollout leaves off by
a little (too faint to break the scene), per step; the table prints the last step's, and the part
of it on the corridor behind the character (``path``).

Writes ``<out>/fork.json`` and ``<out>/fork.gif`` (context | regression | 4 GAN samples).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from einops import reduce, repeat

from framegan import sample_game as game_mod
from framegan.atomic import atomic_path
from framegan.cli import Parser, UsageError, positive, run_main
from framegan.frames import to_model, to_pixels
from framegan.sample_game import GRID, Episode, ForkGame

SHARP_ON, OFF, SPLIT_ON = 0.75, 0.25, 0.2
# A sharp frame must also keep the rest of the scene: outside the (dilated) sprite boxes at most
# NOISY_SHARE of the pixels may differ from the true frame by more than NOISY_LEVEL (uint8, any
# channel; far above the H.264 noise of the training video). Otherwise it counts as blurred. The
# L1 model stayed under 1.7 % on the sample game (a slightly soft patrolling block); broken
# rollouts reached 13-32 %.
NOISY_LEVEL, NOISY_SHARE = 48, 0.02
# A trail: what a predicted character (or block) leaves behind where the true frame is background
# again. ``trail`` = share of the pixels away from the sprite boxes that differ from the true frame
# by more than TRAIL_LEVEL (uint8, any channel), per step; too faint for NOISY_LEVEL, plain to see
# in a GIF. G's residual head left 3.9 % at step 3 on the sample game (1000 steps), composite 0.4 %.
# ``trail_path``: the part of it on the corridor the character walked or could have walked (every
# branch's boxes up to the step before, dilated like the boxes): a mark left behind the character;
# the rest is the scene's other moving things (the patrolling block and the light) drawn off.
TRAIL_LEVEL = 16
# Mean |stored - rendered| of one frame, uint8 levels, that still counts as "the same frame": the
# training video is H.264 yuv444p crf 18, measured at most 2.5 on every game of the family.
CODEC_TOLERANCE = 4.0
LABELS = ("sharp", "split", "blurred")


class NotFresh(RuntimeError):
    """A scoring context occurs in training, or the training data cannot be checked (one line)."""


# ----------------------------------------------------------------------------- scoring one frame
def sprite_mask(game: ForkGame, xy: tuple[int, int], size: int) -> np.ndarray:
    """Boolean (size, size) mask of the sprite box with top-left ``xy`` (grid units), clipped."""
    m = np.zeros((GRID, GRID), bool)
    x, y = xy
    m[max(y, 0):max(y + game.sprite, 0), max(x, 0):max(x + game.sprite, 0)] = True
    idx = (np.arange(size) * GRID) // size
    return m[idx][:, idx]


def boxes(ep: Episode, step: int, size: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Masks of every branch's sprite ``step`` frames after the fork, and of all the boxes of the
    step before (the junction box at step 1)."""
    game, t = ep.game, ep.fork + step
    per_branch = [sprite_mask(game, game_mod.position(game, ep.scene, t, b), size)
                  for b in range(len(game.branches))]
    old = np.zeros_like(per_branch[0])
    for b in range(len(game.branches)):
        old |= sprite_mask(game, game_mod.position(game, ep.scene, t - 1, b), size)
    return per_branch, old


def alpha_map(pred: np.ndarray, background: np.ndarray, colour) -> np.ndarray:
    """Per-pixel share of the character colour over the background (uint8 HxWx3 inputs)."""
    p, b = pred.astype(np.float32), background.astype(np.float32)
    d = np.asarray(colour, np.float32) - b
    return ((p - b) * d).sum(-1) / np.maximum((d * d).sum(-1), 1.0)


def path_mask(ep: Episode, step: int, size: int) -> np.ndarray:
    """Every box the character held from the episode's start to ``step - 1`` frames after the
    fork, on every branch: the corridor behind it."""
    game, m = ep.game, np.zeros((size, size), bool)
    for t in range(ep.fork + step):
        for b in range(len(game.branches)):
            m |= sprite_mask(game, game_mod.position(game, ep.scene, t, b), size)
    return m


def coverage(pred: np.ndarray, ep: Episode, step: int) -> tuple[list[float], float, bool, float, float]:
    """(a_b per branch, a_0 of the old boxes, whether the scene away from the boxes is broken, its
    trail share, the part of that share on the character's path) for one predicted frame ``step``
    (1-based) frames after ``ep``'s fork."""
    game, size = ep.game, pred.shape[0]
    bg = game_mod.render(game, ep.scene, ep.fork + step, None, size)
    a = alpha_map(pred, bg, game.colour).clip(0, 1.5)
    per_branch, old = boxes(ep, step, size)
    # Exclusive regions: boxes overlap near the junction, and a pixel shared by two of them
    # cannot tell which one the character is in.
    anywhere = old.copy()
    for m in per_branch:
        anywhere |= m
    regions = []
    for b, m in enumerate(per_branch):
        others = old.copy()
        for c, o in enumerate(per_branch):
            if c != b:
                others |= o
        regions.append(m & ~others)
    old_only = old.copy()
    for m in per_branch:
        old_only &= ~m
    mean = [float(a[r].mean()) if r.any() else 0.0 for r in regions]
    a_old = float(a[old_only].mean()) if old_only.any() else 0.0
    off, trail = background_error(pred, bg, anywhere, game, (NOISY_LEVEL, TRAIL_LEVEL))
    behind = background_error(pred, bg, anywhere, game, (TRAIL_LEVEL,), within=path_mask(ep, step, size))[0]
    return mean, a_old, off > NOISY_SHARE, trail, behind


def score_frame(pred: np.ndarray, ep: Episode, step: int) -> tuple[str, int, bool]:
    """Classify one predicted frame: (label, branch index, whether the scene is broken)."""
    a, a_old, noisy, *_ = coverage(pred, ep, step)
    return (*classify(a, a_old, noisy), noisy)


def classify(a: list[float], a_old: float, noisy: bool) -> tuple[str, int]:
    """(label, branch) from a frame's coverage (see the module docstring)."""
    branch = int(np.argmax(a))
    drawn = sum(x >= SHARP_ON for x in a)
    others_off = all(x <= OFF for i, x in enumerate(a) if i != branch)
    if drawn == 1 and others_off and a_old <= OFF and not noisy:
        return "sharp", branch
    if sum(x >= SPLIT_ON for x in a) >= 2:
        return "split", branch
    return "blurred", branch


def background_error(pred: np.ndarray, bg: np.ndarray, boxes: np.ndarray, game: ForkGame,
                     levels: tuple[int, ...], within: np.ndarray | None = None) -> list[float]:
    """Per level of ``levels``: the share of the pixels away from ``boxes`` (dilated by a quarter
    sprite) that differ from the background ``bg`` by more than that level in any channel.
    ``within`` (a mask, dilated the same way): count only those pixels, still as a share of all
    the pixels away from the boxes (so the shares of a split add up)."""
    near = dilate(boxes, game, pred.shape[0])
    error = np.abs(pred.astype(np.int16) - bg.astype(np.int16)).max(-1)
    n_away = max(1, int((~near).sum()))
    counted = ~near if within is None else ~near & dilate(within, game, pred.shape[0])
    return [float((error[counted] > level).sum() / n_away) for level in levels]


def dilate(mask: np.ndarray, game: ForkGame, size: int) -> np.ndarray:
    """``mask`` grown by a quarter sprite in every direction."""
    pad = max(1, game.sprite * size // GRID // 4)
    out = mask.copy()
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            out |= np.roll(mask, (dy, dx), axis=(0, 1))
    return out


# ----------------------------------------------------------------------------- scoring a model
class Tally:
    """Labels and branch counts of scored frames, overall, per step and per context."""

    def __init__(self, branches: list[str], horizon: int):
        self.branches, self.horizon = branches, horizon
        self.labels, self.noisy = Counter(), 0
        self.trail = np.zeros(horizon)  # summed trail shares per step
        self.trail_path = np.zeros(horizon)  # ... the part on the character's path
        self.per_step = [Counter() for _ in range(horizon)]
        self.step_branch = np.zeros((horizon, len(branches)), int)  # sharp frames per branch
        self.per_context: list[np.ndarray] = []                       # (horizon, N) per context

    def add(self, futures: np.ndarray, ep: Episode) -> None:
        """Score ``futures`` uint8 (S, T, H, W, 3) of one context, ``ep``."""
        mine = np.zeros((self.horizon, len(self.branches)), int)
        for sample in futures:
            for t, frame in enumerate(sample):
                a, a_old, broken, trail, behind = coverage(frame, ep, t + 1)
                label, branch = classify(a, a_old, broken)
                self.labels[label] += 1
                self.per_step[t][label] += 1
                self.noisy += broken
                self.trail[t] += trail
                self.trail_path[t] += behind
                if label == "sharp":
                    mine[t, branch] += 1
        self.step_branch += mine
        self.per_context.append(mine)

    def _shares(self, counts: np.ndarray) -> dict:
        total = counts.sum()
        return {name: (float(c / total) if total else None) for name, c in zip(self.branches, counts)}

    def summary(self) -> dict:
        total = sum(self.labels.values())
        per_step_total = total / self.horizon
        counts = self.step_branch.sum(0)
        every = [bool((c.sum(0) > 0).all()) for c in self.per_context]
        return {
            "frames": total,
            **{f"{k}_rate": self.labels[k] / total for k in LABELS},
            "noisy_rate": self.noisy / total,  # frames whose scene breaks away from the boxes (any label)
            "trail": (self.trail / per_step_total).tolist(),  # mean trail share per step
            "trail_path": (self.trail_path / per_step_total).tolist(),  # ... on the character's path
            "branch_counts": dict(zip(self.branches, counts.tolist())),  # sharp frames, all steps
            "branch_share": self._shares(counts),
            "per_step": [{**{k: self.per_step[t][k] / per_step_total for k in LABELS},
                          "branch_counts": dict(zip(self.branches, self.step_branch[t].tolist()))}
                         for t in range(self.horizon)],
            "per_context": [{"branch_counts": dict(zip(self.branches, c.sum(0).tolist())),
                             "branch_share": self._shares(c.sum(0)),
                             "step1_branch_counts": dict(zip(self.branches, c[0].tolist()))}
                            for c in self.per_context],
            # contexts with at least one sharp frame on every branch: z, not the context, decides
            "contexts_reaching_every_branch": sum(every),
        }


def sample_futures(G, context: torch.Tensor, horizon: int, z: torch.Tensor | None) -> np.ndarray:
    """Roll ``G`` out from one context (K, C, H, W) for each noise row of ``z`` (n, z_dim), or once
    for a deterministic G (z None): uint8 (n, T, H, W, 3)."""
    from framegan.inference import autoregress, predictor

    n = 1 if z is None else len(z)
    return to_pixels(autoregress(predictor(G, "torch"), context[None], horizon, n, z=z)[0])


def contexts_of(episodes: list[Episode], K: int) -> list[np.ndarray]:
    """The K frames that end at each episode's fork: uint8 (K, H, W, 3) each."""
    return [ep.frames[ep.fork + 1 - K: ep.fork + 1] for ep in episodes]


@torch.no_grad()
def score_model(G, K: int, episodes: list[Episode], samples: int, horizon: int, seed: int) -> dict:
    """Score ``samples`` rollouts per context under uniform random noise and, for a model with
    noise classes, ``samples`` more per class with that class fixed. A deterministic model
    (z_dim 0) is rolled out once per context."""
    names = episodes[0].game.branch_names
    uniform = Tally(names, horizon)
    classes = getattr(G, "z_classes", 0) if G.z_dim > 0 else 0
    per_class = [Tally(names, horizon) for _ in range(classes)]
    draws = np.zeros(classes, int)
    videos = []
    for i, (ep, ctx) in enumerate(zip(episodes, contexts_of(episodes, K))):
        ctx = to_model(ctx)
        gen = torch.Generator().manual_seed(seed + i)
        z = G.sample_z(samples, generator=gen) if G.z_dim > 0 else None
        if classes:
            draws += np.bincount(z[:, G.z_dim - classes:].argmax(1).numpy(), minlength=classes)
        fut = sample_futures(G, ctx, horizon, z)
        uniform.add(fut, ep)
        videos.append(fut)
        for c, tally in enumerate(per_class):
            zc = G.sample_z(samples, generator=gen, classes=torch.full((samples,), c))
            tally.add(sample_futures(G, ctx, horizon, zc), ep)
    out = {"samples_per_context": samples if G.z_dim > 0 else 1, "contexts": len(episodes),
           **uniform.summary(), "videos": videos}
    if classes:
        out["class_draws"] = draws.tolist()  # the uniform random draws behind the figures above
        out["per_class"] = [t.summary() for t in per_class]
    return out


# ----------------------------------------------------------------------------- fresh contexts
def context_key(frames: np.ndarray) -> bytes:
    """Exact identity of uint8 frames (shape included)."""
    return hashlib.sha256(repr(frames.shape).encode() + np.ascontiguousarray(frames).tobytes()).digest()


def fork_contexts(game: ForkGame, n: int, K: int, seed: int) -> list[Episode]:
    """``n`` episodes of ``game`` from ``seed`` with at least K frames up to the fork."""
    out = []
    for ep in game_mod.episodes(50 * n, seed=seed, game=game):
        if ep.fork + 1 >= K:
            out.append(ep)
            if len(out) == n:
                return out
    raise ValueError(f"{game.name}: no {n} episodes with {K} frames up to the fork")


def check_fresh(contexts: list[np.ndarray], store_root: str | Path, K: int) -> dict:
    """Prove that no context (uint8 (K, H, W, 3)) occurs in the store ``store_root`` (see the
    module docstring); raise ``NotFresh`` otherwise. Returns what was checked."""
    from framegan.store import StoreError, open_store

    root = Path(store_root)
    record = game_mod.read_record(root)
    if record is None:
        raise NotFresh(f"{root}: no record of the game it holds ({game_mod.record_path(root)}), so the "
                       "scoring contexts cannot be proven fresh; build it with this experiment")
    game = ForkGame.from_dict(record["game"])
    eps = list(game_mod.episodes(record["episodes"], record["seed"], record["size"], game))
    try:
        store = open_store(root)
    except StoreError as e:
        raise NotFresh(f"cannot check the training data: {e}") from None
    if [len(s) for s in store.segments] != [len(e.frames) for e in eps]:
        raise NotFresh(f"{root}: its segments are not the {len(eps)} episodes of its record "
                       f"({record['game']['name']}, seed {record['seed']})")
    for i, (seg, ep) in enumerate(zip(store.segments, eps)):
        err = np.abs(np.asarray(seg, np.int16) - ep.frames).mean((1, 2, 3)).max()
        if err > CODEC_TOLERANCE:
            raise NotFresh(f"{root}: segment {i} differs from episode {i} of its record by {err:.1f} "
                           f"levels (> {CODEC_TOLERANCE}): not the recorded game")
    keys = {context_key(ep.frames[i:i + K]) for ep in eps for i in range(len(ep.frames) - K + 1)}
    seen = [j for j, c in enumerate(contexts) if context_key(c) in keys]
    if seen:
        raise NotFresh(f"scoring contexts {seen} occur in the training episodes of {root}")
    nearest = nearest_windows(contexts, list(store.segments))
    close = [j for j, d in enumerate(nearest) if d <= CODEC_TOLERANCE]
    if close:
        raise NotFresh(f"scoring contexts {close} are within codec error ({CODEC_TOLERANCE} levels) of a "
                       f"window of {root}")
    return {"store": str(root), "game": game.name, "seed": record["seed"], "episodes": len(eps),
            "training_contexts": len(keys), "nearest_store_window": [round(d, 2) for d in nearest]}


def nearest_windows(contexts: list[np.ndarray], segments: list[np.ndarray]) -> list[float]:
    """For each context (K, H, W, 3), the smallest mean |difference| (uint8 levels) to any K
    consecutive frames of one segment.

    Exact, but searched cheaply: the distance of 4x4-block means is a lower bound of the pixel
    distance (|mean(a - b)| <= mean|a - b| per block), so windows are checked exactly in order of
    that bound until the bound passes the best exact distance found."""
    frames = np.concatenate([np.asarray(s) for s in segments])                    # (F, H, W, 3)
    block = 4 if frames.shape[1] % 4 == 0 and frames.shape[2] % 4 == 0 else 1
    coarse = reduce(frames.astype(np.float32), "f (h a) (w b) c -> f h w c", "mean", a=block, b=block)
    lengths = [len(s) for s in segments]
    seg_end = np.repeat(np.cumsum(lengths), lengths)                               # per frame
    out = []
    for ctx in contexts:
        K = len(ctx)
        starts = np.arange(len(frames) - K + 1)
        starts = starts[starts + K <= seg_end[starts]]                           # inside a segment
        if not len(starts):
            out.append(float("inf"))
            continue
        ctx_coarse = reduce(ctx.astype(np.float32), "k (h a) (w b) c -> k h w c", "mean", a=block, b=block)
        d = np.stack([np.abs(coarse - f).mean((1, 2, 3)) for f in ctx_coarse])  # (K, F)
        bound = sum(d[k, starts + k] for k in range(K)) / K
        best = float("inf")
        for i in np.argsort(bound):
            if bound[i] >= best:
                break
            s = starts[i]
            best = min(best, float(np.abs(frames[s:s + K].astype(np.int16) - ctx).mean()))
        out.append(best)
    return out


# ----------------------------------------------------------------------------- the experiment
def ensure_game_store(root: Path, game: ForkGame, n_episodes: int) -> Path:
    """The game's training store at ``root``: built (seed 0) when missing; an existing one must
    have been built for this game."""
    from dataclasses import asdict

    if (root / "manifest.json").exists():
        record = game_mod.read_record(root)
        if record is None or record["game"] != json.loads(json.dumps(asdict(game))):
            found = "no record" if record is None else f"game {record['game']['name']!r}"
            raise NotFresh(f"{root} exists but holds {found}, not this {game.name!r} game; "
                           "remove it or pass another --data")
        return root
    return game_mod.build_sample_store(root, n_episodes, seed=0, game=game)


# What makes the L1 model the lecture's baseline (configs/fork_regression.yaml): no noise, no
# adversary, one sample. Overrides of these keys set up the GAN (model.z_classes=3 for a three-way
# junction) and are not passed on to the baseline, which would stop being one.
BASELINE_KEYS = ("model.z_dim", "model.z_classes", "loss.adv_weight", "loss.variety_k", "loss.diversity_weight")


def baseline_overrides(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(the overrides the L1 baseline trains with, those left to the GAN alone)."""
    gan_only = [o for o in overrides if o.partition("=")[0].strip() in BASELINE_KEYS]
    return [o for o in overrides if o not in gan_only], gan_only


def train_model(config: str, out: Path, overrides: list[str]) -> Path:
    from framegan.train import main as train_main

    run = out / Path(config).stem
    rc = train_main(["--config", config, f"run.dir={run}", *overrides])
    if rc != 0:
        raise SystemExit(rc)
    return run / "checkpoints" / "last.pt"


def fork_gif(path: Path, reg: tuple[Episode, int, np.ndarray], gan: tuple[Episode, int, np.ndarray],
             upscale: int = 3) -> None:
    """Columns: regression | up to 4 GAN samples; rows: time. ``reg`` and ``gan``: (the model's first
    scoring episode, its context length K, its futures uint8 (S, T, H, W, 3)); each column shows
    its own K context frames, then its future, aligned at the fork (black before a shorter context)."""
    from framegan.summaries import gif_bytes, tile

    lead = max(reg[1], gan[1])
    columns = []  # uint8 (lead + T, H, W, 3) each
    for (ep, K, futures), n in ((reg, 1), (gan, min(4, len(gan[2])))):
        ctx = ep.frames[ep.fork + 1 - K: ep.fork + 1]
        before = np.zeros((lead - K, *ctx.shape[1:]), np.uint8)
        columns += [np.concatenate([before, ctx, futures[s]]) for s in range(n)]
    frames = np.stack([tile([np.stack([c[t] for c in columns])], pad=2) for t in range(len(columns[0]))])
    frames = repeat(frames, "t h w c -> t (h u) (w v) c", u=upscale, v=upscale)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gif_bytes(frames, fps=3))


def format_table(results: dict) -> str:
    names = results["branches"]
    head = (f"{'model':<14} {'sharp':>7} {'split':>7} {'blurred':>8} {'noisy':>7} {'trail':>6} {'path':>6}   "
            f"share {'/'.join(names):<18} every branch")
    rows = [f"fork game {results['game']!r}: {len(names)} branches, {results['contexts']} fresh contexts, "
            f"{results['horizon']} steps", head]

    def row(label, r, contexts):
        share = r["branch_share"]
        text = "n/a" if None in share.values() else "/".join(f"{share[n]:.2f}" for n in names)
        every = f"{r['contexts_reaching_every_branch']}/{contexts} contexts" if contexts else ""
        return (f"{label:<14} {r['sharp_rate']:>7.1%} {r['split_rate']:>7.1%} {r['blurred_rate']:>8.1%} "
                f"{r['noisy_rate']:>7.1%} {r['trail'][-1]:>6.1%} {r['trail_path'][-1]:>6.1%}   {text:<24} {every}")

    for name, r in results["models"].items():
        rows.append(row(name, r, r["contexts"]) + f"   ({r['frames']} frames)")
        for c, rc in enumerate(r.get("per_class", [])):
            rows.append(row(f"  class {c}", rc, r["contexts"]))
        if "class_draws" in r:
            rows.append(f"  uniform class draws: {r['class_draws']}")
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = Parser(prog="python -m framegan.experiments.fork", description=__doc__.splitlines()[0])
    ap.add_argument("--game", default="default", help=f"fork game: {', '.join(game_mod.GAMES)}")
    ap.add_argument("--data", help="the game's training store (default data/fork_<game>; built when missing)")
    ap.add_argument("--episodes", type=positive, default=400, help="episodes in a store built here")
    ap.add_argument("--out", default="runs/fork", help="where runs, fork.json and fork.gif go")
    ap.add_argument("--gan", help="use this GAN checkpoint instead of training configs/fork.yaml")
    ap.add_argument("--regression", help="use this checkpoint instead of training configs/fork_regression.yaml")
    ap.add_argument("--contexts", type=positive, default=16, help="fresh fork contexts")
    ap.add_argument("--samples", type=positive, default=32, help="sampled futures per context (and per class)")
    ap.add_argument("--horizon", type=positive, default=3, help="predicted frames per rollout")
    ap.add_argument("--seed", type=int, default=1234, help="seed of the fresh episodes and the noise")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="config overrides for both trainings (the noise and adversary keys: the GAN's only)")
    args = ap.parse_args(argv)
    if args.game not in game_mod.GAMES:
        raise UsageError(f"--game {args.game!r}: not one of {', '.join(game_mod.GAMES)}")
    if args.horizon > game_mod.GAMES[args.game].after:
        raise UsageError(f"--horizon {args.horizon}: the {args.game} game renders "
                         f"{game_mod.GAMES[args.game].after} frames after the fork")
    if any(o.startswith("data.root=") for o in args.overrides):
        raise UsageError("pass the training store as --data, not data.root=")
    return args


def run(args: argparse.Namespace) -> None:
    from framegan.checkpoint import load_generator

    game = game_mod.GAMES[args.game]
    out = Path(args.out)
    cfg_dir = Path(__file__).resolve().parents[2] / "configs"
    overrides = list(args.overrides)
    if not (args.gan and args.regression):
        data = ensure_game_store(Path(args.data or f"data/fork_{game.name}"), game, args.episodes)
        overrides.append(f"data.root={data}")
    out.mkdir(parents=True, exist_ok=True)
    gan_ckpt = Path(args.gan) if args.gan else train_model(str(cfg_dir / "fork.yaml"), out, overrides)
    reg_overrides, gan_only = baseline_overrides(overrides)
    if gan_only and not args.regression:
        print(f"note: {' '.join(gan_only)} set up the GAN only; the L1 baseline keeps no noise and no adversary")
    reg_ckpt = (Path(args.regression) if args.regression
                else train_model(str(cfg_dir / "fork_regression.yaml"), out, reg_overrides))
    results = {"game": game.name, "branches": game.branch_names, "contexts": args.contexts,
               "horizon": args.horizon, "seed": args.seed, "models": {}}
    shown = {}  # model -> (first scoring episode, K, its futures) for fork.gif
    for name, ckpt in (("regression", reg_ckpt), ("gan", gan_ckpt)):
        G, cfg, _ = load_generator(ckpt)
        K = cfg.data.context
        try:
            eps = fork_contexts(game, args.contexts, K, args.seed)
        except ValueError as e:
            raise UsageError(str(e)) from None
        fresh = check_fresh(contexts_of(eps, K), cfg.data.root, K)  # raises unless fresh
        r = score_model(G, K, eps, args.samples, args.horizon, args.seed)
        shown[name] = (eps[0], K, r.pop("videos")[0])
        results["models"][name] = {"checkpoint": str(ckpt), "z_classes": cfg.model.z_classes,
                                   "fresh": fresh, **r}
    with atomic_path(out / "fork.json") as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    fork_gif(out / "fork.gif", shown["regression"], shown["gan"])
    print(format_table(results))
    near = min(min(r["fresh"]["nearest_store_window"]) for r in results["models"].values())
    print(f"contexts checked fresh: none among the training windows; nearest store window {near:.1f} levels "
          f"(mean |difference| per pixel)")
    print(f"wrote {out / 'fork.json'} and {out / 'fork.gif'}")


def main(argv: list[str] | None = None) -> int:
    from framegan.checkpoint import CheckpointError
    from framegan.store import StoreError
    from framegan.video import VideoError

    return run_main(lambda: run(parse_args(argv)), errors=(CheckpointError, NotFresh, StoreError, VideoError))


if __name__ == "__main__":
    sys.exit(main())
