"""make demo's program, shortened: sample gameplay -> store -> training -> rollout GIF -> evaluation."""
import json

from PIL import Image

from framegan import demo


def test_demo_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the demo writes data/sample and runs/ under the working directory
    run = tmp_path / "runs" / "demo"
    assert demo.main(["--steps", "2", "--run", str(run)]) == 0
    assert (tmp_path / "data" / "sample" / "manifest.json").exists()
    assert (run / "rollout.gif").read_bytes()[:6] == b"GIF89a"
    with Image.open(run / "rollout.gif") as gif:  # 4 context frames, then the 4 the episode has left
        assert gif.n_frames == 8
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert "copy-last" in json.dumps(metrics)
    assert (run / "eval" / "metrics.png").exists()
    out = capsys.readouterr().out
    assert "Done. Look at:" in out
    # A re-run with more --steps continues the run (it stopped: "variety_relax_steps=1 (now 2); a
    # resume must continue the same run: drop those overrides", which the demo passes itself).
    # Rollout and evaluation ran above; here only the training is under test.
    from framegan import evaluate, rollout
    from framegan.checkpoint import load_checkpoint

    with monkeypatch.context() as m:
        m.setattr(rollout, "main", lambda argv: 0)
        m.setattr(evaluate, "main", lambda argv: 0)
        assert demo.main(["--steps", "3", "--run", str(run)]) == 0
        out = capsys.readouterr().out
        assert "resumed at step 2" in out and "relax schedule it started with (loss.variety_relax_steps=1)" in out
        state = load_checkpoint(run / "checkpoints" / "last.pt")
        assert state["step"] == 3 and state["config"]["loss"]["variety_relax_steps"] == 1
        # another precision is another run: one line saying what to do, before any work
        assert demo.main(["--steps", "3", "--run", str(run), "--precision", "fp32"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {run} holds a demo run trained with --precision auto: pass --precision auto")
        assert err.count("\n") == 1 and "--run DIR" in err
    # --precision reaches all three steps (fp32: what auto picks on a CPU without native bf16)
    run = tmp_path / "runs" / "demo_fp32"
    assert demo.main(["--steps", "2", "--run", str(run), "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "train.precision=fp32" in out and out.count("--precision fp32") == 2
    assert "autocast off" in out and json.loads((run / "eval" / "metrics.json").read_text())["precision"] == "fp32"


def test_demo_bad_argument_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert demo.main(["--precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument --precision: invalid choice") and err.count("\n") == 1
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()  # nothing started
