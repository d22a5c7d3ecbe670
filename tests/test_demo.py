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
