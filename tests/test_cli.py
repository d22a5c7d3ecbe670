"""The command lines as a new user meets them: every bad input is one `error:` line and exit code 2
(no traceback, no usage dump, nothing written), and `--threads` reaches torch (and OpenCV)."""
from __future__ import annotations

import cv2
import pytest
import torch
from test_rollout import make_checkpoint, sliding_square, write_store

from framegan import evaluate, extract, rollout, train


@pytest.fixture
def world(tmp_path):
    """A tiny checkpoint, a store it fits, and a few broken files."""
    (tmp_path / "broken.yaml").write_text("train:\n  steps: 3\n   model: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- data\n- model\n")
    (tmp_path / "garbage.pt").write_bytes(b"\x00garbage" * 16)
    (tmp_path / "half.pt").write_bytes(make_checkpoint(tmp_path / "c.pt").read_bytes()[:500])
    write_store(tmp_path / "store", sliding_square(12))
    return tmp_path


def ok_rollout(t):
    return ["--checkpoint", t / "c.pt", "--context", t / "store", "--horizon", "2", "--out", t / "out" / "r.npy"]


def ok_evaluate(t):
    return ["--checkpoint", t / "c.pt", "--data", t / "store", "--split", "all", "--horizon", "2",
            "--out", t / "out"]


CASES = {  # name: (main, argv from the fixture's directory, words the one line must hold)
    "train-config-missing": (train.main, lambda t: ["--config", t / "nope.yaml"], "not found"),
    "train-config-syntax": (train.main, lambda t: ["--config", t / "broken.yaml"], "broken.yaml:3:9: invalid YAML"),
    "train-config-not-mapping": (train.main, lambda t: ["--config", t / "list.yaml"], "mapping"),
    "train-unknown-key": (train.main, lambda t: ["model.nope=1"], "nope"),
    "train-bad-type": (train.main, lambda t: ["train.steps=many"], "train.steps"),
    "train-not-key-value": (train.main, lambda t: ["steps"], "key=value"),
    "train-bad-device": (train.main, lambda t: ["train.device=tpu"], "train.device"),
    "train-resume-missing": (train.main, lambda t: ["--resume", t / "no-run"], "no checkpoint"),
    "train-resume-garbage": (train.main, lambda t: ["--resume", t / "garbage.pt"], "garbage.pt"),
    "train-resume-truncated": (train.main, lambda t: ["--resume", t / "half.pt"], "not a readable checkpoint"),
    "train-store-missing": (train.main, lambda t: [f"data.root={t / 'no-store'}"], "no such frame store"),
    "train-unknown-option": (train.main, lambda t: ["--epochs", "3"], "--epochs"),
    "train-threads-0": (train.main, lambda t: ["--threads", "0"], "--threads"),
    "rollout-checkpoint-missing": (rollout.main, lambda t: [*ok_rollout(t), "--checkpoint", t / "x.pt"], "x.pt"),
    "rollout-checkpoint-garbage": (rollout.main, lambda t: [*ok_rollout(t), "--checkpoint", t / "garbage.pt"],
                                   "garbage.pt"),
    "rollout-horizon-word": (rollout.main, lambda t: [*ok_rollout(t), "--horizon", "ten"], "--horizon"),
    "rollout-device": (rollout.main, lambda t: [*ok_rollout(t), "--device", "potato"], "potato"),
    "rollout-context-missing": (rollout.main, lambda t: [*ok_rollout(t), "--context", t / "none.mp4"], "none.mp4"),
    "evaluate-store-missing": (evaluate.main, lambda t: [*ok_evaluate(t), "--data", t / "none"], "none"),
    "evaluate-samples-0": (evaluate.main, lambda t: [*ok_evaluate(t), "--samples", "0"], "--samples"),
    "evaluate-no-data": (evaluate.main, lambda t: ["--checkpoint", t / "c.pt"], "--data"),
    "evaluate-checkpoint-dir": (evaluate.main, lambda t: [*ok_evaluate(t), "--checkpoint", t / "store"],
                                "is a directory"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_and_exit_2(world, capsys, case, monkeypatch):
    monkeypatch.chdir(world)  # a run that started by mistake would write runs/ here
    main, argv, words = CASES[case]
    if main is train.main:
        argv_ = [*map(str, argv(world)), f"run.dir={world / 'out'}"]
    else:
        argv_ = [str(a) for a in argv(world)]
    assert main(argv_) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert words in lines[0] and "Traceback" not in out + err
    assert not (world / "out").exists() and not (world / "runs").exists()


@pytest.mark.parametrize("main, argv", [
    (train.main, ["data.root=no-store"]),
    (rollout.main, ["--checkpoint", "x.pt", "--context", "y.mp4"]),
    (evaluate.main, ["--checkpoint", "x.pt", "--data", "no-store"]),
    (extract.main, ["no-video.mp4", "--out", "s"]),
], ids=["train", "rollout", "evaluate", "extract"])
def test_threads_option_sets_torch_and_opencv_threads(tmp_path, monkeypatch, main, argv):
    monkeypatch.chdir(tmp_path)
    before, before_cv = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(2)
    cv2.setNumThreads(2)
    try:
        assert main(["--threads", "1", *argv]) == 2  # the input is bad, but only after the threads are set
        assert torch.get_num_threads() == 1
        if main in (extract.main, rollout.main):  # they resize frames with OpenCV
            assert cv2.getNumThreads() == 1
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(before_cv)
