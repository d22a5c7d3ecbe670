"""The frame store: the output of extraction and the input of training (see DESIGN.md).

    store/
      manifest.json         {"version": 1, "size": [H, W], "fps": f, "preprocess": {...},
                             "segments": [{"file": "segments/000000.npy", "frames": N,
                                           "source": "game.mp4", "start_frame": k,
                                           "start_time": s,
                                           "actions": "segments/000000.actions.npy"}, ...],
                             "actions": {"values": [0, 3, 4], "names": ["NOOP", "RIGHT", "LEFT"]}}
      segments/000000.npy   uint8 [N, H, W, 3], plain .npy, opened with np.load(mmap_mode="r")
      segments/000000.actions.npy   int64 [N], optional: raw action id pressed after each frame

A segment is a run of frames with no scene cut or decode gap: training windows never cross one.
On disk frames are uint8 ``(T, H, W, 3)`` RGB; the model's ``(B, T, C, H, W)`` floats in [-1, 1]
are made by ``framegan.frames.to_model`` (in ``framegan.data``). ``preprocess`` holds the
``Preprocess.to_dict()`` settings, so a rollout can resize a video exactly like the store.

Actions (see ``framegan.actions``) are all-or-nothing per store: every segment has an actions
file, or none does. The manifest's ``actions.values`` are the sorted distinct raw ids of the
whole store and ``names`` their names (``str(id)`` where none is known).

Writing streams: each frame (and its action) is appended to the open segment files as it comes
and the ``.npy`` headers get their frame count when the segment closes, so memory stays flat in video length. A new
store is built in a temp directory renamed into place at the end; an append writes its segment
files under temp names, renames them and then replaces the manifest atomically. Any failure
removes what was written. A writer killed outright (``kill -9``, a power cut) cannot clean up:
its temp names carry its process id, and the next writer of the same store removes what a dead
process left (``_sweep``).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

VERSION = 1
MANIFEST = "manifest.json"


class StoreError(ValueError):
    """A frame store that cannot be read or written; the message is one line naming the path."""


class FrameStore:
    """An opened store: ``segments`` are read-only memmaps uint8 ``[N, H, W, 3]``; ``actions``
    (None without) read-only memmaps int64 ``[N]`` of raw ids, one per frame of each segment;
    ``action_values`` the sorted distinct ids, ``action_names`` their names (empty without)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self.size: tuple[int, int] = tuple(self.manifest["size"])
        self.fps: float = float(self.manifest["fps"])
        self.preprocess: dict = self.manifest.get("preprocess") or {"size": list(self.size), "crop": "none"}
        self.segments: list[np.memmap] = [_open_segment(self.path, seg, self.size)
                                          for seg in self.manifest["segments"]]
        self.action_values, self.action_names = _read_action_set(self.path, self.manifest)
        self.actions: list[np.memmap] | None = None
        if self.action_values:
            self.actions = [_open_actions(self.path, seg, self.action_values)
                            for seg in self.manifest["segments"]]
        elif any("actions" in seg for seg in self.manifest["segments"]):
            raise StoreError(f"{self.path / MANIFEST}: segments have actions files but the manifest "
                             "lists no 'actions'")

    def __len__(self) -> int:
        return sum(len(s) for s in self.segments)

    # Pickle by path, so DataLoader workers reopen the memmaps instead of copying the frames.
    def __getstate__(self) -> dict:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def summary(self) -> str:
        sources = sorted({s["source"] for s in self.manifest["segments"]})
        h, w = self.size
        actions = f", {len(self.action_values)} actions" if self.action_values else ""
        return (f"{self.path}: {len(self)} frames in {len(self.segments)} segments, {h}x{w} RGB "
                f"at {self.fps:g} fps, {len(self) * h * w * 3 / 1e6:.1f} MB{actions}, "
                f"from {', '.join(sources) or 'nothing'}")


def open_store(path: str | Path) -> FrameStore:
    """Open and validate a store; every problem raises a one-line ``StoreError``."""
    return FrameStore(path)


def is_store(path: str | Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


def _read_manifest(path: Path) -> dict:
    if not path.exists():
        raise StoreError(f"{path}: no such frame store")
    if not path.is_dir():
        raise StoreError(f"{path}: not a frame store (a file, expected a directory)")
    if not is_store(path):
        raise StoreError(f"{path}: not a frame store (no {MANIFEST})")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StoreError(f"{path / MANIFEST}: unreadable ({type(e).__name__}: {str(e)[:100]})") from None
    if not isinstance(manifest, dict):
        raise StoreError(f"{path / MANIFEST}: expected a JSON object")
    if manifest.get("version") != VERSION:
        raise StoreError(f"{path}: store version {manifest.get('version')!r} is not supported "
                         f"(this framegan reads version {VERSION})")
    size, fps, segments = manifest.get("size"), manifest.get("fps"), manifest.get("segments")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise StoreError(f"{path / MANIFEST}: 'size' must be [H, W] with positive integers, got {size!r}")
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise StoreError(f"{path / MANIFEST}: 'fps' must be a positive number, got {fps!r}")
    if not isinstance(segments, list) or not all(
            isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("frames"), int)
            for s in segments):
        raise StoreError(f"{path / MANIFEST}: 'segments' must be a list of {{file, frames, ...}}")
    return manifest


def _map_npy(root: Path, rel: str, what: str, missing: str) -> tuple[Path, np.memmap]:
    """Memory-map one of the store's .npy files; a missing or unreadable one is a StoreError."""
    file = root / rel
    if not file.is_file():
        raise StoreError(f"{root}: {what} {rel} {missing}")
    try:
        return file, np.load(file, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise StoreError(f"{file}: not a readable .npy {what} ({str(e)[:100]})") from None


def _open_segment(root: Path, seg: dict, size: tuple[int, int]) -> np.memmap:
    file, array = _map_npy(root, seg["file"], "segment", "is missing")
    expected = (seg["frames"], *size, 3)
    if array.dtype != np.uint8 or array.shape != expected or seg["frames"] < 1:
        raise StoreError(f"{file}: holds {array.dtype} {tuple(array.shape)}, "
                         f"manifest says uint8 {expected}")
    return array


def _read_action_set(path: Path, manifest: dict) -> tuple[list[int], list[str]]:
    actions = manifest.get("actions")
    if actions is None:
        return [], []
    values = actions.get("values") if isinstance(actions, dict) else None
    names = actions.get("names") if isinstance(actions, dict) else None
    if not (isinstance(values, list) and values
            and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            and all(a < b for a, b in zip(values, values[1:]))):
        raise StoreError(f"{path / MANIFEST}: 'actions.values' must be a non-empty increasing list "
                         f"of integers, got {values!r}"[:300])
    if not (isinstance(names, list) and len(names) == len(values)
            and all(isinstance(n, str) for n in names)):
        raise StoreError(f"{path / MANIFEST}: 'actions.names' must be {len(values)} strings, one per "
                         f"value, got {names!r}"[:300])
    if not all(isinstance(s.get("actions"), str) for s in manifest["segments"]):
        raise StoreError(f"{path / MANIFEST}: the store has actions, so every segment needs an "
                         "'actions' file")
    return values, names


def _open_actions(root: Path, seg: dict, values: list[int]) -> np.memmap:
    file, array = _map_npy(root, seg["actions"], "actions file", "is missing")
    if array.dtype != np.int64 or array.shape != (seg["frames"],):
        raise StoreError(f"{file}: holds {array.dtype} {tuple(array.shape)}, "
                         f"manifest says int64 ({seg['frames']},)")
    # 8 bytes a frame against 12 KB of a 64x64 frame: checking every id costs little, and an id
    # outside ``values`` would otherwise map to a wrong action index in ClipDataset.
    outside = np.setdiff1d(np.unique(array), values)
    if outside.size:
        raise StoreError(f"{file}: action {outside[0]} is not in the manifest's actions.values")
    return array


class _NpyStream:
    """One ``.npy`` written an item at a time. Its header has a fixed length, so the item count
    can be filled in at close without moving the data (any .npy reader accepts the padding)."""

    HEADER = 128  # bytes: magic + version + length + dict literal padded with spaces

    def __init__(self, path: Path, dtype: np.dtype, item_shape: tuple[int, ...]):
        self.path, self.dtype, self.item_shape, self.frames = path, np.dtype(dtype), item_shape, 0
        # Stays open across add() calls; a 1 MiB buffer means one write call per ~80 small frames.
        self.file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
        self.file.write(self._header())

    def _header(self) -> bytes:
        shape = (self.frames, *self.item_shape)
        literal = (f"{{'descr': '{self.dtype.str}', 'fortran_order': False, "
                   f"'shape': {shape!r}, }}")
        literal = literal.ljust(self.HEADER - 10 - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(literal)) + literal.encode("latin1")

    def write(self, item) -> None:
        self.file.write(np.ascontiguousarray(item, dtype=self.dtype).data)
        self.frames += 1

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(self._header())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _sweep(path: Path) -> None:
    """Remove what writers of store ``path`` that died mid-write left: their temp stores and
    swapped-out old stores beside it, and appended segment files inside it. Only names that
    carry a process id that no longer runs (a live writer's files stay)."""
    name = re.escape(path.name)
    beside = re.compile(rf"\.{name}\.(?:(\d+)\.[a-z0-9_]+\.tmp|old-(\d+))$")
    inside = re.compile(r"\.(\d+)\.\d{6}(?:\.actions)?\.npy$")
    found = []
    if path.parent.is_dir():
        found += [(p, beside.match(p.name)) for p in path.parent.iterdir() if p.name.startswith(".")]
    if (path / "segments").is_dir():
        found += [(p, inside.match(p.name)) for p in (path / "segments").iterdir() if p.name.startswith(".")]
    for p, m in found:
        if m is None or _alive(int(m.group(1) or m.group(2))):
            continue
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


class StoreWriter:
    """Stream frames into a new store (or append to one). Use as a context manager: leaving the
    block normally commits, an exception aborts and removes everything this writer wrote.

    ``actions=True``: every ``add`` carries the raw action id pressed after that frame, stored per
    segment beside the frames; ``name_actions`` records names for ids. A store has actions in all
    segments or in none, so appending with the other setting is a ``StoreError``."""

    def __init__(self, path: str | Path, *, size: tuple[int, int], fps: float,
                 preprocess: dict | None = None, append: bool = False, overwrite: bool = False,
                 min_segment: int = 1, actions: bool = False):
        self.path = Path(path)
        self.size, self.fps, self.min_segment = tuple(size), float(fps), min_segment
        self.preprocess = preprocess or {"size": list(self.size), "crop": "none"}
        self.has_actions = actions
        self.kept_frames = self.dropped_frames = self.dropped_segments = 0
        self.appending = append and is_store(self.path)  # --append to nothing makes a new store
        self._created: list[Path] = []  # segment files this writer made (append mode)
        self._segment: _NpyStream | None = None
        self._actions: _NpyStream | None = None
        self._meta: dict = {}
        self._values: set[int] = set()           # action ids of the kept segments
        self._segment_values: set[int] = set()   # ... and of the open one
        self._names: dict[int, str] = {}         # known names only (never the str(id) fallback)
        self._done = False
        _sweep(self.path)
        if self.appending:
            store = open_store(self.path)
            self._check_compatible(store)
            self.root, self.entries = self.path, list(store.manifest["segments"])
            self._values = set(store.action_values)
            self._names = {v: n for v, n in zip(store.action_values, store.action_names) if n != str(v)}
            existing = [int(p.name.split(".")[0]) for p in (self.path / "segments").glob("*.npy")
                        if p.name.split(".")[0].isdigit()]
            self._next = max(existing, default=-1) + 1
        else:
            self._check_target(overwrite)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.root = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.{os.getpid()}.",
                                                  suffix=".tmp", dir=self.path.parent))
            except OSError as e:
                raise StoreError(f"{self.path}: cannot write here ({e.strerror or e})") from None
            self.entries, self._next = [], 0
        (self.root / "segments").mkdir(exist_ok=True)

    def _check_target(self, overwrite: bool) -> None:
        p = self.path
        if not p.exists():
            return
        if not p.is_dir():
            raise StoreError(f"{p}: exists and is not a directory")
        if is_store(p):
            if not overwrite:
                raise StoreError(f"{p}: already a frame store (use --append to add to it, "
                                 "or --overwrite to replace it)")
        elif any(p.iterdir()):
            raise StoreError(f"{p}: exists and is not a frame store (refusing to write into it)")

    def _check_compatible(self, store: FrameStore) -> None:
        p = self.path
        if store.size != self.size:
            raise StoreError(f"{p}: store frames are {store.size[0]}x{store.size[1]}, "
                             f"this extraction makes {self.size[0]}x{self.size[1]}")
        if store.preprocess.get("crop", "none") != self.preprocess.get("crop", "none"):
            raise StoreError(f"{p}: store was cropped with {store.preprocess.get('crop')!r}, "
                             f"this extraction crops with {self.preprocess.get('crop')!r}")
        if abs(store.fps - self.fps) > 1e-3 * store.fps:
            raise StoreError(f"{p}: store is at {store.fps:g} fps, this video at {self.fps:g} fps "
                             f"(resample with --fps {store.fps:g})")
        if bool(store.action_values) != self.has_actions:
            have, new = ("has", "has none") if store.action_values else ("has no", "has some")
            raise StoreError(f"{p}: the store {have} actions and this extraction {new} "
                             "(a store has actions in every segment or in none)")

    def name_actions(self, names: dict[int, str]) -> None:
        """Record names of action ids (e.g. ALE's); the same id named twice differently is an error."""
        for v, n in names.items():
            v = int(v)
            if n == str(v):
                continue
            if self._names.get(v, n) != n:
                raise StoreError(f"{self.path}: action {v} is named {self._names[v]!r} in the store "
                                 f"and {n!r} here")
            self._names[v] = n

    def add(self, image: np.ndarray, *, source: str, index: int = 0, time: float = 0.0,
            action: int | None = None) -> None:
        """Append one uint8 (H, W, 3) frame and, with actions, the raw id pressed after it; a new
        ``source`` starts a new segment."""
        if image.shape != (*self.size, 3):
            raise StoreError(f"{self.path}: frame of shape {image.shape}, store wants {(*self.size, 3)}")
        if (action is not None) != self.has_actions:
            raise StoreError(f"{self.path}: a frame {'without' if action is None else 'with'} an action, "
                             f"but this store has {'' if self.has_actions else 'no '}actions")
        if self._segment is not None and self._meta["source"] != source:
            self.cut()
        if self._segment is None:
            name = f"segments/{self._next:06d}.npy"
            self._next += 1
            self._segment = _NpyStream(self._writing(name), np.uint8, (*self.size, 3))
            self._created.append(self._segment.path)
            self._meta = {"file": name, "frames": 0, "source": source,
                          "start_frame": int(index), "start_time": round(float(time), 6)}
            if self.has_actions:
                name = f"segments/{self._next - 1:06d}.actions.npy"
                self._actions = _NpyStream(self._writing(name), np.int64, ())
                self._created.append(self._actions.path)
                self._meta["actions"] = name
        self._segment.write(image)
        if self._actions is not None:
            self._actions.write(int(action))
            self._segment_values.add(int(action))

    def _writing(self, name: str) -> Path:
        """Where segment file ``name`` is written: in place in a new store's temp directory; in a
        store being appended to, under a temp name with this process's id (``_sweep``), renamed
        to ``name`` at commit."""
        path = self.root / name
        return path.with_name(f".{os.getpid()}.{path.name}") if self.appending else path

    def cut(self) -> None:
        """Close the open segment (if any); one shorter than ``min_segment`` is deleted."""
        if self._segment is None:
            return
        seg, actions, self._segment, self._actions = self._segment, self._actions, None, None
        values, self._segment_values = self._segment_values, set()
        for stream in (seg, actions):
            if stream is not None:
                stream.close()
        if seg.frames < self.min_segment:
            for stream in (seg, actions):
                if stream is not None:
                    stream.path.unlink()
                    self._created.remove(stream.path)
            self.dropped_frames += seg.frames
            self.dropped_segments += 1
        else:
            self.entries.append({**self._meta, "frames": seg.frames})
            self.kept_frames += seg.frames
            self._values |= values

    @property
    def segments(self) -> int:
        return len(self.entries)

    @property
    def action_values(self) -> list[int]:
        """Sorted distinct action ids of the kept segments so far (the store's, when appending)."""
        return sorted(self._values)

    def commit(self) -> dict:
        """Close the last segment, write the manifest atomically, move a new store into place."""
        self.cut()
        if not self._created:
            raise StoreError(f"{self.path}: no segment of at least {self.min_segment} frames to "
                             "store; nothing written")
        manifest = {"version": VERSION, "size": list(self.size), "fps": self.fps,
                    "preprocess": self.preprocess, "segments": self.entries}
        if self.has_actions:
            values = self.action_values
            manifest["actions"] = {"values": values, "names": [self._names.get(v, str(v)) for v in values]}
        if self.appending:  # the new segment files take their names; the manifest lists them
            final = [p.with_name(p.name.split(".", 2)[2]) for p in self._created]
            for tmp, name in zip(self._created, final):
                os.replace(tmp, name)
            self._created = final
        fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=self.root)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / MANIFEST)
        if not self.appending:
            old = None
            if is_store(self.path):  # --overwrite: swap the new store in, then delete the old one
                old = self.path.with_name(f".{self.path.name}.old-{os.getpid()}")
                os.replace(self.path, old)
            os.replace(self.root, self.path)  # an empty directory is replaced too
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        self._done = True
        return manifest

    def abort(self) -> None:
        """Remove everything this writer wrote; the target is left as it was."""
        if self._done:
            return
        for stream in (self._segment, self._actions):
            if stream is not None:
                stream.file.close()
        self._segment = self._actions = None
        if self.appending:
            for f in self._created:
                f.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        self._done = True

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
