"""The fork-game family: fair forks over every branch, varied episodes, exact futures, hard cuts."""
import json

import numpy as np
import pytest

from framegan import sample_game as game
from framegan.store import open_store

GAMES = list(game.GAMES.values())


@pytest.mark.parametrize("g", GAMES, ids=[g.name for g in GAMES])
def test_every_branch_is_equally_likely_and_the_taken_future_is_the_rendered_one(g):
    eps = list(game.episodes(300, seed=3, game=g))
    share = np.bincount([e.branch for e in eps], minlength=len(g.branches)) / len(eps)
    assert np.all(np.abs(share - 1 / len(g.branches)) < 0.08), share
    for e in eps[:20]:
        assert e.fork + 1 >= 4  # every episode has a full K=4 context ending at the fork
        futures = game.fork_futures(e, g.after)
        assert len(futures) == len(g.branches)
        assert np.array_equal(futures[e.branch], e.frames[e.fork + 1:])  # the real future is rendered
    a, b = game.episodes(5, seed=7, game=g), game.episodes(5, seed=7, game=g)
    assert all(np.array_equal(x.frames, y.frames) for x, y in zip(a, b))


@pytest.mark.parametrize("g", GAMES, ids=[g.name for g in GAMES])
def test_episodes_vary_so_that_fresh_contexts_exist(g):
    eps = list(game.episodes(200, seed=0, game=g))
    contexts = {e.frames[e.fork - 3:e.fork + 1].tobytes() for e in eps}
    assert len(contexts) == len(eps)  # the old sample game had ~48 distinct fork contexts in 400
    assert len({e.scene.junction for e in eps}) > 20
    assert {e.scene.approach for e in eps} == set(range(*g.approach))
    assert len({e.scene.phase for e in eps}) == 12
    assert len({e.scene.wall for e in eps}) == len(eps)
    walls = np.array([e.scene.wall for e in eps])
    assert np.abs(np.diff(walls, axis=0)).mean(1).min() >= game.MIN_WALL_CHANGE  # every cut is visible


@pytest.mark.parametrize("g", GAMES, ids=[g.name for g in GAMES])
def test_futures_differ_only_around_the_character(g):
    e = next(game.episodes(1, seed=0, game=g))
    fut = game.fork_futures(e, 1)
    for i in range(len(fut)):
        for j in range(i + 1, len(fut)):
            diff = np.any(fut[i][0] != fut[j][0], axis=-1)
            assert 0 < diff.sum() <= 2 * g.sprite ** 2
    assert np.all(fut[0][0] == g.colour, axis=-1).sum() == g.sprite ** 2  # one whole sprite, no other pixel


@pytest.mark.parametrize("name", ["default", "textured", "three_way"])
def test_store_is_cut_into_episodes_and_records_its_game(tmp_path, name):
    root = game.build_sample_store(tmp_path / "sample", n_episodes=12, seed=1, game=name)
    store = open_store(root)
    eps = list(game.episodes(12, seed=1, game=name))
    assert [len(s) for s in store.segments] == [len(e.frames) for e in eps]
    # yuv444p H.264 keeps the small saturated sprite: frames match the renders closely
    err = max(np.abs(np.asarray(s, int) - e.frames).mean() for s, e in zip(store.segments, eps))
    assert err < 3.0
    cuts = np.load(tmp_path / "sample.cuts.npy")
    assert cuts.tolist() == np.cumsum([0] + [len(e.frames) for e in eps[:-1]]).tolist()
    record = game.read_record(root)
    assert (record["seed"], record["episodes"], record["game"]["name"]) == (1, 12, name)
    assert game.ForkGame.from_dict(json.loads(json.dumps(record["game"]))) == game.GAMES[name]


def test_a_game_that_cannot_be_played_is_refused():
    with pytest.raises(ValueError, match="leaves the 64x64 frame"):
        game.ForkGame(name="wide", junction_x=(2, 60))
    with pytest.raises(ValueError, match="distractors"):
        game.ForkGame(name="low", junction_y=(30, 40))
    with pytest.raises(ValueError, match="track"):
        game.ForkGame(name="x", track="X")
    with pytest.raises(ValueError, match="no fork game"):
        game.get_game("nope")


def test_cli_writes_video_for_any_game(tmp_path, capsys):
    assert game.main([str(tmp_path / "g.mp4"), "--episodes", "3", "--game", "three_way"]) == 0
    out = capsys.readouterr().out
    assert "three_way fork game, 3 episodes" in out and "up " in out
    assert (tmp_path / "g.mp4").stat().st_size > 0 and len(np.load(tmp_path / "g.cuts.npy")) == 3
    assert game.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(game.GAMES)
    (tmp_path / "file").write_text("")
    for bad in (["x.mp4", "--episodes", "0"], ["x.mp4", "--game", "nope"], [], ["x.mp4", "--episodes", "x"],
                ["x.mp4", "--nope"], [str(tmp_path / "file" / "g.mp4"), "--episodes", "1"]):
        assert game.main(bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and len(err.strip().splitlines()) == 1, (bad, err)
    assert not (tmp_path / "x.mp4").exists()
