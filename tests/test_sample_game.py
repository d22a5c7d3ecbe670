"""The sample game: a real fork (both branches, ~1/2 each), hard cuts the extractor finds."""
import numpy as np

from framegan import sample_game as game
from framegan.store import open_store


def test_episodes_have_a_fair_fork_and_deterministic_rest():
    eps = list(game.episodes(400, seed=3))
    left = np.mean([e.branch == game.LEFT for e in eps])
    assert 0.44 < left < 0.56
    for e in eps[:20]:
        assert e.fork + 1 >= 4  # every episode has a full K=4 context ending at the fork
        fut = game.fork_futures(e, 2)[e.branch]
        assert np.array_equal(fut[0], e.frames[e.fork + 1])  # the rendered future is the real one
    a, b = game.episodes(5, seed=7), game.episodes(5, seed=7)
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))


def test_both_futures_differ_only_around_the_character():
    e = next(game.episodes(1, seed=0))
    fut = game.fork_futures(e, 1)
    diff = np.any(fut[game.LEFT][0] != fut[game.RIGHT][0], axis=-1)
    assert 0 < diff.sum() <= 2 * game.SPRITE * game.SPRITE


def test_sample_store_is_cut_into_episodes(tmp_path):
    root = game.build_sample_store(tmp_path / "sample", n_episodes=12, seed=1)
    store = open_store(root)
    eps = list(game.episodes(12, seed=1))
    assert [len(s) for s in store.segments] == [len(e.frames) for e in eps]
    # yuv444p H.264 keeps the small saturated sprite: frames match the renders closely
    err = np.abs(store.segments[0].astype(int) - eps[0].frames.astype(int)).mean()
    assert err < 2.0
    assert (tmp_path / "sample.mp4").exists()


def test_cli_writes_video(tmp_path, capsys):
    assert game.main([str(tmp_path / "g.mp4"), "--episodes", "3"]) == 0
    assert "3 episodes" in capsys.readouterr().out
    assert game.main([str(tmp_path / "g.mp4"), "--episodes", "0"]) == 2
