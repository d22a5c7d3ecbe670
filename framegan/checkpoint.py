"""Checkpoints: atomic save, full training state, safe load.

A checkpoint is a plain dict of tensors and Python primitives, so it loads with
``torch.load(weights_only=True)``: a checkpoint from a stranger cannot run code.

Keys:  format, version, step, config (plain dict, see ``config.to_dict``), store (the frame-store
preprocessing: size, crop, fps — rollout resizes a video context the same way), G, G_ema, D,
opt_g, opt_d, scaler, rng.  Inference needs only config + G_ema (+ store). Loading checks the
types of these parts, so a malformed file is a one-line ``CheckpointError`` naming it and what is
wrong, never a traceback in whichever command meets it first.
"""
from __future__ import annotations

import pickle
import warnings
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


def check_path(path: str | Path) -> Path:
    """``path`` if a file is there, else a one-line ``CheckpointError``: the commands check it
    before their output directory, whose default lies beside the checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load with ``weights_only=True``; a file that cannot be read as a framegan checkpoint is a
    one-line ``CheckpointError``. Anything else (out of memory, Ctrl-C) passes through: the file
    is read to the CPU first, so only reading it can fail inside the ``except``, and the tensors
    move to ``map_location`` afterwards."""
    path = check_path(path)
    try:
        with warnings.catch_warnings():  # a second stderr line before the one-line error
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message advises weights_only=False: exactly what a stranger's file must not get.
        if _refused(path, e):
            raise CheckpointError(f"{path}: refused to load: it holds pickled objects or code, not plain "
                                  f"tensors (framegan loads with weights_only=True)") from None
        raise CheckpointError(f"{path}: not a readable checkpoint (not a file torch.save wrote)") from None
    except torch.OutOfMemoryError:
        raise
    except UNREADABLE as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a framegan checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {state.get('version')} is not supported "
                              f"(this framegan reads version {VERSION})")
    _check_structure(state, path)
    return _to_device(state, torch.device(map_location))


# The first bytes of a pickle of protocol 2 to 5 (PROTO opcode, protocol): what torch.save's
# legacy format and the pickle module write (a zip checkpoint holds its pickle inside).
PICKLE_HEADERS = tuple(bytes([0x80, p]) for p in range(2, 6))


def _refused(path: Path, e: pickle.UnpicklingError) -> bool:
    """Did torch's weights-only unpickler refuse what a real pickle holds (an object, code)? Its
    message starts "Weights only load failed" for any file it gives up on; bytes that are no
    pickle at all (text, an .npy, an .onnx, a video: not zip files, so read as a legacy stream)
    fail as "Unsupported operand <first byte>". Measured with torch 2.14."""
    message = str(e)
    if "Weights only load failed" not in message:
        return False
    if "Unsupported operand" not in message:  # "Unsupported global ...": an object it will not build
        return True
    with open(path, "rb") as f:
        return f.read(2) in PICKLE_HEADERS  # a pickle, but one torch.save did not write


# Weight sets a framegan checkpoint may hold, each a state_dict (names -> tensors).
WEIGHTS = ("G", "G_ema", "D", "Q")


def _check_structure(state: dict, path: Path) -> None:
    """Refuse, in one line, a checkpoint whose parts have the wrong types (a stranger's file, or
    one edited by hand), so no command meets them as a traceback later. Which parts a command
    needs it checks itself (``checkpoint_config``, ``generator_from_state``). ``store: None``
    reads as no store info, as a missing key does."""
    if "config" in state and not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: its stored config is a {type(state['config']).__name__}, "
                              f"not a mapping of settings")
    for key in WEIGHTS:
        weights = state.get(key)
        if key in state and not (isinstance(weights, dict) and all(
                isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items())):
            raise CheckpointError(f"{path}: [{key}] is not a set of weights (names -> tensors)")
    if state.get("store") is None:
        state["store"] = {}
    store = state["store"]
    if not isinstance(store, dict):
        raise CheckpointError(f"{path}: its store info is a {type(store).__name__}, not a mapping")
    size = store.get("size")
    if size is not None and not (isinstance(size, (list, tuple)) and len(size) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)):
        raise CheckpointError(f"{path}: its stored frame size {size!r} is not [height, width]")
    actions = store.get("actions")
    if actions is not None and not (isinstance(actions, dict) and all(
            isinstance(actions.get(k, []), (list, tuple)) for k in ("values", "names"))):
        raise CheckpointError(f"{path}: its stored actions are not lists of values and names")


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
    config = state.get("config")
    if not isinstance(config, dict):  # load_checkpoint refuses other types; a bare dict may hold anything
        what = "no training config" if config is None else f"a config that is a {type(config).__name__}"
        raise CheckpointError(f"{path}: holds {what}, not a mapping of settings")
    try:
        cfg = from_dict(_upgrade(config))
    except ConfigError as e:
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
    return generator_from_state(state, cfg, path, device, ema), cfg, state.get("store") or {}


def generator_from_state(state: dict, cfg: Config, path: str | Path = "checkpoint",
                         device: str | torch.device = "cpu", ema: bool = True):
    """G (eval mode) from an already loaded checkpoint ``state`` (G_ema unless ``ema`` is False)."""
    from framegan.nets import build_generator  # late import: nets are heavier than this module

    if "G_ema" not in state and "G" not in state:
        raise CheckpointError(f"{path}: holds no generator weights (neither G_ema nor G)")
    G = build_generator(cfg.model, cfg.data.context)
    key = "G_ema" if (ema and "G_ema" in state) or "G" not in state else "G"
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
