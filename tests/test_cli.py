"""The command lines as a new user meets them: every bad input is one `error:` line and exit code 2
(no traceback, no usage dump, nothing written), and `--threads` reaches torch (and OpenCV)."""
from __future__ import annotations

from pathlib import Path

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
    "evaluate-checkpoint-in-no-dir": (evaluate.main, lambda t: ["--checkpoint", t / "no-dir" / "x.pt", "--data",
                                                                t / "store"], "x.pt: checkpoint not found"),
    "evaluate-checkpoint-dir": (evaluate.main, lambda t: [*ok_evaluate(t), "--checkpoint", t / "store"],
                                "is a directory"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_error_line_and_exit_2(world, capsys, case, monkeypatch):
    monkeypatch.chdir(world)  # a run that started by mistake would write runs/ here
    main, argv, words = CASES[case]
    if main is train.main and "--resume" not in map(str, argv(world)):  # a resume keeps the run's own run.dir
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


# ----------------------------------------------------------------------------- malformed checkpoints
def _edited(src: Path, dst: Path, edit) -> Path:
    """A copy of the framegan checkpoint ``src`` with ``edit(state)`` applied: a stranger's file,
    or one edited by hand."""
    state = torch.load(src, weights_only=True)
    edit(state)
    torch.save(state, dst)
    return dst


MALFORMED = {  # name: (edit of a good checkpoint, words the one line must hold)
    "no-generator": (lambda s: [s.pop("G"), s.pop("G_ema")], "holds no generator weights"),
    "config-not-a-mapping": (lambda s: s.update(config="x"), "config is a str"),
    "no-config": (lambda s: s.pop("config"), "holds no training config"),
    "weights-not-a-mapping": (lambda s: s.update(G_ema=[1, 2]), "[G_ema] is not a set of weights"),
    "store-not-a-mapping": (lambda s: s.update(store=[64, 64]), "store info is a list"),
    "store-size": (lambda s: s.update(store={**s["store"], "size": "16x16"}), "frame size '16x16'"),
}


def _commands(t: Path, ckpt: Path) -> dict:
    from framegan import export, play

    return {"rollout": (rollout.main, [*ok_rollout(t), "--checkpoint", ckpt]),
            "evaluate": (evaluate.main, [*ok_evaluate(t), "--checkpoint", ckpt]),
            "export": (export.main, ["--checkpoint", ckpt, "--out", t / "out" / "g.onnx"]),
            "play": (play.main, ["--checkpoint", ckpt, "--context", t / "store", "--keys", "none:1",
                                 "--out", t / "out" / "p.gif"])}


def _one_error_line(capsys, *words) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out + err, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command", ["rollout", "evaluate", "export", "play"])
@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_checkpoint_is_one_line_naming_the_file(world, capsys, case, command):
    """A checkpoint without G/G_ema, with a config or store that is not a mapping: each was a
    traceback (KeyError 'G', AttributeError, omegaconf's ValueError) somewhere."""
    edit, words = MALFORMED[case]
    bad = _edited(world / "c.pt", world / f"{case}.pt", edit)
    main, argv = _commands(world, bad)[command]
    assert main([str(a) for a in argv]) == 2
    _one_error_line(capsys, str(bad), words)
    assert not (world / "out").exists()


def test_checkpoint_with_store_none_reads_as_one_without_store_info(world, capsys):
    """``store: None`` was an AttributeError in rollout and export; it means what a missing store
    means: no preprocessing recorded (a store context still works, a video one cannot be resized)."""
    from framegan import export

    bad = _edited(world / "c.pt", world / "nostore.pt", lambda s: s.update(store=None))
    assert rollout.main([str(a) for a in [*ok_rollout(world), "--checkpoint", bad]]) == 0
    assert (world / "out" / "r.npy").is_file()
    capsys.readouterr()
    assert export.main(["--checkpoint", str(bad), "--out", str(world / "g.onnx")]) == 2
    _one_error_line(capsys, "records no frame size; pass --size H W")


# ----------------------------------------------------------------------------- files that are no checkpoint
def _not_checkpoints(t: Path) -> dict[str, Path]:
    import numpy as np

    files = {"text": t / "notes.txt", "letter-v": t / "v.txt", "npy": t / "a.npy", "onnx": t / "g.onnx",
             "mp4": t / "clip.mp4"}
    files["text"].write_text("hello\nthese are notes\n")
    files["letter-v"].write_text("v1.0 release notes\n")
    np.save(files["npy"], np.zeros((2, 3), np.float32))
    files["onnx"].write_bytes(b"\x08\x08\x12\x07pytorch" + bytes(64))  # an ONNX protobuf starts like this
    files["mp4"].write_bytes(b"\x00\x00\x00\x20ftypisom" + bytes(64))
    return files


@pytest.mark.parametrize("kind", ["text", "letter-v", "npy", "onnx", "mp4"])
@pytest.mark.parametrize("command", ["rollout", "train-resume"])
def test_a_file_that_is_no_checkpoint_is_not_called_pickled_code(world, capsys, monkeypatch, kind, command):
    """torch says "Weights only load failed" for any non-zip file it gives up on; only a real
    pickle it refuses holds objects or code. The rest are just not checkpoints."""
    monkeypatch.chdir(world)
    path = _not_checkpoints(world)[kind]
    if command == "rollout":
        code = rollout.main([str(a) for a in [*ok_rollout(world), "--checkpoint", path]])
    else:
        code = train.main(["--resume", str(path)])
    assert code == 2
    line = _one_error_line(capsys, str(path), "not a readable checkpoint")
    assert "pickled" not in line and "refused" not in line


@pytest.mark.parametrize("how", ["pickle-module", "torch-save"])
def test_a_pickle_of_objects_is_still_refused_as_such(world, capsys, how):
    import collections
    import datetime
    import pickle

    path = world / f"{how}.pt"
    if how == "pickle-module":  # a pickle (protocol 4) that torch.save did not write
        path.write_bytes(pickle.dumps(collections.OrderedDict(a=1), protocol=4))
    else:  # torch's own format, holding an object the weights-only loader will not build
        torch.save({"format": "framegan-checkpoint", "when": datetime.datetime(2020, 1, 1)}, path)
    assert rollout.main([str(a) for a in [*ok_rollout(world), "--checkpoint", path]]) == 2
    _one_error_line(capsys, str(path), "refused to load: it holds pickled objects or code")


# ----------------------------------------------------------------------------- outputs that cannot be written
@pytest.mark.parametrize("command", ["rollout", "evaluate", "export", "play"])
def test_an_out_under_a_file_names_the_out_and_what_is_wrong(world, capsys, command):
    """It printed "File exists" (a parent of --out is a file) or the hidden temp name."""
    (world / "afile").write_text("a file, where --out wants a directory")
    out = world / "afile" / ("eval" if command == "evaluate" else "x" + {"rollout": ".gif", "export": ".onnx",
                                                                          "play": ".gif"}[command])
    main, argv = _commands(world, world / "c.pt")[command]
    assert main([str(a) for a in argv[:argv.index("--out")]] + ["--out", str(out)]) == 2
    line = _one_error_line(capsys, f"error: {out}: ", f"{world / 'afile'} is a file, not a directory")
    assert "File exists" not in line and ".tmp" not in line
    assert (world / "afile").read_text().startswith("a file")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc (where no file can be made)")
@pytest.mark.parametrize("command", ["rollout", "evaluate", "export", "play"])
def test_an_unwritable_out_names_the_out_not_a_temp_file(world, capsys, command, monkeypatch):
    """/proc/x.npy printed "/proc/.x.hubk6ygg.tmp.npy: No such file or directory"; play printed
    only "No such file or directory". Evaluate found out only after all the rollouts."""
    out = Path("/proc") / ("framegan-eval" if command == "evaluate" else "x" + {
        "rollout": ".npy", "export": ".onnx", "play": ".mp4"}[command])
    monkeypatch.setattr(evaluate, "evaluate_models", lambda *a, **k: pytest.fail("evaluated before checking --out"))
    main, argv = _commands(world, world / "c.pt")[command]
    assert main([str(a) for a in argv[:argv.index("--out")]] + ["--out", str(out)]) == 2
    line = _one_error_line(capsys, f"error: {out}: ", "/proc")
    assert ".tmp" not in line and "cannot" in line


def test_evaluate_checks_its_out_before_the_work_and_removes_what_it_made(world, capsys, monkeypatch):
    """--out is created up front (so a bad one fails before the rollouts) and removed again when the
    evaluation then fails."""
    def broken(*a, **k):
        raise evaluate.UsageError("the evaluation failed")

    monkeypatch.setattr(evaluate, "evaluate_models", broken)
    out = world / "new" / "deeper" / "eval"
    assert evaluate.main([str(a) for a in [*ok_evaluate(world), "--out", out]]) == 2
    _one_error_line(capsys, "the evaluation failed")
    assert not (world / "new").exists()
