"""Training windows from a frame store: ``ClipDataset``.

A window is ``context + horizon`` consecutive frames inside one segment (never across a cut).
An item is a pair ``(frames, actions)``: frames float ``(T, C, H, W)`` in [-1, 1], made by
``framegan.frames.to_model``, and actions int64 ``(T,)``, the index into ``store.action_values``
of the action pressed after each frame (all -1 when the store has no actions). A batch is
``(B, T, C, H, W)`` and ``(B, T)``: context ``x = frames[:, :K]``, targets ``frames[:, K:]``; the
action leading from the last context frame to target t (1-based) is ``actions[:, K - 2 + t]``.
Train with ``make_loader``: it fetches whole batches at once (see ``ClipDataset.__getitem__``).

Train / val split: a split of the store's *frames*, a pure function of the store and
``val_fraction`` (no RNG, and not of the window length: a frame is validation or training for
every context and horizon, so no validation frame is ever inside a training window, whatever
horizons train and evaluate use). Windows lie inside one split's frame range.
- With at least ``MIN_SEGMENTS_FOR_SEGMENT_SPLIT`` segments, whole segments: a segment is
  validation when the hash of (source, start_frame, file) falls below ``val_fraction`` (so a
  segment keeps its side when others are appended); if no segment's hash does, the one with the
  smallest hash is validation, and if every segment's does, the one with the largest is training.
- Otherwise the tail of each segment: the last ``max(MIN_VAL_TAIL, ceil(len * val_fraction))``
  frames are validation, the frames before them training; a segment shorter than twice that
  tail is all training.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)

from framegan.frames import to_model
from framegan.store import FrameStore, StoreError, open_store

MIN_SEGMENTS_FOR_SEGMENT_SPLIT = 10
# Shortest held-out tail (tail mode): one window of 4 context frames + 4 predicted steps. A fixed
# number, not the window length, so that the split is the same for every horizon.
MIN_VAL_TAIL = 8


def _unit_hash(seg: dict) -> float:
    key = f"{seg.get('source')}:{seg.get('start_frame')}:{seg['file']}".encode()
    return int.from_bytes(hashlib.sha1(key).digest()[:8], "big") / 2.0**64


def split_ranges(store: FrameStore, split: str, val_fraction: float) -> list[tuple[int, int, int]]:
    """``(segment, first, stop)`` frame ranges belonging to ``split`` (see the module docstring)."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be train, val or all, got {split!r}")
    lengths = [len(s) for s in store.segments]
    if split == "all" or val_fraction <= 0:
        return [] if split == "val" else [(i, 0, n) for i, n in enumerate(lengths)]
    if len(lengths) >= MIN_SEGMENTS_FOR_SEGMENT_SPLIT:
        h = [_unit_hash(s) for s in store.manifest["segments"]]
        is_val = [x < val_fraction for x in h]
        if not any(is_val):
            is_val[int(np.argmin(h))] = True
        elif all(is_val):
            is_val[int(np.argmax(h))] = False
        return [(i, 0, n) for i, n in enumerate(lengths) if is_val[i] == (split == "val")]
    ranges = []
    for i, n in enumerate(lengths):
        tail = max(MIN_VAL_TAIL, math.ceil(n * val_fraction))
        cut = n - tail if n >= 2 * tail else n  # too short to give up a tail: all training
        ranges.append((i, cut, n) if split == "val" else (i, 0, cut))
    return ranges


class ClipDataset(Dataset):
    """Windows of ``context + horizon`` frames, ``stride`` apart, from a store (path or opened).

    ``key_change_repeat`` > 1 lists each window whose keys change where G sees them (the last
    ``key_history`` keys before a target and the one before those) that many times (training
    only; ``data.key_change_repeat``, results in docs/results.md).

    ``augment`` (horizontal flips) is refused for a store with actions: a mirrored frame would
    keep its LEFT/RIGHT label and teach the model the opposite of what the key does."""

    def __init__(self, store: str | Path | FrameStore, context: int = 4, horizon: int = 1,
                 stride: int = 1, split: str = "train", val_fraction: float = 0.1,
                 augment: bool = False, key_change_repeat: int = 1, key_history: int = 1):
        if context < 1 or horizon < 1 or stride < 1:
            raise ValueError(f"context, horizon and stride must be >= 1, got {context}, {horizon}, {stride}")
        self.store = store if isinstance(store, FrameStore) else open_store(store)
        if augment and self.store.action_values:
            raise StoreError(f"{self.store.path}: the store has actions, and a horizontal flip would "
                             "swap what left and right keys do; turn augment off")
        self.context, self.horizon, self.augment = context, horizon, augment
        self.num_actions = len(self.store.action_values)
        self.length = context + horizon
        self.split = split
        self.windows: list[tuple[int, int]] = [
            (seg, start)
            for seg, first, stop in split_ranges(self.store, split, val_fraction)
            for start in range(first, stop - self.length + 1, stride)]
        if key_change_repeat > 1 and self.store.actions is not None and self.windows:
            self.windows += [w for w in self.windows if self._keys_change(w, key_history)] * (key_change_repeat - 1)
        if not self.windows:
            longest = max((len(s) for s in self.store.segments), default=0)
            raise StoreError(f"{self.store.path}: no {split} window of {self.length} frames "
                             f"(context {context} + horizon {horizon}) fits; {len(self.store.segments)} "
                             f"segments, longest {longest} frames")

    def __len__(self) -> int:
        return len(self.windows)

    def _keys_change(self, window: tuple[int, int], history: int) -> bool:
        """Whether the keys G sees for this window (the last ``history`` before each target)
        are not all the key pressed before them: a held key shows in the context's motion, so
        only a window where the key changes teaches G what a key does."""
        seg, start = window
        first = start + max(0, self.context - history - 1)
        keys = self.store.actions[seg][first:start + self.context + self.horizon - 1]
        return bool((keys != keys[0]).any())

    def clip(self, index: int) -> np.ndarray:
        """Window ``index`` as stored: uint8 (T, H, W, 3), copied out of the memmap."""
        seg, start = self.windows[index]
        return np.array(self.store.segments[seg][start:start + self.length])

    def __getitem__(self, index: int | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """One window ``(frames (T, C, H, W), actions (T,))``, or a whole batch
        ``((B, T, C, H, W), (B, T))`` for a list of indices (actions: see the module docstring).

        The batch form converts once per batch: one ``to_model`` over (B, T, H, W, 3) instead of
        B small ones is several times faster, and far faster when the CPU is busy (each small
        op pays a thread-pool wake-up). ``make_loader`` uses it."""
        single = isinstance(index, (int, np.integer))
        indices = [index] if single else index
        clips = np.empty((len(indices), self.length, *self.store.size, 3), np.uint8)
        for k, i in enumerate(indices):
            seg, start = self.windows[i]
            clips[k] = self.store.segments[seg][start:start + self.length]
        actions = self.window_actions(indices)
        if self.augment:  # horizontal flips; torch RNG so each DataLoader worker is seeded
            flip = (torch.rand(len(clips)) < 0.5).numpy()
            clips[flip] = clips[flip][:, :, :, ::-1]
        batch = to_model(clips)
        return (batch[0], actions[0]) if single else (batch, actions)

    def window_actions(self, indices: Sequence[int]) -> torch.Tensor:
        """``(B, T)`` int64 actions of the windows ``indices`` as ``__getitem__`` gives them (-1
        where the store has none), without reading their frames."""
        actions = np.full((len(indices), self.length), -1, np.int64)
        if self.store.actions is not None:
            for k, i in enumerate(indices):
                seg, start = self.windows[i]
                actions[k] = np.searchsorted(self.store.action_values,
                                             self.store.actions[seg][start:start + self.length])
        return torch.from_numpy(actions)


def make_loader(dataset: ClipDataset, batch_size: int, *, shuffle: bool = True,
                drop_last: bool = True, num_workers: int = 0, seed: int | None = None,
                pin_memory: bool = False) -> DataLoader:
    """A DataLoader yielding ``(frames (B, T, C, H, W), actions (B, T))`` batches built by
    ``dataset[list_of_indices]``."""
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=None, num_workers=num_workers, pin_memory=pin_memory,
                      sampler=BatchSampler(order, batch_size, drop_last=drop_last),
                      persistent_workers=num_workers > 0)


def pick_windows(n: int, max_windows: int | None) -> list[int]:
    """All window indices, or ``max_windows`` of them evenly spread (deterministic)."""
    if not max_windows or n <= max_windows:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, max_windows).round().astype(int).tolist()))
