"""Losses on hand-made inputs: signs, known values, zeros where the maths says zero."""
import math

import pytest
import torch

from framegan import losses as L
from framegan.config import AdvType


def t(*v):
    return torch.tensor(v, dtype=torch.float32)


def test_hinge_perfect_discriminator_is_zero_and_imperfect_is_positive():
    assert L.d_adversarial(t(1.0, 3.0), t(-1.0, -5.0), "hinge").item() == 0.0
    assert L.d_real_loss(t(0.5), "hinge").item() == pytest.approx(0.5)
    assert L.d_fake_loss(t(0.5), "hinge").item() == pytest.approx(1.5)
    assert L.g_adversarial(t(2.0, -1.0), "hinge").item() == pytest.approx(-0.5)


def test_nonsaturating_known_values():
    log2 = math.log(2.0)
    assert L.d_adversarial(t(0.0), t(0.0), "nonsaturating").item() == pytest.approx(2 * log2)
    assert L.g_adversarial(t(0.0), "nonsaturating").item() == pytest.approx(log2)
    # -log sigmoid(2) and -log(1 - sigmoid(-3))
    assert L.d_real_loss(t(2.0), "nonsaturating").item() == pytest.approx(math.log1p(math.exp(-2)))
    assert L.d_fake_loss(t(-3.0), "nonsaturating").item() == pytest.approx(math.log1p(math.exp(-3)))
    # a confident, correct D has a small loss; a fooled one a large loss
    assert L.d_adversarial(t(10.0), t(-10.0), "nonsaturating") < 1e-3
    assert L.d_adversarial(t(-10.0), t(10.0), "nonsaturating") > 19


def test_lsgan_known_values():
    assert L.d_adversarial(t(1.0), t(0.0), "lsgan").item() == 0.0
    assert L.d_real_loss(t(0.5, -1.0), "lsgan").item() == pytest.approx((0.25 + 4.0) / 2)
    assert L.d_fake_loss(t(2.0), "lsgan").item() == pytest.approx(4.0)
    assert L.g_adversarial(t(1.0), "lsgan").item() == 0.0
    assert L.g_adversarial(t(0.0), "lsgan").item() == pytest.approx(1.0)


def test_kind_accepts_enum_and_rejects_unknown():
    assert L.g_adversarial(t(1.0), AdvType.lsgan).item() == 0.0
    with pytest.raises(ValueError):
        L.g_adversarial(t(1.0), "wasserstein")


def test_g_loss_gradient_pushes_fake_logits_up_for_every_kind():
    for kind in ("hinge", "nonsaturating", "lsgan"):
        f = torch.zeros(4, requires_grad=True)
        L.g_adversarial(f, kind).backward()
        assert (f.grad < 0).all(), kind  # minimising raises the fake logits


def test_l1_l2_with_and_without_weight():
    pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
    assert L.l1(pred, target).item() == pytest.approx(2.5 / 4)
    assert L.l2(pred, target).item() == pytest.approx(2.25 / 4)
    w = torch.tensor([[[[2.0, 0.0], [1.0, 1.0]]]])
    assert L.l1(pred, target, w).item() == pytest.approx((2 + 0.5) / 4)
    assert L.l2(pred, target, torch.ones_like(w)).item() == pytest.approx(L.l2(pred, target).item())


def test_per_sample_l1_and_best_of_k():
    pred = torch.zeros(3, 2, 4, 4)
    target = torch.stack([torch.zeros(2, 4, 4), torch.ones(2, 4, 4), -0.5 * torch.ones(2, 4, 4)])
    assert L.per_sample_l1(pred, target).tolist() == pytest.approx([0.0, 1.0, 0.5])
    losses = t(3.0, 1.0, 2.0, 0.5, 4.0, 0.25).reshape(2, 3)  # k = 2 samples, B = 3 contexts
    assert L.best_of_k(losses).item() == pytest.approx((0.5 + 1.0 + 0.25) / 3)


def test_motion_weight_marks_changed_pixels_only():
    last = -torch.ones(1, 3, 2, 3)
    target = last.clone()
    target[0, 2, 0, 0] = 0.9    # big change in one channel only: counts
    target[0, :, 1, 2] += 0.04  # below the threshold: codec noise, does not count
    w = L.motion_weight(last, target, 20.0)
    assert w.shape == (1, 1, 2, 3)
    expected = torch.ones(1, 1, 2, 3)
    expected[0, 0, 0, 0] = 21.0
    assert torch.equal(w, expected)


def test_gdl_zero_for_identical_and_offset_images_positive_for_shifted():
    img = torch.zeros(2, 3, 8, 8)
    img[:, :, 2:5, 2:5] = 1.0
    assert L.gdl(img, img).item() == 0.0
    assert L.gdl(img + 0.3, img).item() == pytest.approx(0.0, abs=1e-6)  # same edges
    shifted = torch.roll(img, 2, dims=-1)
    assert L.gdl(shifted, img).item() > 0.05
    blurred = torch.nn.functional.avg_pool2d(img, 3, 1, 1)
    assert L.gdl(blurred, img, alpha=2.0).item() > 0


def test_r1_zero_for_input_independent_d_and_known_for_linear_d():
    ctx = torch.randn(4, 2, 3, 4, 4, requires_grad=True)
    frame = torch.randn(4, 3, 4, 4, requires_grad=True)
    bias = torch.tensor(0.7, requires_grad=True)
    flat = bias + 0 * (ctx.sum(dim=(1, 2, 3, 4)) + frame.sum(dim=(1, 2, 3)))
    assert L.r1_penalty(flat, [ctx, frame]).item() == 0.0

    w = torch.full((3, 4, 4), 0.5, requires_grad=True)
    logits = (frame * w).sum(dim=(1, 2, 3)) + 0 * ctx.sum(dim=(1, 2, 3, 4))
    r1 = L.r1_penalty(logits, [ctx, frame])
    assert r1.item() == pytest.approx(48 * 0.25)  # sum of w^2 for every sample
    r1.backward()  # create_graph=True: the penalty trains D's weights
    assert torch.allclose(w.grad, torch.full_like(w, 2 * 0.5))


def test_diversity_sign_cap_and_detached_denominator():
    out1 = torch.zeros(2, 3, 4, 4, requires_grad=True)
    out2 = torch.full((2, 3, 4, 4), 0.2)
    z1 = torch.zeros(2, 8, requires_grad=True)
    z2 = torch.ones(2, 8)
    loss = L.diversity(out1, out2, z1, z2, cap=1.0)
    assert loss.item() == pytest.approx(-0.2)
    loss.backward()
    assert z1.grad is None  # denominator carries no gradient
    assert (out1.grad > 0).all()  # lowering out1 (away from out2) lowers the loss
    assert L.diversity(out2, out2, z1, z2, cap=1.0).item() == 0.0
    far = torch.full((2, 3, 4, 4), -1.0)
    assert L.diversity(far, out2, z1, 0.1 * z2, cap=1.0).item() == pytest.approx(-1.0)  # capped


def test_patch_weight_marks_only_patches_where_something_moves():
    last = torch.full((2, 3, 64, 64), -1.0)
    frame = last.clone()
    frame[1, :, 10:16, 40:46] = 1.0  # a sprite appears in sample 1 only
    w = L.patch_weight(last, [frame], 20.0, (8, 8))
    assert w.shape == (2, 1, 8, 8)
    assert torch.all(w[0] == 1)
    assert set(w[1].unique().tolist()) == {1.0, 21.0}
    assert w[1, 0, 1, 5] == 21 and w[1, 0, 0, 0] == 1  # rows 10-15 -> patch 1, cols 40-45 -> patch 5


def test_weighted_adversarial_losses_reduce_to_plain_mean_with_uniform_weight():
    logits = torch.randn(3, 1, 4, 4)
    ones = torch.ones(3, 1, 4, 4)
    for kind in ("hinge", "nonsaturating", "lsgan"):
        assert torch.allclose(L.d_real_loss(logits, kind, ones), L.d_real_loss(logits, kind))
        assert torch.allclose(L.d_fake_loss(logits, kind, 2 * ones), L.d_fake_loss(logits, kind))
        assert torch.allclose(L.g_adversarial(logits, kind, ones), L.g_adversarial(logits, kind))
    # a weight concentrated on one patch makes the loss that patch's loss
    w = torch.zeros(3, 1, 4, 4)
    w[:, :, 2, 3] = 1
    assert torch.allclose(L.g_adversarial(logits, "hinge", w), -logits[:, :, 2, 3].mean())


def test_per_sample_l2_matches_l2_and_the_trainer_runs_with_it():
    pred, target = torch.rand(3, 3, 8, 8), torch.rand(3, 3, 8, 8)
    assert torch.allclose(L.per_sample_l2(pred, target).mean(), L.l2(pred, target))
    assert torch.allclose(L.per_sample_l2(pred, pred), torch.zeros(3))
    from framegan import engine
    from framegan.config import load_config
    from framegan.nets import build_discriminator, build_generator
    cfg = load_config(None, ["model.width=8", "model.depth=2", "model.d_width=8", "model.d_depth=2",
                             "loss.l2_weight=1", "loss.variety_k=2"])
    gan = engine.build_gan(cfg, build_generator(cfg.model, 4), build_discriminator(cfg.model, 4),
                           torch.device("cpu"), None)
    out = engine.g_step(gan, cfg, torch.rand(2, 5, 3, 32, 32) * 2 - 1, step=1)
    assert torch.isfinite(out["g_rec"]) and out["g_rec"] > 0


def test_relaxed_best_of_k_adds_a_small_pull_on_the_other_samples():
    per = torch.tensor([[1.0, 4.0], [3.0, 2.0]])  # (k=2, B=2)
    assert L.best_of_k(per).item() == pytest.approx(1.5)                 # min per column: 1, 2
    assert L.best_of_k(per, relax=0.1).item() == pytest.approx(1.85)     # + 0.1 * (3, 4)
    assert L.best_of_k(per[:1], relax=0.1).item() == pytest.approx(2.5)  # k = 1: plain mean
    first = torch.tensor([[0.5, 1.0], [2.0, 0.5]])  # the losers (row 1 col 0, row 0 col 1) pull on these
    assert L.best_of_k(per, relax=0.1, relax_losses=first).item() == pytest.approx((1 + 0.2 + 2 + 0.1) / 2)


def test_relax_weight_decays_to_zero_over_the_given_steps():
    from framegan import engine
    from framegan.config import load_config

    constant = load_config(None, ["loss.variety_relax=0.5", "loss.variety_relax_steps=0"])
    assert [engine.relax_weight(constant, s) for s in (0, 50, 5000)] == [0.5, 0.5, 0.5]
    evolving = load_config(None, ["loss.variety_relax=0.5", "loss.variety_relax_steps=80", "loss.variety_relax_end=0"])
    assert [engine.relax_weight(evolving, s) for s in (0, 40, 80, 5000)] == pytest.approx([0.5, 0.25, 0.0, 0.0])
    floored = load_config(None, ["loss.variety_relax=0.5", "loss.variety_relax_steps=80", "loss.variety_relax_end=0.1"])
    assert [engine.relax_weight(floored, s) for s in (0, 40, 80, 5000)] == pytest.approx([0.5, 0.3, 0.1, 0.1])


def test_agreement_mask_pulls_a_loser_only_where_it_agrees_with_the_winner():
    """A loser that draws the other branch is not pulled to erase it (nor to draw the winner's
    branch); where it draws what the winner draws, it is pulled to the truth as before."""
    from framegan import engine
    from framegan.config import load_config

    cfg = load_config(None, ["loss.variety_relax_agree=0.1", "loss.motion_weight=0"])
    target = torch.zeros(1, 3, 2, 2)
    winner = target.clone()
    winner[..., 0, 0] = 0.04            # close to the truth: it wins
    loser = winner.clone()
    loser[..., 0, 1] = 0.9              # the other branch: far from the winner, not pulled
    loser[..., 1, 1] = 0.08             # within 0.1 of the winner: pulled like the plain relax
    first = torch.cat([loser, winner])  # sample-major: s * B + b with B = 1, the loser first
    mask = engine.agreement_mask(first, torch.tensor([1]), 2, cfg.loss.variety_relax_agree)
    out = engine.reconstruction(cfg.loss, first, target.repeat(2, 1, 1, 1), mask)
    assert out.shape == (2,)
    assert out[0].item() == pytest.approx((0.04 + 0.08) / 4)  # pixels (0,0) and (1,1) of 4, every channel
    assert out[1].item() == pytest.approx(0.04 / 4)           # the winner agrees with itself everywhere


def test_g_step_masks_the_pull_only_for_classes_that_won_a_decisive_context():
    """The trainer's G phase: the truth of each context is one class's own frame, so that class
    wins it decisively. Both classes winning a context: the losers are pulled only where they
    agree with the winner, less than everywhere. Class 0 winning both: class 1 never won and is
    pulled everywhere after the relax decay (a class that never wins drifts where it is not
    pulled)."""
    from einops import rearrange

    from framegan import engine
    from framegan.config import load_config
    from framegan.nets import build_discriminator, build_generator

    def g_rec(agree, winner_classes, decay_steps=0):
        cfg = load_config(None, ["model.width=8", "model.depth=2", "model.d_width=8", "model.d_depth=2",
                                 "loss.adv_weight=0", f"loss.variety_relax_agree={agree}",
                                 f"loss.variety_relax_steps={decay_steps}", "loss.variety_relax=0.9",
                                 "loss.variety_relax_end=0.9"])
        torch.manual_seed(0)
        gan = engine.build_gan(cfg, build_generator(cfg.model, 4), build_discriminator(cfg.model, 4),
                               torch.device("cpu"), None)
        with torch.no_grad():  # classes far apart: a big class embedding
            for p in gan.G.parameters():
                p.mul_(3)
            ctx = torch.rand(2, 4, 3, 32, 32) * 2 - 1
            classes = torch.tensor(winner_classes)
            truth = gan.G(ctx, gan.G.sample_z(2, classes=classes), None)
        clip = torch.cat([ctx, rearrange(truth, "b c h w -> b 1 c h w")], dim=1)
        return engine.g_step(gan, cfg, clip, step=1)["g_rec"].item()

    assert g_rec(0.1, [0, 1]) < g_rec(0, [0, 1])
    assert g_rec(0.1, [0, 0]) == pytest.approx(g_rec(0, [0, 0]))
    # during the relax decay (step 1 of 800) every class is masked: the classes are still forming
    assert g_rec(0.1, [0, 0], decay_steps=800) < g_rec(0, [0, 0], decay_steps=800)
