"""python -m framegan.experiments.key_effect — how much do the keys change an Atari game's future?

``evaluate`` scores controllability as delta-PSNR: PSNR of a rollout under the recorded keys
minus PSNR under another window's keys. How large that can get depends on the game and on the
player who recorded it, not only on the model: keys that rarely change, or change nothing on
screen, leave nothing to control. This script measures it on the true game. It plays the
recorder's sticky-random policy (``framegan.atari``, same options) and, at evenly spaced
moments, saves the emulator (its RNG included), plays the next ``--horizon`` steps under the keys
the policy pressed, restores, and plays them again under the keys of another moment (as
evaluate's shuffle does). Both true futures are area-resized to the store size (``--size``) and
compared per step, on the whole frame and on evaluate's moving area (pixels where the recorded
future differs from the last frame before it by more than ``metrics.MOVING_THRESHOLD``).

PSNR between the two true futures is the "key effect": low = the keys change a lot. A model
whose own moving-area error is ``e`` (MSE) can gain about ``10 log10(1 + d / e)`` dB of delta-PSNR
at most, where ``d`` is the key effect's MSE, if its errors under the wrong keys add to that
difference; the script prints that estimate for a given model PSNR (``--model-psnr``).

``--vary first`` changes only the first key (to another one) and keeps the pressed keys after
it: how much does a key change the next frame, and the ones after? On Ms. Pac-Man the frame
after next 4x more than the next (whole-frame MSE), where a G that sees one key per step has
only the newer key: why ``model.action_history`` exists.

Frames are uint8 ``(H, W, 3)`` screens here, compared on a [0, 1] scale.

    python -m framegan.experiments.key_effect [--game MsPacman] [--max-hold 15] [--frames 4000]
        [--every 20] [--horizon 4] [--size 64] [--model-psnr 17.7] [--seed 0] [--vary all|first]
"""
from __future__ import annotations

import argparse
import sys
from collections import deque

import cv2
import numpy as np
from einops import reduce
from tqdm import tqdm

from framegan.atari import AtariError, check_play, open_game
from framegan.cli import Parser, positive, run_main
from framegan.metrics import MOVING_THRESHOLD
from framegan.preprocess import parse_size


def _screen(recent: deque, size: tuple[int, int]) -> np.ndarray:
    """The recorder's frame (max over the pooled emulator screens), area-resized, float in [0, 1]."""
    pooled = reduce(np.stack(recent), "p h w c -> h w c", "max")
    return cv2.resize(pooled, size[::-1], interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _play(ale, keys, frameskip: int, max_pool: int, size) -> list[np.ndarray] | None:
    """Frames after each key of ``keys`` from the emulator's current state; None at a game over."""
    recent, out = deque([ale.getScreenRGB()], maxlen=max_pool), []
    for key in keys:
        for _ in range(frameskip):
            ale.act(key)
            if ale.game_over():
                return None
            recent.append(ale.getScreenRGB())
        out.append(_screen(recent, size))
    return out


def key_effect(game: str = "MsPacman", *, frames: int = 4000, every: int = 20, horizon: int = 4,
               size=64, frameskip: int = 4, sticky: float = 0.25, max_hold: int = 15,
               max_pool: int = 4, seed: int = 0, shift: int = 37, progress: bool = True,
               vary: str = "all") -> dict:
    """Play ``frames`` recorded frames of ``game`` and compare, every ``every`` frames, the true
    futures under the pressed keys and under the keys of moment ``j + shift`` (``vary="first"``:
    under the pressed keys with only the first one replaced by another key). Returns
    {"steps": [{"psnr", "psnr_moving", "moving_fraction"} per step], "windows": n, ...};
    PSNR pools squared errors over windows (moving: over the moving pixels)."""
    size = parse_size(size)
    ale, action_set = open_game(game, seed, sticky)
    rng = np.random.default_rng(seed)
    keys, key, hold = [], action_set[0], 0
    for _ in range(frames + horizon):  # the policy's keys, drawn up front: both plays can read ahead
        if hold == 0:
            key, hold = action_set[rng.integers(len(action_set))], rng.integers(1, max_hold + 1)
        keys.append(key)
        hold -= 1
    moments, recent = [], deque([ale.getScreenRGB()], maxlen=max_pool)
    for t in tqdm(range(frames), unit="frame", disable=not progress, desc=f"{game}: playing"):
        if t % every == every // 2:
            moments.append((ale.cloneState(include_rng=True), _screen(recent, size), keys[t:t + horizon]))
        for _ in range(frameskip):
            ale.act(keys[t])
            if ale.game_over():
                ale.reset_game()
                recent.clear()
                recent.append(ale.getScreenRGB())
                break
            recent.append(ale.getScreenRGB())
    sq = np.zeros(horizon)
    sq_moving, n_moving = np.zeros(horizon), np.zeros(horizon)
    windows = 0
    for j, (state, last, own) in enumerate(tqdm(moments, unit="window", disable=not progress,
                                                desc=f"{game}: two futures")):
        other = moments[(j + shift) % len(moments)][2]
        if vary == "first":  # another first key (the next one in the action set if it was the same)
            keys_ = list(action_set)
            first = other[0] if other[0] != own[0] else keys_[(keys_.index(own[0]) + 1) % len(keys_)]
            other = [first, *own[1:]]
        ale.restoreState(state)
        a = _play(ale, own, frameskip, max_pool, size)
        ale.restoreState(state)
        b = _play(ale, other, frameskip, max_pool, size)
        if a is None or b is None:  # a game over inside the window: nothing to compare
            continue
        windows += 1
        for k in range(horizon):
            err = ((a[k] - b[k]) ** 2).mean(-1)
            mask = np.abs(a[k] - last).max(-1) > MOVING_THRESHOLD
            sq[k] += err.mean()
            sq_moving[k] += err[mask].sum()
            n_moving[k] += mask.sum()
    if windows == 0:
        raise AtariError(f"no window of {horizon} steps without a game over in {frames} frames")

    def psnr(mse: float) -> float:
        return float(10 * np.log10(1.0 / mse)) if mse > 0 else float("inf")

    steps = [{"psnr": psnr(sq[k] / windows),
              "psnr_moving": psnr(sq_moving[k] / max(n_moving[k], 1)),
              "mse_moving": float(sq_moving[k] / max(n_moving[k], 1)),
              "moving_fraction": float(n_moving[k] / (windows * size[0] * size[1]))}
             for k in range(horizon)]
    return {"game": game, "windows": windows, "max_hold": max_hold, "size": list(size), "steps": steps, "vary": vary}


def gain_estimate(mse_effect: float, model_psnr: float) -> float:
    """dB of delta-PSNR a model with this (moving-area) PSNR could show if it followed the keys
    exactly: its error under the wrong keys grows by the key effect's MSE."""
    model_mse = 10 ** (-model_psnr / 10)
    return float(10 * np.log10(1 + mse_effect / model_mse))


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m framegan.experiments.key_effect", description=__doc__.splitlines()[0])
    p.add_argument("--game", default="MsPacman", help="ALE game (default MsPacman)")
    p.add_argument("--frames", type=positive, default=4000, help="frames played (default 4000)")
    p.add_argument("--every", type=positive, default=20, help="a window every N frames (default 20)")
    p.add_argument("--horizon", type=positive, default=4, help="steps compared per window (default 4)")
    p.add_argument("--size", default="64", help="store frame size, N or HxW (default 64)")
    p.add_argument("--frameskip", type=positive, default=4)
    p.add_argument("--sticky", type=float, default=0.25)
    p.add_argument("--max-hold", type=positive, default=15,
                   help="the policy holds each key 1..N frames, as record_atari (default 15)")
    p.add_argument("--max-pool", type=positive, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-psnr", type=float, action="append", default=[],
                   help="a model's moving-area PSNR at the last step: print the gain estimate")
    p.add_argument("--vary", choices=("all", "first"), default="all",
                   help="all: another moment's keys (evaluate's shuffle); first: only the first key changed")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    def work():
        args = _parser().parse_args(argv)
        check_play(args.frames, args.frameskip, args.sticky, args.max_hold, args.max_pool)
        r = key_effect(args.game, frames=args.frames, every=args.every, horizon=args.horizon,
                       size=args.size, frameskip=args.frameskip, sticky=args.sticky,
                       max_hold=args.max_hold, max_pool=args.max_pool, seed=args.seed,
                       progress=not args.quiet, vary=args.vary)
        h, w = r["size"]
        other = "the same with only the first key changed" if r["vary"] == "first" else "another window's"
        print(f"{r['game']} at {h}x{w}, policy holding keys 1..{r['max_hold']} frames: {r['windows']} windows; "
              f"PSNR between the true futures under the pressed keys and {other} (low = keys matter)")
        for k, s in enumerate(r["steps"], 1):
            print(f"  step {k:2d}: whole frame {s['psnr']:6.2f} dB, moving area {s['psnr_moving']:6.2f} dB "
                  f"({s['moving_fraction']:.1%} of the pixels move)")
        for m in args.model_psnr:
            print(f"a model at {m:g} dB moving-area PSNR (step {len(r['steps'])}) that followed the keys exactly "
                  f"would show about {gain_estimate(r['steps'][-1]['mse_moving'], m):.2f} dB of delta-PSNR there")

    return run_main(work, (AtariError,))


if __name__ == "__main__":
    sys.exit(main())
