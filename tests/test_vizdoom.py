"""ViZDoom recording (framegan.vizdoom): headless first-person gameplay -> mp4 + sidecars -> store."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import assert_bad_input

from framegan.extract import extract
from framegan.store import open_store
from framegan.video import iter_frames, probe
from framegan.vizdoom import ACTIONS, main, record

# ``basic`` ends every episode within 300 tics (its cfg's timeout): 150 recorded frames at the
# default frameskip 2, so a few hundred frames always cross episode starts.
BASIC_TIMEOUT_FRAMES = 300 // 2


def test_record_writes_video_and_consistent_sidecars(tmp_path, monkeypatch, capsys):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # the engine's _vizdoom.ini / _vizdoom/ must not land here
    out = tmp_path / "doom.mp4"
    assert main(["--scenario", "basic", "--frames", "320", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "320 frames of basic (160x120 at 17.5 fps" in printed

    frames = np.stack([f.image for f in iter_frames(out)])
    assert frames.shape == (320, 120, 160, 3)
    assert probe(out).fps == pytest.approx(35 / 2)
    assert len({f.tobytes() for f in frames[:20]}) > 10  # the view changes, not one screen

    actions = np.load(tmp_path / "doom.actions.npy")
    assert actions.dtype == np.int64 and actions.shape == (320,)
    assert set(actions.tolist()) <= set(range(len(ACTIONS))) and len(set(actions.tolist())) >= 4
    names = json.loads((tmp_path / "doom.action_names.json").read_text())
    assert names == {str(i): name for i, (name, _) in enumerate(ACTIONS)}
    assert names["0"] == "NOOP" and "TURN_LEFT" in names.values() and "ATTACK" in names.values()

    cuts = np.load(tmp_path / "doom.cuts.npy")
    assert cuts.dtype == np.int64 and np.all(np.diff(cuts) > 0)
    assert cuts[0] > 0 and cuts[-1] < 320
    # every episode (also the first and the last, unfinished one) fits in the scenario's timeout
    lengths = np.diff([0, *cuts.tolist(), 320])
    assert len(cuts) >= 320 // BASIC_TIMEOUT_FRAMES and lengths.max() <= BASIC_TIMEOUT_FRAMES
    assert f"{len(cuts) + 1} episodes" in printed

    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cwd", "doom.action_names.json", "doom.actions.npy", "doom.cuts.npy", "doom.mp4"]  # no temps
    assert list(cwd.iterdir()) == []

    s = extract([out], tmp_path / "store", size=64, progress=False)
    assert s["frames_in"] == 320 and s["frames_out"] > 0
    assert open_store(tmp_path / "store").segments[0].shape[1:] == (64, 64, 3)


def test_same_seed_same_recording(tmp_path):
    kw = dict(scenario="deathmatch", frames=60, seed=5, resolution="160x120", progress=False)
    a = record(tmp_path / "a.mp4", **kw)
    record(tmp_path / "b.mp4", **kw)
    assert a["size"] == [120, 160] and a["scenario"] == "deathmatch"
    np.testing.assert_array_equal(np.load(tmp_path / "a.actions.npy"), np.load(tmp_path / "b.actions.npy"))
    record(tmp_path / "c.mp4", **{**kw, "seed": 6})
    assert not np.array_equal(np.load(tmp_path / "a.actions.npy"), np.load(tmp_path / "c.actions.npy"))

    def frames(name):
        return np.stack([f.image for f in iter_frames(tmp_path / name)]).astype(np.int16)

    # The engine is deterministic (identical screens, checked before encoding); multi-threaded
    # x264 is not bit-exact between runs: mean abs difference ~1.4 of 255 for the same seed,
    # ~32 for another seed (measured).
    fa = frames("a.mp4")
    assert np.abs(fa - frames("b.mp4")).mean() < 4
    assert np.abs(fa - frames("c.mp4")).mean() > 10


@pytest.mark.parametrize("args, message", [
    (["--scenario", "nosuch"], "--scenario nosuch: not a shipped scenario (basic, "),
    (["--scenario", "missing.cfg"], "--scenario missing.cfg: no such file"),
    (["--resolution", "100x100"], "--resolution 100x100: not a ViZDoom resolution (e.g. 160x120, "),
    (["--frames", "0"], "--frames 0: must be >= 1"),
    (["--frameskip", "0"], "--frameskip 0: must be >= 1"),
    (["--max-hold", "0"], "--max-hold 0: must be >= 1"),
    (["--frames", "ten"], "invalid int value"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    assert_bad_input(main, args, tmp_path, capsys, message)


def test_missing_vizdoom_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "vizdoom", None)  # import vizdoom now raises ImportError
    assert main(["--frames", "5", "--out", str(tmp_path / "x.mp4")]) == 2
    assert capsys.readouterr().err == "error: vizdoom is not installed: pip install -e '.[vizdoom]'\n"
