"""Checkpoints: atomic save, full training state, safe load.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
``torch.load(weights_only=True)``: a checkpoint from a stranger cannot run code.

Keys:  format, version, step, config (plain dict, see ``config.to_dict``), store (the frame-store
preprocessing: size, crop, fps — rollout resizes a video context the same way), G, G_ema, D,
opt_g, opt_d, scaler, rng.  Inference needs only config + G_ema (+ store).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from framegan.atomic import atomic_path
from framegan.config import Config, ConfigError, from_dict

FORMAT = "framegan-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line for the user."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically: temp file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())  # the data is on disk before the rename makes it the checkpoint


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with ``weights_only=True``; every failure becomes a one-line ``CheckpointError``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False: exactly what a stranger's file must not get.
        raise CheckpointError(f"{path}: refused to load: it holds pickled objects or code, not plain "
                              f"tensors (framegan loads with weights_only=True)") from None
    except Exception as e:  # truncated / not a torch file / foreign format
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a framegan checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported "
                              f"(this framegan reads version {VERSION})")
    return state


def checkpoint_config(state: dict, path: str | Path = "checkpoint") -> Config:
    """The training config stored in a checkpoint."""
    try:
        return from_dict(state["config"])
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"{path}: stored config is unusable ({e})") from None


def load_generator(path: str | Path, device: str | torch.device = "cpu", ema: bool = True):
    """(G in eval mode, Config, store-info dict) from a checkpoint, for rollout and evaluation."""
    from framegan.nets import build_generator  # late import: nets are heavier than this module

    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    G = build_generator(cfg.model, cfg.data.context)
    key = "G_ema" if ema and "G_ema" in state else "G"
    load_weights(G, state[key], f"{path} [{key}]")
    return G.to(device).eval(), cfg, state.get("store", {})


def load_weights(module: torch.nn.Module, weights: dict, where: str) -> None:
    """``load_state_dict`` with a one-line message when the architecture does not match."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(f"{where}: architecture does not match this config ({detail[:200]})") from None
