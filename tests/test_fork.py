"""The fork experiment: the scorer on exact renders, and the whole pipeline end to end (short)."""
import json

import numpy as np
import pytest

from framegan import sample_game as game
from framegan.experiments import fork
from framegan.sample_game import build_sample_store


@pytest.fixture(scope="module")
def episode():
    return next(game.episodes(1, seed=11))


@pytest.mark.parametrize("step", [1, 2, 3])
def test_scorer_on_exact_frames(episode, step):
    fut = game.fork_futures(episode, step)
    left, right = fut[game.LEFT][-1], fut[game.RIGHT][-1]
    assert fork.score_frame(left, episode, step) == ("sharp", game.LEFT, False)
    assert fork.score_frame(right, episode, step) == ("sharp", game.RIGHT, False)
    average = ((left.astype(float) + right) / 2).round().astype(np.uint8)  # the L1 answer
    assert fork.score_frame(average, episode, step)[0] == "split"
    both = np.maximum(left, right)  # two whole characters is not one sharp character either
    assert fork.score_frame(both, episode, step)[0] == "split"
    frozen = episode.frames[episode.fork]  # the character did not move
    assert fork.score_frame(frozen, episode, step)[0] == "blurred"
    # The right character on a broken scene: 10 % of the background pixels scrambled.
    noisy = left.copy()
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, noisy.shape[0], (2, noisy.shape[0] ** 2 // 10))
    noisy[ys[ys > 30], xs[ys > 30]] = 255 - noisy[ys[ys > 30], xs[ys > 30]]
    assert fork.score_frame(noisy, episode, step)[::2] == ("blurred", True)
    faded = ((left.astype(float) + game.render(episode.clock + episode.fork + step, episode.palette, None)) / 2)
    assert fork.score_frame(faded.round().astype(np.uint8), episode, step)[0] == "blurred"


def test_pipeline_end_to_end(tmp_path, capsys):
    store = build_sample_store(tmp_path / "sample", n_episodes=16)
    tiny = [f"data.root={store}", "train.steps=4", "train.batch_size=4", "model.width=8", "model.depth=2",
            "model.d_width=8", "model.d_depth=2", "train.sample_every=4", "train.val_batches=1",
            "train.video_frames=2"]
    out = tmp_path / "fork"
    assert fork.main(["--out", str(out), "--contexts", "2", "--samples", "4", "--horizon", "2", *tiny]) == 0
    res = json.loads((out / "fork.json").read_text())
    assert set(res) == {"gan", "regression"}
    assert res["regression"]["samples_per_context"] == 1 and res["gan"]["samples_per_context"] == 4
    for r in res.values():
        assert r["sharp_rate"] + r["split_rate"] + r["blurred_rate"] == pytest.approx(1.0)
        assert 0 <= r["noisy_rate"] <= 1
        assert len(r["step1_left_right_per_context"]) == r["contexts"]
        sharp_step1 = sum(map(sum, r["step1_left_right_per_context"]))
        assert sharp_step1 == round(r["per_step"][0]["sharp"] * r["contexts"] * r["samples_per_context"])
        assert r["frames"] == r["contexts"] * r["samples_per_context"] * 2
    assert (out / "fork.gif").read_bytes()[:6] == b"GIF89a"
    assert "sharp" in capsys.readouterr().out


def test_bad_arguments(capsys):
    assert fork.main(["--samples", "0"]) == 2
    assert capsys.readouterr().err.startswith("error:")
