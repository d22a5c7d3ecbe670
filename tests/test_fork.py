"""The fork experiment: the scorer on exact renders, on known generators end to end, the fresh-context
proof, and the whole pipeline (short)."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from framegan import sample_game as game
from framegan.experiments import fork
from framegan.frames import to_model, to_pixels

GAMES = list(game.GAMES.values())
K = 4


@pytest.mark.parametrize("g", GAMES, ids=[g.name for g in GAMES])
def test_scorer_on_exact_frames(g):
    ep = next(game.episodes(1, seed=11, game=g))
    futures = game.fork_futures(ep, g.after)
    for step in range(1, g.after + 1):
        frames = [f[step - 1] for f in futures]
        for b, frame in enumerate(frames):
            assert fork.score_frame(frame, ep, step) == ("sharp", b, False)
        average = np.mean(frames, axis=0).round().astype(np.uint8)  # the L1 answer
        assert fork.score_frame(average, ep, step)[0] == "split"
        both = np.maximum(frames[0], frames[-1])  # two whole characters is not one sharp character
        assert fork.score_frame(both, ep, step)[0] == "split"
        frozen = ep.frames[ep.fork]  # the character did not move
        assert fork.score_frame(frozen, ep, step)[0] == "blurred"
        # The right character on a broken scene: 10 % of the pixels below the character scrambled.
        noisy = frames[0].copy()
        rng = np.random.default_rng(0)
        ys, xs = rng.integers(0, noisy.shape[0], (2, noisy.shape[0] ** 2 // 10))
        keep = ys > 48
        noisy[ys[keep], xs[keep]] = 255 - noisy[ys[keep], xs[keep]]
        assert fork.score_frame(noisy, ep, step)[::2] == ("blurred", True)
        background = game.render(g, ep.scene, ep.fork + step, None)
        faded = ((frames[0].astype(float) + background) / 2).round().astype(np.uint8)
        assert fork.score_frame(faded, ep, step)[0] == "blurred"
        assert fork.coverage(frames[0], ep, step)[3] == 0  # an exact render leaves no trail
    # A faint ghost where the character stood at the fork, left there to the last step (in every
    # game the character is well away from the fork by then): 30 levels off, over TRAIL_LEVEL (16)
    # and under NOISY_LEVEL (48). A trail, though the frame is still "sharp".
    step = g.after
    exact = futures[0][step - 1]
    fork_frame, fork_background = ep.frames[ep.fork], game.render(g, ep.scene, ep.fork, None)
    was_there = np.abs(fork_frame.astype(int) - fork_background).max(-1) > 100
    ghost = exact.astype(int)
    ghost[was_there] += np.where(ghost[was_there] > 127, -30, 30)
    ghost = ghost.astype(np.uint8)
    nothing = np.zeros(ghost.shape[:2], bool)
    assert fork.background_error(ghost, exact, nothing, g, (fork.NOISY_LEVEL,)) == [0]
    label, _, noisy = fork.score_frame(ghost, ep, step)
    assert fork.coverage(ghost, ep, step)[3] > 0.001 and (label, noisy) == ("sharp", False)
    # All of that ghost lies on the character's path; a mark elsewhere (the scene's other moving
    # things drawn off) counts as trail but not as path.
    trail, behind = fork.coverage(ghost, ep, step)[3:]
    assert behind == trail
    per_branch, old = fork.boxes(ep, step, ghost.shape[0])
    boxes = old | np.logical_or.reduce(per_branch)
    free = ~fork.dilate(boxes | fork.path_mask(ep, step, ghost.shape[0]), g, ghost.shape[0])
    ys, xs = np.nonzero(free)
    elsewhere = exact.astype(int)
    elsewhere[ys[:20], xs[:20]] += np.where(elsewhere[ys[:20], xs[:20]] > 127, -30, 30)
    trail, behind = fork.coverage(elsewhere.astype(np.uint8), ep, step)[3:]
    assert trail > 0.001 and behind == 0


class Oracle(torch.nn.Module):
    """A known generator: it recognises the last context frame among the exact renders of the
    scoring episodes (fork frame and every future) and returns the next one of the branch that
    ``policy(z, episode index)`` picks at the fork ("blend": the mean of all branches; "freeze":
    the last frame again)."""

    def __init__(self, episodes, policy, z_classes=0):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # rollout reads the device from parameters
        self.context, self.policy = K, policy
        self.z_classes = self.z_dim = z_classes
        self.futures = [game.fork_futures(ep, ep.game.after) for ep in episodes]
        self.known = {ep.frames[ep.fork].tobytes(): (i, 0, None) for i, ep in enumerate(episodes)}
        for i, futures in enumerate(self.futures):
            for b, f in enumerate(futures):
                self.known.update({frame.tobytes(): (i, t + 1, b) for t, frame in enumerate(f)})

    def sample_z(self, n, device=None, generator=None, classes=None):
        if classes is None:
            classes = torch.randint(self.z_classes, (n,), generator=generator)
        return F.one_hot(classes, self.z_classes).float()

    def forward(self, x, z=None):
        out = []
        for j, last in enumerate(to_pixels(x[:, -1])):
            i, t, b = self.known[last.tobytes()]
            if b is None:
                b = self.policy(None if z is None else z[j], i)
            if b == "freeze":
                frame = last
            elif b == "blend":
                frame = np.mean([f[t] for f in self.futures[i]], axis=0).round().astype(np.uint8)
            else:
                frame = self.futures[i][b][t]
            self.known.setdefault(frame.tobytes(), (i, t + 1, b))
            out.append(frame)
        return to_model(np.stack(out))


def coin(z, i):
    return int(z.argmax())


def flip_per_context(z, i):
    """Class c draws branch c on even contexts and the other branch on odd ones."""
    return int(z.argmax()) ^ (i % 2)


@pytest.fixture(scope="module")
def episodes():
    return {name: fork.fork_contexts(game.GAMES[name], 6, K, seed=99) for name in ("default", "three_way")}


@pytest.mark.parametrize("policy, classes, expect", [
    (lambda z, i: 0, 0, {"sharp_rate": 1.0, "branch_share": {"left": 1.0, "right": 0.0}}),
    (lambda z, i: 1, 0, {"sharp_rate": 1.0, "branch_share": {"left": 0.0, "right": 1.0}}),
    (lambda z, i: "blend", 0, {"split_rate": 1.0, "branch_share": {"left": None, "right": None}}),
    (lambda z, i: "freeze", 0, {"blurred_rate": 1.0}),
    (coin, 2, {"sharp_rate": 1.0}),
], ids=["always-left", "always-right", "blend", "freeze", "coin"])
def test_scorer_end_to_end_on_known_generators(episodes, policy, classes, expect):
    eps = episodes["default"]
    r = fork.score_model(Oracle(eps, policy, classes), K, eps, samples=16, horizon=3, seed=5)
    for key, value in expect.items():
        assert r[key] == value, key
    samples = 16 if classes else 1
    assert r["frames"] == len(eps) * samples * 3 and r["samples_per_context"] == samples
    assert len(r["per_context"]) == len(eps) and len(r["per_step"]) == 3
    if classes == 0:
        assert "per_class" not in r
        assert r["contexts_reaching_every_branch"] == 0
        return
    # Uniform random class draws (not a fixed list): the share follows the draws ...
    draws = r["class_draws"]
    assert sum(draws) == len(eps) * 16 and draws != [len(eps) * 8] * 2
    assert r["branch_share"]["left"] == pytest.approx(draws[0] / sum(draws))
    assert 0.3 < r["branch_share"]["left"] < 0.7
    # ... per class each class keeps to one branch, and every context reaches both
    assert [c["branch_share"] for c in r["per_class"]] == [{"left": 1.0, "right": 0.0},
                                                           {"left": 0.0, "right": 1.0}]
    assert all(c["sharp_rate"] == 1.0 for c in r["per_class"])
    assert r["contexts_reaching_every_branch"] == len(eps)
    other = fork.score_model(Oracle(eps, policy, classes), K, eps, samples=16, horizon=3, seed=6)
    assert other["class_draws"] != draws


def test_per_class_share_exposes_a_class_that_does_not_keep_its_branch(episodes):
    eps = episodes["default"]
    r = fork.score_model(Oracle(eps, flip_per_context, 2), K, eps, samples=16, horizon=2, seed=5)
    assert r["sharp_rate"] == 1.0 and 0.3 < r["branch_share"]["left"] < 0.7  # looks like a fair coin
    for c, per_class in enumerate(r["per_class"]):
        assert per_class["branch_share"] == {"left": 0.5, "right": 0.5}  # but no class keeps a side
        for i, ctx in enumerate(per_class["per_context"]):  # per context it does, flipped
            assert ctx["branch_share"]["left"] == (1.0 if c ^ (i % 2) == 0 else 0.0)


def test_three_way_fork_with_two_classes_never_reaches_the_third_branch(episodes):
    eps = episodes["three_way"]
    three = fork.score_model(Oracle(eps, coin, 3), K, eps, samples=12, horizon=3, seed=1)
    assert three["sharp_rate"] == 1.0 and three["contexts_reaching_every_branch"] == len(eps)
    assert [max(c["branch_share"], key=c["branch_share"].get) for c in three["per_class"]] == ["left", "up", "right"]
    two = fork.score_model(Oracle(eps, coin, 2), K, eps, samples=12, horizon=3, seed=1)
    assert two["sharp_rate"] == 1.0 and two["branch_share"]["right"] == 0.0
    assert two["contexts_reaching_every_branch"] == 0
    blend = fork.score_model(Oracle(eps, lambda z, i: "blend"), K, eps, samples=1, horizon=3, seed=1)
    assert blend["split_rate"] == 1.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return game.build_sample_store(tmp_path_factory.mktemp("fork") / "sample", n_episodes=30, seed=0)


def test_fresh_contexts_are_proven_and_training_contexts_refused(store):
    g = game.GAMES["default"]
    fresh = fork.contexts_of(fork.fork_contexts(g, 5, K, seed=1234), K)
    r = fork.check_fresh(fresh, store, K)
    assert r["episodes"] == 30 and r["training_contexts"] > 30 * 4
    assert min(r["nearest_store_window"]) > fork.CODEC_TOLERANCE
    train = list(game.episodes(30, seed=0, game=g))
    with pytest.raises(fork.NotFresh, match=r"contexts \[1\] occur in the training episodes"):
        fork.check_fresh([fresh[0], train[7].frames[2:2 + K], fresh[1]], store, K)  # any window, not only forks
    # a context off by a little noise is not the same pixels, but within codec error of the store
    near = np.clip(train[3].frames[:K].astype(int) + np.random.default_rng(0).integers(-1, 2, (K, 64, 64, 3)),
                   0, 255).astype(np.uint8)
    with pytest.raises(fork.NotFresh, match="within codec error"):
        fork.check_fresh([near], store, K)


def test_freshness_cannot_be_claimed_for_a_store_that_is_not_its_record(store, tmp_path):
    fresh = fork.contexts_of(fork.fork_contexts(game.GAMES["default"], 2, K, seed=1234), K)
    record = json.loads(game.record_path(store).read_text())
    fake = tmp_path / "sample"
    fake.symlink_to(store)
    game.record_path(fake).write_text(json.dumps({**record, "seed": 1}))
    with pytest.raises(fork.NotFresh, match="segment|episodes of its record"):
        fork.check_fresh(fresh, fake, K)
    game.record_path(fake).unlink()
    with pytest.raises(fork.NotFresh, match="no record"):
        fork.check_fresh(fresh, fake, K)
    with pytest.raises(fork.NotFresh, match="not this 'y' game"):
        fork.ensure_game_store(store, game.GAMES["y"], 30)


def test_pipeline_end_to_end(tmp_path, capsys):
    tiny = ["train.steps=4", "train.batch_size=4", "model.width=8", "model.depth=2", "model.d_width=8",
            "model.d_depth=2", "train.sample_every=4", "train.val_batches=1", "train.video_frames=2"]
    out = tmp_path / "fork"
    # One class per branch for the GAN; the L1 baseline must stay noise-free (not a 3-class WTA model).
    per_game = ["model.z_classes=3", "loss.variety_k=3"]
    assert fork.main(["--game", "three_way", "--data", str(tmp_path / "three"), "--episodes", "16",
                      "--out", str(out), "--contexts", "2", "--samples", "4", "--horizon", "2", *tiny, *per_game]) == 0
    res = json.loads((out / "fork.json").read_text())
    assert res["game"] == "three_way" and res["branches"] == ["left", "up", "right"]
    models = res["models"]
    assert set(models) == {"gan", "regression"}
    assert models["regression"]["samples_per_context"] == 1 and models["gan"]["samples_per_context"] == 4
    assert len(models["gan"]["per_class"]) == models["gan"]["z_classes"] == 3
    assert sum(models["gan"]["class_draws"]) == 2 * 4
    reg_cfg = (out / "fork_regression" / "config.yaml").read_text()
    assert "z_classes: 0" in reg_cfg and "variety_k: 1" in reg_cfg and "adv_weight: 0.0" in reg_cfg
    for r in models.values():
        assert r["frames"] == r["contexts"] * r["samples_per_context"] * 2
        assert r["fresh"]["episodes"] == 16 and r["fresh"]["game"] == "three_way"
        assert min(r["fresh"]["nearest_store_window"]) > fork.CODEC_TOLERANCE
        sharp_step1 = sum(sum(c["step1_branch_counts"].values()) for c in r["per_context"])
        assert sharp_step1 == round(r["per_step"][0]["sharp"] * r["contexts"] * r["samples_per_context"])
    assert (out / "fork.gif").read_bytes()[:6] == b"GIF89a"
    text = capsys.readouterr().out
    assert "fork game 'three_way': 3 branches" in text and "class 2" in text
    assert "note: model.z_classes=3 loss.variety_k=3 set up the GAN only" in text
    assert game.read_record(tmp_path / "three")["game"]["name"] == "three_way"


@pytest.mark.parametrize("argv", [["--samples", "0"], ["--game", "nope"], ["--horizon", "9"],
                                  ["data.root=x"], ["--contexts", "x"], ["--episodes", "1.5"], ["--seed"],
                                  ["--no-such-option"]])
def test_bad_arguments(capsys, argv):
    assert fork.main(argv) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert not out and "usage:" not in err


def test_fork_gif_shows_each_model_with_its_own_context(tmp_path, monkeypatch):
    """The regression column comes from its own episode and K, not from the GAN's."""
    from framegan import summaries

    g = game.GAMES["default"]
    reg_ep, gan_ep = fork.fork_contexts(g, 2, 4, seed=7)
    assert reg_ep.frames[reg_ep.fork].tobytes() != gan_ep.frames[gan_ep.fork].tobytes()
    T, H = 2, reg_ep.frames.shape[1]
    reg = np.full((1, T, H, H, 3), 10, np.uint8)
    gan = np.full((6, T, H, H, 3), 200, np.uint8)
    shown = []
    monkeypatch.setattr(summaries, "gif_bytes", lambda frames, fps: shown.append(frames) or b"GIF89a")
    fork.fork_gif(tmp_path / "f.gif", (reg_ep, 2, reg), (gan_ep, 4, gan), upscale=1)
    frames = shown[0]
    assert len(frames) == 4 + T and (tmp_path / "f.gif").read_bytes() == b"GIF89a"
    column = H + 2  # tile's gutter: pad=2
    assert frames.shape[2] == 5 * column  # regression + 4 of the 6 GAN samples

    def panel(t, c):
        return frames[t, :H, c * column:c * column + H]

    assert not panel(0, 0).any() and not panel(1, 0).any()  # K=2: black before its context
    for t in range(4):
        assert np.array_equal(panel(t, 1), gan_ep.frames[gan_ep.fork - 3 + t])
    for t in (2, 3):
        assert np.array_equal(panel(t, 0), reg_ep.frames[reg_ep.fork - 3 + t])
    assert (panel(4, 0) == 10).all() and (panel(5, 4) == 200).all()
