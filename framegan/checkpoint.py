"""Checkpoints: atomic save, full training state, safe load.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
``torch.load(weights_only=True)``: a checkpoint from a stranger cannot run code.

Keys:  format, version, step, config (plain dict, see ``config.to_dict``), store (the frame-store
preprocessing: size, crop, fps — rollout resizes a video context the same way), G, G_ema, D,
opt_g, opt_d, scaler, rng.  Inference needs only config + G_ema (+ store).
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from framegan.atomic import atomic_path
from framegan.config import Config, ConfigError, from_dict

FORMAT = "framegan-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line for the user."""


# What torch.load raises on a file that is not a (complete) torch checkpoint: empty (EOFError),
# truncated zip or legacy stream (RuntimeError), plain text (KeyError), a zip that is not
# torch's (BadZipFile), unreadable (OSError). Measured with torch 2.14.
UNREADABLE = (EOFError, RuntimeError, KeyError, ValueError, zipfile.BadZipFile, OSError)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` atomically: temp file in the same directory, fsync, rename, fsync the directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with ``weights_only=True``; a file that cannot be read as a framegan checkpoint is a
    one-line ``CheckpointError``. Anything else (out of memory, Ctrl-C) passes through: the file
    is read to the CPU first, so only reading it can fail inside the ``except``, and the tensors
    move to ``map_location`` afterwards."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message advises weights_only=False: exactly what a stranger's file must not get.
        raise CheckpointError(f"{path}: refused to load: it holds pickled objects or code, not plain "
                              f"tensors (framegan loads with weights_only=True)") from None
    except torch.OutOfMemoryError:
        raise
    except UNREADABLE as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a framegan checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported "
                              f"(this framegan reads version {VERSION})")
    return _to_device(state, torch.device(map_location))


def _to_device(obj, device: torch.device):
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def checkpoint_config(state: dict, path: str | Path = "checkpoint") -> Config:
    """The training config stored in a checkpoint. A run always stores ``model.actions`` resolved;
    a checkpoint from before action input existed has no such key (it reads as -1, auto) and had
    no action input, which is what the count of its stored action values (none) says. One from
    before ``model.output`` existed is read with the head it had (``_upgrade``)."""
    try:
        cfg = from_dict(_upgrade(state["config"]))
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"{path}: stored config is unusable ({e})") from None
    if cfg.model.actions < 0:
        cfg.model.actions = len(((state.get("store") or {}).get("actions") or {}).get("values") or [])
    return cfg


def _upgrade(config: dict) -> dict:
    """A config stored before ``model.output`` existed says ``model.residual``: true was the
    residual head, false the direct one. One stored before ``model.action_history`` existed saw
    one key per step; one before ``model.copy_frames`` copied from the last frame only; one
    before ``data.key_change_repeat`` listed every window once."""
    if not isinstance(config, dict):
        return config
    if isinstance(config.get("data"), dict):
        config = {**config, "data": {"key_change_repeat": 1, **config["data"]}}
    model = config.get("model")
    if not isinstance(model, dict):
        return config
    model = dict(model)
    model.setdefault("action_history", 1)
    model.setdefault("copy_frames", 1)
    if "residual" in model:
        residual = model.pop("residual")
        model.setdefault("output", "residual" if residual else "direct")
    return {**config, "model": model}


def load_generator(path: str | Path, device: str | torch.device = "cpu", ema: bool = True):
    """(G in eval mode, Config, store-info dict) from a checkpoint, for rollout and evaluation."""
    state = load_checkpoint(path)
    cfg = checkpoint_config(state, path)
    return generator_from_state(state, cfg, path, device, ema), cfg, state.get("store", {})


def generator_from_state(state: dict, cfg: Config, path: str | Path = "checkpoint",
                         device: str | torch.device = "cpu", ema: bool = True):
    """G (eval mode) from an already loaded checkpoint ``state`` (G_ema unless ``ema`` is False)."""
    from framegan.nets import build_generator  # late import: nets are heavier than this module

    G = build_generator(cfg.model, cfg.data.context)
    key = "G_ema" if ema and "G_ema" in state else "G"
    load_weights(G, state[key], f"{path} [{key}]")
    return G.to(device).eval()


def load_inverse(path: str | Path, device: str | torch.device = "cpu"):
    """The inverse model q(class | context, frame) of a latent-action checkpoint (eval mode), or
    None when the run trained none."""
    state = load_checkpoint(path)
    return inverse_from_state(state, checkpoint_config(state, path), path, device)


def inverse_from_state(state: dict, cfg: Config, path: str | Path = "checkpoint",
                       device: str | torch.device = "cpu"):
    """``load_inverse`` from an already loaded checkpoint ``state`` (as ``generator_from_state``)."""
    from framegan.nets.inverse import InverseModel, inverse_fits, load_inverse_weights

    if "Q" not in state or not cfg.model.z_classes:
        return None
    Q = InverseModel(cfg.data.context, cfg.model.z_classes)
    if not inverse_fits(Q, state["Q"]):  # q before it saw the change and max-pooled: it answered one class
        print(f"note: {path} holds an inverse model of an older design; no latent-action report")
        return None
    load_inverse_weights(Q, state["Q"])
    return Q.to(device).eval()


def load_weights(module: torch.nn.Module, weights: dict, where: str) -> None:
    """``load_state_dict`` with a one-line message when the architecture does not match."""
    try:
        module.load_state_dict(weights)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise CheckpointError(f"{where}: architecture does not match this config ({detail[:200]})") from None
