"""Atari recording (framegan.atari): real ale-py gameplay -> mp4 + actions -> frame store."""
from __future__ import annotations

import json
import sys

import ale_py
import ale_py.roms
import numpy as np
import pytest
from conftest import assert_bad_input

from framegan.atari import main, record, rom_id
from framegan.extract import extract
from framegan.store import open_store
from framegan.video import iter_frames, probe


def _action_set(rom: str) -> set[int]:
    ale = ale_py.ALEInterface()
    ale.loadROM(str(ale_py.roms.get_rom_path(rom)))
    return {a.value for a in ale.getMinimalActionSet()}


def test_record_ms_pacman_to_video_actions_and_store(tmp_path, capsys):
    out = tmp_path / "pac.mp4"
    assert main(["--frames", "40", "--frameskip", "4", "--out", str(out), "--quiet"]) == 0
    assert "40 frames of MsPacman" in capsys.readouterr().out

    frames = np.stack([f.image for f in iter_frames(out)])
    assert frames.shape == (40, 210, 160, 3)
    assert probe(out).fps == pytest.approx(15.0)  # 60 / frameskip
    assert len({f.tobytes() for f in frames}) > 1  # the game moves, not one repeated screen

    actions = np.load(tmp_path / "pac.actions.npy")
    assert actions.dtype == np.int64 and actions.shape == (40,)
    assert set(actions.tolist()) <= _action_set("ms_pacman")
    assert len(set(actions.tolist())) > 1  # random policy, not one held action
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pac.action_names.json", "pac.actions.npy", "pac.cuts.npy", "pac.mp4"]  # no temps
    names = json.loads((tmp_path / "pac.action_names.json").read_text())
    assert names == {str(v): ale_py.Action(v).name for v in _action_set("ms_pacman")}
    assert names["0"] == "NOOP" and names["4"] == "LEFT"
    assert np.load(tmp_path / "pac.cuts.npy").tolist() == []  # 40 frames: no game over

    s = extract([out], tmp_path / "store", size=64, progress=False)
    assert s["frames_in"] == 40 and s["frames_out"] > 0
    store = open_store(tmp_path / "store")
    assert store.size == (64, 64) and store.segments[0].shape[1:] == (64, 64, 3)
    assert store.action_values == sorted(set(actions.tolist()))
    assert store.action_names == [ale_py.Action(v).name for v in store.action_values]
    assert np.concatenate(store.actions).tolist() == actions.tolist()  # one segment, every frame


def test_same_seed_same_recording_and_game_over_resets(tmp_path):
    # frameskip 16: a random player loses all lives within ~150 recorded frames, so 300 frames
    # cross at least one game over (reset, recording goes on).
    kw = dict(game="ms_pacman", frames=300, frameskip=16, seed=3, progress=False)
    a = record(tmp_path / "a.mp4", **kw)
    b = record(tmp_path / "b.mp4", **kw)
    assert a["games"] >= 2 and a["games"] == b["games"]
    assert sum(1 for _ in iter_frames(tmp_path / "a.mp4")) == 300
    np.testing.assert_array_equal(np.load(tmp_path / "a.actions.npy"), np.load(tmp_path / "b.actions.npy"))
    record(tmp_path / "c.mp4", **{**kw, "seed": 4})
    assert not np.array_equal(np.load(tmp_path / "a.actions.npy"), np.load(tmp_path / "c.actions.npy"))

    # Each reset is marked, and extraction starts a new segment there (the screen alone does not
    # show it: a reset differs from the frame before by ~0.01, below the scene threshold).
    cuts = np.load(tmp_path / "a.cuts.npy").tolist()
    assert len(cuts) == a["games"] - 1 and cuts == np.load(tmp_path / "b.cuts.npy").tolist()
    extract([tmp_path / "a.mp4"], tmp_path / "store", size=64, min_segment=1, progress=False)
    segments = open_store(tmp_path / "store").manifest["segments"]
    assert [g["start_frame"] for g in segments] == [0, *cuts]
    assert sum(g["frames"] for g in segments) == 300


def test_game_names():
    assert rom_id("MsPacman") == rom_id("ms_pacman") == rom_id("ms-pacman") == "ms_pacman"
    assert rom_id("Breakout") == "breakout"


@pytest.mark.parametrize("args, message", [
    (["--game", "NoSuchGame"], "--game NoSuchGame: unknown ALE game"),
    (["--frames", "0"], "--frames 0: must be >= 1"),
    (["--frameskip", "0"], "--frameskip 0: must be >= 1"),
    (["--sticky", "1.5"], "--sticky 1.5: must be in [0, 1]"),
    (["--frames", "ten"], "invalid int value"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    assert_bad_input(main, args, tmp_path, capsys, message)


def test_missing_ale_py_says_how_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # import ale_py now raises ImportError
    assert main(["--frames", "5", "--out", str(tmp_path / "x.mp4")]) == 2
    assert capsys.readouterr().err == "error: ale-py is not installed: pip install -e '.[atari]'\n"
    assert list(tmp_path.iterdir()) == []


def test_key_effect_compares_two_true_futures():
    """The same keys replayed from a restored emulator (RNG included) give the same future, so
    the effect is nil (inf dB); another window's keys change Ms. Pac-Man's moving area."""
    from framegan.experiments.key_effect import gain_estimate, key_effect

    same = key_effect(frames=240, every=40, horizon=3, shift=0, progress=False)
    assert same["windows"] >= 4 and len(same["steps"]) == 3
    assert all(s["psnr"] == float("inf") and s["psnr_moving"] == float("inf") for s in same["steps"])
    other = key_effect(frames=240, every=40, horizon=3, progress=False)
    assert other["windows"] == same["windows"]
    last = other["steps"][-1]
    assert 5 < last["psnr_moving"] < 60 and last["psnr_moving"] < last["psnr"]  # the change is where things move
    assert 0 < last["moving_fraction"] < 0.5
    assert gain_estimate(10 ** -2, 20.0) == pytest.approx(10 * np.log10(2))  # error doubles: +3 dB


def test_key_effect_first_key_only_changes_the_frame_after_next_more():
    """--vary first: the same keys but the first, which always differs, so the futures differ,
    and on Ms. Pac-Man more at step 2 than at step 1 (38.5 / 35.0 dB whole frame when written):
    the frame after next still depends on a key that a one-key G no longer sees there (why
    model.action_history exists). Whether that is a delay or the step-1 difference growing, this
    does not tell apart."""
    from framegan.experiments.key_effect import key_effect

    r = key_effect(frames=240, every=40, horizon=3, shift=0, progress=False, vary="first")
    psnr = [s["psnr"] for s in r["steps"]]
    assert r["vary"] == "first" and all(p < 60 for p in psnr)
    assert psnr[0] > psnr[1] + 1, psnr


def test_key_effect_cli_prints_every_step_and_the_estimate(capsys):
    from framegan.experiments.key_effect import main as key_main

    assert key_main(["--frames", "240", "--every", "40", "--horizon", "2", "--size", "32",
                     "--model-psnr", "15", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "MsPacman at 32x32" in out and "step  1:" in out and "step  2:" in out
    assert "a model at 15 dB moving-area PSNR (step 2)" in out
    assert key_main(["--frames", "240", "--every", "40", "--horizon", "2", "--size", "32", "--vary", "first",
                     "--quiet"]) == 0
    assert "under the pressed keys and the same with only the first key changed" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--sticky", "2"], "--sticky 2.0: must be in [0, 1]"),
    (["--game", "NoSuchGame"], "--game NoSuchGame: unknown ALE game"),
    (["--horizon", "0"], "--horizon: must be >= 1, got 0"),
    (["--vary", "second"], "--vary: invalid choice"),
])
def test_key_effect_bad_input_one_line(capsys, args, message):
    from framegan.experiments.key_effect import main as key_main

    assert key_main([*args, "--quiet", "--frames", "40"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
