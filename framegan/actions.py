"""Actions beside a video and on the command line: the sidecar files and ``parse_actions``.

Sidecars beside ``game.mp4`` (all optional; written by ``tools/record_atari.py``, read by
``tools/extract_frames.py``):

- ``game.actions.npy``: integers ``[N]``, one per video frame; ``actions[i]`` is what the player
  pressed after frame ``i`` (the ``(frame, action) -> next frame`` convention). Any integers.
- ``game.action_names.json``: ``{"<id>": "<name>", ...}``, e.g. ALE's ``"NOOP"``, ``"LEFT"``.
- ``game.cuts.npy``: sorted video-frame indices where a new episode starts (a recorder knows its
  resets); extraction always starts a new segment there.

In a frame store actions are raw ids per segment; the model sees their *index* into the store's
sorted ``action_values`` (0..A-1). ``parse_actions`` turns a CLI spec (a ``.npy`` of raw ids,
``3,3,0``, or ``LEFT,LEFT,NOOP``) into those indices. Frames themselves are not handled here
(uint8 ``(T, H, W, 3)`` on disk, ``(B, T, C, H, W)`` floats in [-1, 1] in the model).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from framegan.atomic import atomic_path

ACTIONS = ".actions.npy"
NAMES = ".action_names.json"
CUTS = ".cuts.npy"


class ActionError(ValueError):
    """An unreadable sidecar or an action spec that does not fit the store; one line."""


def sidecar(video: str | Path, suffix: str) -> Path:
    """``game.mp4`` + ``.actions.npy`` -> ``game.actions.npy`` (same directory)."""
    video = Path(video)
    return video.with_name(video.stem + suffix)


def read_ids(path: str | Path, what: str = "actions") -> np.ndarray:
    """A 1-D integer ``.npy`` as int64; memory-mapped when it already is int64 (long videos)."""
    path = Path(path)
    if not path.is_file():
        raise ActionError(f"{path}: no such {what} file")
    try:
        ids = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ActionError(f"{path}: not a readable .npy file ({str(e).splitlines()[0][:100]})") from None
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ActionError(f"{path}: {what} must be a 1-D integer array, got {ids.dtype} "
                          f"{tuple(ids.shape)}")
    if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
        raise ActionError(f"{path}: {what} ids beyond int64")
    return ids if ids.dtype == np.int64 else ids.astype(np.int64)


def read_names(path: str | Path) -> dict[int, str]:
    """``{"3": "RIGHT", ...}`` -> ``{3: "RIGHT"}``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ActionError(f"{path}: unreadable ({type(e).__name__}: {str(e).splitlines()[0][:100]})") from None
    try:
        if not isinstance(raw, dict):
            raise TypeError
        names = {int(k): v for k, v in raw.items()}
        if not all(isinstance(v, str) and v.strip() for v in names.values()):
            raise TypeError
    except (TypeError, ValueError):
        raise ActionError(f"{path}: expected a JSON object of integer ids to names, "
                          'e.g. {"0": "NOOP", "3": "RIGHT"}') from None
    return {k: v.strip() for k, v in names.items()}


def read_cuts(path: str | Path) -> np.ndarray:
    """Sorted, distinct, non-negative frame indices where new episodes start."""
    cuts = np.array(read_ids(path, "cuts"))
    if cuts.size and (cuts.min() < 0 or np.any(np.diff(cuts) <= 0)):
        raise ActionError(f"{path}: cuts must be increasing non-negative frame indices")
    return cuts


def write_sidecars(video: str | Path, actions: np.ndarray, names: Mapping[int, str] | None = None,
                   cuts: Sequence[int] | None = None) -> list[Path]:
    """Write the sidecars of ``video`` (each atomically); returns the paths written."""
    written = [sidecar(video, ACTIONS)]
    with atomic_path(written[0]) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(actions, np.int64))
    if names is not None:
        written.append(sidecar(video, NAMES))
        with atomic_path(written[-1]) as tmp:
            Path(tmp).write_text(json.dumps({str(k): v for k, v in sorted(names.items())}, indent=1),
                                 encoding="utf-8")
    if cuts is not None:
        written.append(sidecar(video, CUTS))
        with atomic_path(written[-1]) as tmp, open(tmp, "wb") as f:
            np.save(f, np.asarray(cuts, np.int64))
    return written


def write_recording(video: str | Path, screens: Iterable[np.ndarray], fps: float, actions: np.ndarray,
                    names: Mapping[int, str], cuts: Sequence[int]) -> None:
    """A recorder's output: ``screens`` to ``video``, then its sidecars. ``actions`` and ``cuts``
    are read only after the screens are consumed (the recorders fill them while playing). On any
    failure the video and its sidecars are removed: a video without its keys is half an output."""
    from framegan.video import write_video  # PyAV, only for the recorders

    write_video(video, screens, fps)
    try:
        write_sidecars(video, actions, names, cuts)
    except BaseException:
        for path in (Path(video), *(sidecar(video, suffix) for suffix in (ACTIONS, NAMES, CUTS))):
            path.unlink(missing_ok=True)
        raise


def describe(values: Sequence[int], names: Sequence[str]) -> str:
    """``0 NOOP, 3 RIGHT, ...`` for error messages (raw id, then name where it differs)."""
    return ", ".join(f"{v} {n}" if n != str(v) else str(v) for v, n in zip(values, names))


def parse_actions(spec: str | Path, values: Sequence[int], names: Sequence[str]) -> np.ndarray:
    """A CLI action spec -> int64 indices into ``values`` (the store's sorted distinct raw ids).

    ``spec`` is a ``.npy`` file of raw ids, or comma-separated raw ids (``3,3,0,1``) or names
    (``LEFT,LEFT,NOOP``; exact, else case-insensitive), mixed freely. An id or name the store
    does not have is a one-line ``ActionError``.
    """
    values = [int(v) for v in values]
    if not values:
        raise ActionError("these frames have no actions, so --actions cannot be used")
    index = {v: i for i, v in enumerate(values)}
    text = str(spec).strip()
    if text.lower().endswith(".npy"):
        raw = read_ids(text).tolist()
        unknown = [v for v in raw if v not in index]
        if not raw:
            raise ActionError(f"{text}: no actions in the file")
        if unknown:
            raise ActionError(f"{text}: action {unknown[0]} is not one of the store's actions "
                              f"({describe(values, names)})")
        return np.array([index[v] for v in raw], np.int64)
    by_name = {n: i for i, n in enumerate(names)}
    by_folded = {n.lower(): i for i, n in enumerate(names)}
    out = []
    for token in text.split(","):
        token = token.strip()
        if not token:
            raise ActionError(f"--actions {text!r}: empty entry; expected e.g. 3,3,0 or LEFT,LEFT,NOOP "
                              "or a .npy file")
        try:
            i = index.get(int(token))
        except ValueError:
            i = by_name.get(token, by_folded.get(token.lower()))
        if i is None:
            raise ActionError(f"--actions: {token!r} is not one of the store's actions "
                              f"({describe(values, names)})")
        out.append(i)
    return np.array(out, np.int64)


def index_map(store_values: Sequence[int], model_values: Sequence[int], where: str = "the data") -> np.ndarray:
    """Lookup table: index into ``store_values`` -> index into ``model_values`` (both sorted raw
    ids), for a model evaluated or rolled out on another store than its own. A raw id the model
    never saw is a one-line ``ActionError`` (the model has no input for it)."""
    position = {int(v): i for i, v in enumerate(model_values)}
    missing = [int(v) for v in store_values if int(v) not in position]
    if missing:
        raise ActionError(f"{where} holds action {missing[0]}, which the model was not trained with "
                          f"(its actions: {', '.join(str(v) for v in model_values)})")
    return np.array([position[int(v)] for v in store_values], np.int64)
