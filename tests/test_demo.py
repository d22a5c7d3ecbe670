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
    assert "Done. Look at:" in capsys.readouterr().out
