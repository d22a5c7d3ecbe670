"""The frame store: the output of extraction and the input of training (see DESIGN.md).

    store/
      manifest.json         {"version": 1, "size": [H, W], "fps": f, "preprocess": {...},
                             "segments": [{"file": "segments/000000.npy", "frames": N,
                                           "source": "game.mp4", "start_frame": k,
                                           "start_time": s}, ...]}
      segments/000000.npy   uint8 [N, H, W, 3], plain .npy, opened with np.load(mmap_mode="r")

A segment is a run of frames with no scene cut or decode gap: training windows never cross one.
On disk frames are uint8 ``(T, H, W, 3)`` RGB; the model's ``(B, T, C, H, W)`` floats in [-1, 1]
are made by ``framegan.frames.to_model`` (in ``framegan.data``). ``preprocess`` holds the
``Preprocess.to_dict()`` settings, so a rollout can resize a video exactly like the store.

Writing streams: each frame is appended to the open segment file as it comes and the ``.npy``
header gets its frame count when the segment closes, so memory stays flat in video length. A new
store is built in a temp directory renamed into place at the end; an append adds segment files and
then replaces the manifest atomically. Any failure removes what was written.
"""
from __future__ import annotations

import json
import os
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
    """An opened store: ``segments`` are read-only memmaps uint8 ``[N, H, W, 3]``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        self.size: tuple[int, int] = tuple(self.manifest["size"])
        self.fps: float = float(self.manifest["fps"])
        self.preprocess: dict = self.manifest.get("preprocess") or {"size": list(self.size), "crop": "none"}
        self.segments: list[np.memmap] = [_open_segment(self.path, seg, self.size)
                                          for seg in self.manifest["segments"]]

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
        return (f"{self.path}: {len(self)} frames in {len(self.segments)} segments, {h}x{w} RGB "
                f"at {self.fps:g} fps, {len(self) * h * w * 3 / 1e6:.1f} MB, "
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


def _open_segment(root: Path, seg: dict, size: tuple[int, int]) -> np.memmap:
    file = root / seg["file"]
    if not file.is_file():
        raise StoreError(f"{root}: segment {seg['file']} is missing")
    try:
        array = np.load(file, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise StoreError(f"{file}: not a readable .npy segment ({str(e)[:100]})") from None
    expected = (seg["frames"], *size, 3)
    if array.dtype != np.uint8 or array.shape != expected or seg["frames"] < 1:
        raise StoreError(f"{file}: holds {array.dtype} {tuple(array.shape)}, "
                         f"manifest says uint8 {expected}")
    return array


class _SegmentFile:
    """One ``.npy`` written a frame at a time. Its header has a fixed length, so the frame count
    can be filled in at close without moving the data (any .npy reader accepts the padding)."""

    HEADER = 128  # bytes: magic + version + length + dict literal padded with spaces

    def __init__(self, path: Path, size: tuple[int, int]):
        self.path, self.size, self.frames = path, size, 0
        # Stays open across add() calls; a 1 MiB buffer means one write call per ~80 small frames.
        self.file = open(path, "wb", buffering=1 << 20)  # noqa: SIM115
        self.file.write(self._header())

    def _header(self) -> bytes:
        literal = (f"{{'descr': '|u1', 'fortran_order': False, "
                   f"'shape': ({self.frames}, {self.size[0]}, {self.size[1]}, 3), }}")
        literal = literal.ljust(self.HEADER - 10 - 1) + "\n"
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(literal)) + literal.encode("latin1")

    def write(self, image: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(image, dtype=np.uint8).data)
        self.frames += 1

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(self._header())
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


class StoreWriter:
    """Stream frames into a new store (or append to one). Use as a context manager: leaving the
    block normally commits, an exception aborts and removes everything this writer wrote."""

    def __init__(self, path: str | Path, *, size: tuple[int, int], fps: float,
                 preprocess: dict | None = None, append: bool = False, overwrite: bool = False,
                 min_segment: int = 1):
        self.path = Path(path)
        self.size, self.fps, self.min_segment = tuple(size), float(fps), min_segment
        self.preprocess = preprocess or {"size": list(self.size), "crop": "none"}
        self.kept_frames = self.dropped_frames = self.dropped_segments = 0
        self.appending = append and is_store(self.path)  # --append to nothing makes a new store
        self._created: list[Path] = []  # segment files this writer made (append mode)
        self._segment: _SegmentFile | None = None
        self._meta: dict = {}
        self._done = False
        if self.appending:
            store = open_store(self.path)
            self._check_compatible(store)
            self.root, self.entries = self.path, list(store.manifest["segments"])
            existing = [int(p.stem) for p in (self.path / "segments").glob("*.npy") if p.stem.isdigit()]
            self._next = max(existing, default=-1) + 1
        else:
            self._check_target(overwrite)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.root = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                                  dir=self.path.parent))
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

    def add(self, image: np.ndarray, *, source: str, index: int = 0, time: float = 0.0) -> None:
        """Append one uint8 (H, W, 3) frame; a new ``source`` starts a new segment."""
        if image.shape != (*self.size, 3):
            raise StoreError(f"{self.path}: frame of shape {image.shape}, store wants {(*self.size, 3)}")
        if self._segment is not None and self._meta["source"] != source:
            self.cut()
        if self._segment is None:
            name = f"segments/{self._next:06d}.npy"
            self._next += 1
            self._segment = _SegmentFile(self.root / name, self.size)
            self._created.append(self.root / name)
            self._meta = {"file": name, "frames": 0, "source": source,
                          "start_frame": int(index), "start_time": round(float(time), 6)}
        self._segment.write(image)

    def cut(self) -> None:
        """Close the open segment (if any); one shorter than ``min_segment`` is deleted."""
        if self._segment is None:
            return
        seg, self._segment = self._segment, None
        seg.close()
        if seg.frames < self.min_segment:
            seg.path.unlink()
            self._created.remove(seg.path)
            self.dropped_frames += seg.frames
            self.dropped_segments += 1
        else:
            self.entries.append({**self._meta, "frames": seg.frames})
            self.kept_frames += seg.frames

    @property
    def segments(self) -> int:
        return len(self.entries)

    def commit(self) -> dict:
        """Close the last segment, write the manifest atomically, move a new store into place."""
        self.cut()
        if not self._created:
            raise StoreError(f"{self.path}: no segment of at least {self.min_segment} frames to "
                             "store; nothing written")
        manifest = {"version": VERSION, "size": list(self.size), "fps": self.fps,
                    "preprocess": self.preprocess, "segments": self.entries}
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
        if self._segment is not None:
            self._segment.file.close()
            self._segment = None
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
