"""Action sidecars and CLI action specs (framegan.actions)."""
import json

import numpy as np
import pytest

from framegan import actions
from framegan.actions import (
    ActionError,
    parse_actions,
    read_cuts,
    read_ids,
    read_names,
    sidecar,
    write_recording,
    write_sidecars,
)

VALUES, NAMES = [0, 3, 4, 12], ["NOOP", "RIGHT", "LEFT", "LEFTFIRE"]


def test_parse_ids_names_and_files(tmp_path):
    assert parse_actions("3,3,0,12", VALUES, NAMES).tolist() == [1, 1, 0, 3]
    assert parse_actions("LEFT, LEFT,NOOP", VALUES, NAMES).tolist() == [2, 2, 0]
    assert parse_actions("left,4,leftfire", VALUES, NAMES).tolist() == [2, 2, 3]  # case-insensitive, mixed
    np.save(tmp_path / "a.npy", np.array([12, 0, 4], np.int32))
    got = parse_actions(tmp_path / "a.npy", VALUES, NAMES)
    assert got.dtype == np.int64 and got.tolist() == [3, 0, 2]
    assert parse_actions("7", [7], ["7"]).tolist() == [0]  # unnamed actions go by id


@pytest.mark.parametrize("spec, message", [
    ("3,5", "'5' is not one of the store's actions (0 NOOP, 3 RIGHT, 4 LEFT, 12 LEFTFIRE)"),
    ("JUMP", "'JUMP' is not one of the store's actions"),
    ("3,,0", "empty entry"),
    ("", "empty entry"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(ActionError) as e:
        parse_actions(spec, VALUES, NAMES)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bad_files_are_one_line_errors(tmp_path):
    np.save(tmp_path / "unknown.npy", np.array([0, 5]))
    np.save(tmp_path / "floats.npy", np.zeros(3))
    np.save(tmp_path / "empty.npy", np.zeros(0, np.int64))
    (tmp_path / "junk.npy").write_text("junk")
    cases = [("unknown.npy", "action 5 is not one of the store's actions"),
             ("floats.npy", "must be a 1-D integer array, got float64 (3,)"),
             ("empty.npy", "no actions in the file"),
             ("junk.npy", "not a readable .npy file"),
             ("missing.npy", "no such actions file")]
    for name, message in cases:
        with pytest.raises(ActionError) as e:
            parse_actions(str(tmp_path / name), VALUES, NAMES)
        assert message in str(e.value) and str(e.value).startswith(str(tmp_path / name))
    with pytest.raises(ActionError, match="have no actions"):
        parse_actions("0", [], [])


def test_sidecars_round_trip(tmp_path):
    video = tmp_path / "game.mp4"
    written = write_sidecars(video, [0, 3, 3], {3: "RIGHT", 0: "NOOP"}, [2])
    assert [p.name for p in written] == ["game.actions.npy", "game.action_names.json", "game.cuts.npy"]
    assert sidecar(video, ".cuts.npy") == tmp_path / "game.cuts.npy"
    assert read_ids(written[0]).tolist() == [0, 3, 3] and read_ids(written[0]).dtype == np.int64
    assert json.loads(written[1].read_text()) == {"0": "NOOP", "3": "RIGHT"}
    assert read_names(written[1]) == {0: "NOOP", 3: "RIGHT"}
    assert read_cuts(written[2]).tolist() == [2]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temps


def test_recording_writes_video_then_sidecars_or_nothing(tmp_path, monkeypatch):
    video = tmp_path / "game.mp4"
    screens = [np.full((16, 16, 3), 10 * i, np.uint8) for i in range(4)]
    keys, cuts = np.zeros(4, np.int64), []

    def play():  # a recorder fills its keys and cuts while the screens are consumed
        for i, screen in enumerate(screens):
            keys[i] = 3 * (i % 2)
            yield screen
        cuts.append(2)

    write_recording(video, play(), 10.0, keys, {0: "NOOP", 3: "RIGHT"}, cuts)
    assert read_ids(sidecar(video, ".actions.npy")).tolist() == [0, 3, 0, 3]
    assert read_cuts(sidecar(video, ".cuts.npy")).tolist() == [2] and video.stat().st_size > 0

    real = actions.write_sidecars

    def fail_after_the_first(video_, *args):
        real(video_, args[0])  # the actions file is written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(actions, "write_sidecars", fail_after_the_first)
    other = tmp_path / "other.mp4"
    with pytest.raises(OSError):
        write_recording(other, iter(screens), 10.0, keys, {0: "NOOP"}, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["game.mp4", "game.actions.npy", "game.action_names.json", "game.cuts.npy"])


@pytest.mark.parametrize("text", ['["NOOP"]', '{"x": "NOOP"}', '{"1": 2}', '{"1": " "}'])
def test_bad_names_files(tmp_path, text):
    (tmp_path / "n.json").write_text(text)
    with pytest.raises(ActionError, match="expected a JSON object of integer ids to names"):
        read_names(tmp_path / "n.json")


def test_bad_cuts(tmp_path):
    for cuts in ([3, 3], [5, 2], [-1, 4]):
        np.save(tmp_path / "c.npy", np.array(cuts))
        with pytest.raises(ActionError, match="increasing non-negative"):
            read_cuts(tmp_path / "c.npy")
