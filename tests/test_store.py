import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from framegan.store import StoreError, StoreWriter, open_store


def frames(n, h=8, w=12, offset=0):
    """uint8 (n, h, w, 3) where frame i is filled with (offset + i) % 256: easy to identify."""
    return np.stack([np.full((h, w, 3), (offset + i) % 256, np.uint8) for i in range(n)])


def test_writer_round_trip_and_manifest(make_store, tmp_path):
    a, b = frames(7), frames(5, offset=100)
    path = make_store([a, b])
    store = open_store(path)
    assert len(store) == 12 and store.size == (8, 12) and store.fps == 10.0
    assert [s.shape for s in store.segments] == [(7, 8, 12, 3), (5, 8, 12, 3)]
    assert isinstance(store.segments[0], np.memmap) and not store.segments[0].flags.writeable
    assert np.array_equal(store.segments[0], a) and np.array_equal(store.segments[1], b)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["size"] == [8, 12] and manifest["fps"] == 10.0
    assert manifest["preprocess"] == {"size": [8, 12], "crop": "none"}
    assert manifest["segments"][1] == {"file": "segments/000001.npy", "frames": 5,
                                       "source": "clip1.mp4", "start_frame": 0, "start_time": 0.0}
    assert np.array_equal(np.load(path / "segments/000001.npy"), b)  # plain .npy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # temp dir renamed away


def test_frames_stream_to_disk_as_they_come(tmp_path):
    writer = StoreWriter(tmp_path / "s", size=(64, 64), fps=30)
    for frame in frames(300, 64, 64):
        writer.add(frame, source="v.mp4")
    on_disk = (writer.root / "segments/000000.npy").stat().st_size
    assert on_disk >= 300 * 64 * 64 * 3 - 2**20  # at most the 1 MiB write buffer is in memory
    writer.abort()
    assert not (tmp_path / "s").exists() and list(tmp_path.iterdir()) == []


def test_new_source_starts_a_segment_and_short_segments_are_dropped(tmp_path):
    with StoreWriter(tmp_path / "s", size=(8, 12), fps=10, min_segment=4) as w:
        for i, f in enumerate(frames(6)):
            w.add(f, source="a.mp4", index=i)
        for i, f in enumerate(frames(3)):
            w.add(f, source="b.mp4", index=i)  # a new source cuts; 3 < 4 frames: dropped
        for i, f in enumerate(frames(4)):
            w.add(f, source="c.mp4", index=10 + i, time=1.0 + i / 10)
    assert (w.kept_frames, w.dropped_frames, w.dropped_segments) == (10, 3, 1)
    store = open_store(tmp_path / "s")
    assert [s["source"] for s in store.manifest["segments"]] == ["a.mp4", "c.mp4"]
    assert store.manifest["segments"][1]["start_frame"] == 10
    assert store.manifest["segments"][1]["start_time"] == 1.0
    assert sorted(p.name for p in (tmp_path / "s/segments").iterdir()) == ["000000.npy", "000002.npy"]


def test_append_adds_segments_and_rewrites_manifest(make_store):
    path = make_store([frames(6)])
    with StoreWriter(path, size=(8, 12), fps=10, append=True) as w:
        for f in frames(5, offset=50):
            w.add(f, source="more.mp4")
    store = open_store(path)
    assert len(store.segments) == 2 and len(store) == 11
    assert store.manifest["segments"][1]["file"] == "segments/000001.npy"
    assert np.array_equal(store.segments[1], frames(5, offset=50))


def test_append_refuses_another_size_crop_or_fps(make_store):
    path = make_store([frames(6)])
    with pytest.raises(StoreError, match="8x12, this extraction makes 16x16"):
        StoreWriter(path, size=(16, 16), fps=10, append=True)
    with pytest.raises(StoreError, match="cropped with 'none'"):
        StoreWriter(path, size=(8, 12), fps=10, append=True, preprocess={"size": [8, 12], "crop": "center"})
    with pytest.raises(StoreError, match="at 10 fps.*--fps 10"):
        StoreWriter(path, size=(8, 12), fps=25, append=True)


def test_failures_leave_the_target_as_it_was(make_store, tmp_path):
    with pytest.raises(RuntimeError), StoreWriter(tmp_path / "new", size=(8, 12), fps=10) as w:
        w.add(frames(1)[0], source="a.mp4")
        raise RuntimeError("decoder died")
    assert not (tmp_path / "new").exists()
    path = make_store([frames(6)])
    before = (path / "manifest.json").read_text()
    with pytest.raises(RuntimeError), StoreWriter(path, size=(8, 12), fps=10, append=True) as w:
        for f in frames(6):
            w.add(f, source="b.mp4")
        w.cut()
        raise RuntimeError("decoder died")
    assert (path / "manifest.json").read_text() == before
    assert sorted(p.name for p in (path / "segments").iterdir()) == ["000000.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]


def test_nothing_to_store_is_an_error_and_writes_nothing(tmp_path):
    with (pytest.raises(StoreError, match="no segment of at least 5 frames"),
          StoreWriter(tmp_path / "s", size=(8, 12), fps=10, min_segment=5) as w):
        for f in frames(3):
            w.add(f, source="a.mp4")
    assert list(tmp_path.iterdir()) == []


def test_target_checks_and_overwrite(make_store, tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs/readme.txt").write_text("mine")
    with pytest.raises(StoreError, match="exists and is not a directory"):
        StoreWriter(tmp_path / "file", size=(8, 12), fps=10)
    with pytest.raises(StoreError, match="exists and is not a frame store"):
        StoreWriter(tmp_path / "docs", size=(8, 12), fps=10)
    with pytest.raises(StoreError, match="cannot write here"):
        StoreWriter(tmp_path / "file/store", size=(8, 12), fps=10)
    path = make_store([frames(6)])
    with pytest.raises(StoreError, match="already a frame store"):
        StoreWriter(path, size=(8, 12), fps=10)
    with StoreWriter(path, size=(4, 4), fps=5, overwrite=True) as w:
        for f in frames(5, 4, 4):
            w.add(f, source="new.mp4")
    assert open_store(path).size == (4, 4) and len(open_store(path)) == 5
    (tmp_path / "empty").mkdir()
    with StoreWriter(tmp_path / "empty", size=(4, 4), fps=5) as w:
        w.add(frames(1, 4, 4)[0], source="x.mp4")
    assert len(open_store(tmp_path / "empty")) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs", "empty", "file", "store"]


def breaker(path: Path):
    """``broken(change, pattern)``: write the store's manifest with ``change`` applied, expect a
    one-line StoreError matching ``pattern`` from open_store, then restore the good manifest."""
    manifest_file = path / "manifest.json"
    good = json.loads(manifest_file.read_text())

    def broken(change, pattern):
        manifest = json.loads(json.dumps(good))
        change(manifest)
        manifest_file.write_text(json.dumps(manifest))
        with pytest.raises(StoreError, match=pattern) as e:
            open_store(path)
        assert "\n" not in str(e.value)
        manifest_file.write_text(json.dumps(good))
    return broken


def test_open_store_validation(make_store, tmp_path):
    with pytest.raises(StoreError, match="no such frame store"):
        open_store(tmp_path / "nope")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a frame store \\(no manifest.json\\)"):
        open_store(tmp_path / "plain")
    path = make_store([frames(6), frames(4)])
    broken = breaker(path)
    broken(lambda m: m.update(version=2), "store version 2 is not supported")
    broken(lambda m: m.update(size=[8]), "'size' must be")
    broken(lambda m: m["segments"][1].update(file="segments/000009.npy"), "segments/000009.npy is missing")
    broken(lambda m: m["segments"][0].update(frames=7), "manifest says uint8 \\(7, 8, 12, 3\\)")
    broken(lambda m: m.update(size=[8, 13]), "manifest says uint8 \\(6, 8, 13, 3\\)")
    good = (path / "manifest.json").read_text()
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="unreadable"):
        open_store(path)
    (path / "manifest.json").write_text(good)
    np.save(path / "segments/000001.npy", np.zeros((4, 8, 12, 3), np.float32))
    with pytest.raises(StoreError, match="holds float32"):
        open_store(path)


def test_store_pickles_by_path(make_store):
    store = open_store(make_store([frames(200, 32, 32)]))
    blob = pickle.dumps(store)
    assert len(blob) < 1000  # DataLoader workers reopen the memmaps instead of copying frames
    again = pickle.loads(blob)
    assert np.array_equal(again.segments[0], store.segments[0])


# ----------------------------------------------------------------------------- actions
def action_store(tmp_path, segments, name="s", names=None, min_segment=1):
    """A store with actions: ``segments`` = [(frames, raw ids), ...]."""
    with StoreWriter(tmp_path / name, size=(8, 12), fps=10, actions=True, min_segment=min_segment) as w:
        w.name_actions(names or {})
        for k, (images, ids) in enumerate(segments):
            for i, (f, a) in enumerate(zip(images, ids)):
                w.add(f, source=f"clip{k}.mp4", index=i, action=a)
            w.cut()
    return tmp_path / name


def test_actions_round_trip_per_segment(tmp_path):
    path = action_store(tmp_path, [(frames(4), [3, 3, 0, 7]), (frames(2), [12, 13]), (frames(3), [0, 3, 3])],
                        names={3: "RIGHT", 0: "NOOP", 12: "GONE"}, min_segment=3)
    store = open_store(path)
    assert store.action_values == [0, 3, 7] and store.action_names == ["NOOP", "RIGHT", "7"]  # 12, 13 dropped
    assert [a.tolist() for a in store.actions] == [[3, 3, 0, 7], [0, 3, 3]]
    assert store.actions[0].dtype == np.int64 and isinstance(store.actions[0], np.memmap)
    assert [s["actions"] for s in store.manifest["segments"]] == ["segments/000000.actions.npy",
                                                                 "segments/000002.actions.npy"]
    assert sorted(p.name for p in (path / "segments").iterdir()) == [
        "000000.actions.npy", "000000.npy", "000002.actions.npy", "000002.npy"]
    assert np.load(path / "segments/000002.actions.npy").tolist() == [0, 3, 3]  # plain .npy
    assert "3 actions" in store.summary()
    assert pickle.loads(pickle.dumps(store)).actions[1].tolist() == [0, 3, 3]


def test_store_without_actions_has_empty_action_fields(make_store):
    store = open_store(make_store([frames(3)]))
    assert (store.actions, store.action_values, store.action_names) == (None, [], [])
    assert "actions" not in store.manifest and "actions" not in store.manifest["segments"][0]


def test_append_merges_actions_and_refuses_mixing(make_store, tmp_path):
    path = action_store(tmp_path, [(frames(3), [1, 2, 1])], names={1: "FIRE"})
    with StoreWriter(path, size=(8, 12), fps=10, append=True, actions=True) as w:
        w.name_actions({2: "UP", 5: "DOWN"})
        for f, a in zip(frames(2), [5, 5]):
            w.add(f, source="more.mp4", action=a)
    store = open_store(path)
    assert (store.action_values, store.action_names) == ([1, 2, 5], ["FIRE", "UP", "DOWN"])
    assert [a.tolist() for a in store.actions] == [[1, 2, 1], [5, 5]]
    with pytest.raises(StoreError, match="the store has actions and this extraction has none"):
        StoreWriter(path, size=(8, 12), fps=10, append=True)
    with pytest.raises(StoreError, match="the store has no actions and this extraction has some"):
        StoreWriter(make_store([frames(3)]), size=(8, 12), fps=10, append=True, actions=True)
    w = StoreWriter(path, size=(8, 12), fps=10, append=True, actions=True)
    with pytest.raises(StoreError, match="action 1 is named 'FIRE' in the store and 'SHOOT' here"):
        w.name_actions({1: "SHOOT"})
    with pytest.raises(StoreError, match="a frame without an action, but this store has actions"):
        w.add(frames(1)[0], source="x.mp4")
    w.abort()
    w = StoreWriter(tmp_path / "plain", size=(8, 12), fps=10)
    with pytest.raises(StoreError, match="a frame with an action, but this store has no actions"):
        w.add(frames(1)[0], source="x.mp4", action=3)
    w.abort()


def test_failed_append_with_actions_leaves_the_store_as_it_was(tmp_path):
    path = action_store(tmp_path, [(frames(3), [1, 2, 1])])
    before = (path / "manifest.json").read_text()
    with pytest.raises(RuntimeError), StoreWriter(path, size=(8, 12), fps=10, append=True, actions=True) as w:
        for f in frames(3):
            w.add(f, source="b.mp4", action=4)
        w.cut()
        w.add(frames(1)[0], source="b.mp4", action=4)
        raise RuntimeError("decoder died")
    assert (path / "manifest.json").read_text() == before
    assert sorted(p.name for p in (path / "segments").iterdir()) == ["000000.actions.npy", "000000.npy"]


def test_open_store_validates_actions(tmp_path):
    path = action_store(tmp_path, [(frames(4), [3, 3, 0, 7]), (frames(2), [0, 0])])
    broken = breaker(path)
    broken(lambda m: m["actions"].update(values=[0, 7, 3]), "'actions.values' must be a non-empty increasing")
    broken(lambda m: m["actions"].update(values=[]), "'actions.values' must be a non-empty increasing")
    broken(lambda m: m["actions"].update(values=[0, True, 7]), "'actions.values' must be")
    broken(lambda m: m["actions"].update(names=["a", "b"]), "'actions.names' must be 3 strings")
    broken(lambda m: m["actions"].update(values=[0, 3], names=["0", "3"]),
           "action 7 is not in the manifest's actions.values")
    broken(lambda m: m["segments"][1].pop("actions"), "every segment needs an 'actions' file")
    broken(lambda m: m["segments"][1].update(actions="segments/000009.actions.npy"),
           "actions file segments/000009.actions.npy is missing")
    broken(lambda m: m.pop("actions"), "segments have actions files but the manifest lists no 'actions'")
    for bad_array, pattern in ((np.zeros(2, np.int32), "holds int32 \\(2,\\), manifest says int64 \\(2,\\)"),
                               (np.zeros(3, np.int64), "holds int64 \\(3,\\)")):
        np.save(path / "segments/000001.actions.npy", bad_array)
        with pytest.raises(StoreError, match=pattern):
            open_store(path)
    (path / "segments/000001.actions.npy").write_text("junk")
    with pytest.raises(StoreError, match="not a readable .npy actions file"):
        open_store(path)
