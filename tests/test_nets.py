"""Generator and discriminator: shapes, z, gradient flow, trainability, size."""
import itertools

import pytest
import torch
import torch.nn.functional as F

from framegan import losses as L
from framegan.config import ModelConfig, load_config
from framegan.nets import build_discriminator, build_generator, count_params

MODES = ("concat", "add", "modulate")
OUTPUTS = ("direct", "residual", "composite")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These nets are too small to gain from a second thread, and on a busy shared CPU two
    OpenMP threads waiting on each other made this file ~8x slower (206 s vs 25 s measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(**kw) -> ModelConfig:
    """A tiny config so each test runs in well under a second on a CPU."""
    base = {"width": 8, "depth": 3, "z_dim": 4, "z_classes": 0, "d_width": 8, "d_depth": 3, "d_patch": 8, "d_layers": 1,
            "d_heads": 2}
    return ModelConfig(**{**base, **kw})


def frames(*shape, seed=0):
    """Smooth random frames in [-1, 1] (upsampled noise: closer to video than white noise)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(*shape[:-2], shape[-2] // 4, shape[-1] // 4, generator=g) * 2 - 1
    flat = low.reshape(-1, *low.shape[-3:])
    return F.interpolate(flat, size=shape[-2:], mode="bilinear").reshape(shape)


@pytest.mark.parametrize("size,k", list(itertools.product((64, 128), (1, 2, 4))))
def test_generator_shapes_every_mode(size, k):
    x = frames(2, k, 3, size, size)
    for mode, output in itertools.product(MODES, OUTPUTS):
        G = build_generator(small(z_inject=mode, output=output), k)
        y = G(x, G.sample_z(2))
        assert y.shape == (2, 3, size, size), (mode, output)
        assert y.dtype == torch.float32 and y.abs().max() <= 1.0 and torch.isfinite(y).all()
        assert G.context == k and G.z_dim == 4


@pytest.mark.parametrize("backbone,size,k", list(itertools.product(("cnn", "transformer"), (64, 128), (1, 2, 4))))
def test_discriminator_shapes(backbone, size, k):
    D = build_discriminator(small(d_backbone=backbone), k)
    logits = D(frames(2, k, 3, size, size), frames(2, 3, size, size, seed=1))
    assert logits.shape == (2, 1, size // 8, size // 8)  # d_depth 3 and d_patch 8: both /8
    assert torch.isfinite(logits).all() and D.context == k


def test_motion_discriminator_sees_the_candidate_minus_the_last_context_frame():
    # model.d_motion stacks (candidate - last context frame) after the context and the candidate.
    # With every other input channel's weights zeroed, D sees only that difference: a brightness
    # shift of the whole window leaves it (and the logits) unchanged, a shift of the candidate alone
    # does not.
    D = build_discriminator(small(d_motion=True, d_spectral_norm=False), 2)
    first = D.net.net[0].weight
    assert first.shape[1] == 4 * 3  # 2 context frames + candidate + difference, 3 channels each
    with torch.no_grad():
        first[:, :9] = 0
    ctx, frame = frames(2, 2, 3, 64, 64), frames(2, 3, 64, 64, seed=1)
    with torch.no_grad():
        base = D(ctx, frame)
        assert torch.allclose(D(ctx + 0.1, frame + 0.1), base, atol=1e-5)
        assert not torch.allclose(D(ctx, frame + 0.1), base, atol=1e-3)
    with pytest.raises(ValueError, match="d_motion needs model.d_backbone=cnn"):
        load_config(overrides=["model.d_motion=true", "model.d_backbone=transformer"])


def test_d_key_planes_equal_the_conv_of_tiled_one_hot_keys():
    """D's first conv takes the keys as input planes; computed per key on one plane instead of
    tiled over every row, the logits and gradients are those of the tiled planes."""
    from einops import repeat

    D = build_discriminator(small(actions=3, action_history=2, d_spectral_norm=False), 2)
    ctx, frame = frames(3, 2, 3, 32, 48), frames(3, 3, 32, 48, seed=1)
    a = torch.tensor([[0, 2], [1, 1], [2, 0]])
    keys = F.one_hot(a, 3).flatten(1).float()
    fast, _ = D.net(ctx, frame, keys)
    tiled = repeat(keys, "b k -> b k h w", h=32, w=48)
    plain = D.net.head(D.net.net(torch.cat([ctx.flatten(1, 2), frame, tiled], dim=1)))
    assert torch.allclose(fast, plain, atol=1e-5)
    g_fast = torch.autograd.grad(fast.sum(), D.net.net[0].weight)[0]
    plain = D.net.head(D.net.net(torch.cat([ctx.flatten(1, 2), frame, tiled], dim=1)))
    g_plain = torch.autograd.grad(plain.sum(), D.net.net[0].weight)[0]
    assert torch.allclose(g_fast, g_plain, atol=1e-4)
    other, _ = D.net(ctx, frame, F.one_hot(a.flip(0), 3).flatten(1).float())
    assert not torch.allclose(other, fast, atol=1e-4)  # the keys count


def _stacked_patch_cnn(net, context, frame, keys=None, pair=None):
    """PatchCNN's plain formula: one conv over each pair's stacked channels (context, candidate,
    candidate - last context frame with d_motion, the keys tiled over the frame)."""
    from einops import repeat

    parts = [context.flatten(1, 2), frame] + [frame - context[:, -1]] * net.motion
    if keys is not None:
        parts.append(repeat(keys, "b k -> b k h w", h=frame.shape[-2], w=frame.shape[-1]))
    h = net.net(torch.cat(parts, dim=1))
    return net.head(h), h.permute(0, 2, 3, 1)


@pytest.mark.parametrize("backbone,motion,actions", [("cnn", False, 0), ("cnn", False, 3), ("cnn", True, 3),
                                                    ("transformer", False, 3)])
def test_d_pairs_equal_the_repeated_contexts_in_values_and_gradients(backbone, motion, actions, monkeypatch):
    """``D(ctx, frames, a, pair=rows)`` judges frame n under context ``rows[n]``, the context's share
    of the first conv computed once per context (and, for d_motion, the difference channels folded
    into both shares): the logits and every gradient are those of the plain formula on
    ``ctx[rows]`` (the CNN's stacked-channel conv; the transformer takes ``ctx[rows]`` itself)."""
    from framegan.nets.discriminator import PatchCNN

    D = build_discriminator(small(d_backbone=backbone, d_motion=motion, actions=actions,
                                  action_history=2 if actions else 1, d_spectral_norm=False), 2)
    ctx, frame = frames(3, 2, 3, 32, 48), frames(5, 3, 32, 48, seed=1).requires_grad_(True)
    rows = torch.tensor([0, 2, 1, 0, 2])
    a = torch.tensor([[0, 2], [1, 1], [2, 0], [1, 0], [0, 0]]) if actions else None
    params = list(D.parameters())

    def logits_and_grads(**kw):
        out = D(ctx[rows] if "pair" not in kw else ctx, frame, a, **kw)
        return out, torch.autograd.grad((out * out).sum(), [frame, *params], allow_unused=True)

    fast, g_fast = logits_and_grads(pair=rows)
    with monkeypatch.context() as m:
        if backbone == "cnn":
            m.setattr(PatchCNN, "forward", _stacked_patch_cnn)
        plain, g_plain = logits_and_grads()
    assert fast.shape == (5, 1, 4, 6) and torch.allclose(fast, plain, atol=1e-5)
    for gf, gp in zip(g_fast, g_plain):
        assert (gf is None) == (gp is None) and (gf is None or torch.allclose(gf, gp, atol=1e-4))
    assert not torch.allclose(D(ctx, frame, a, pair=rows.roll(1)), fast, atol=1e-4)  # the pairing counts
    with pytest.raises(ValueError, match="pair must name one of the 3 contexts per frame"):
        D(ctx, frame, a, pair=rows[:4])
    with pytest.raises(ValueError, match="D was built for"):
        D(ctx, frame, a)  # 3 contexts for 5 frames needs a pair


@pytest.mark.parametrize("h,w", [(160, 208), (208, 160)])
def test_atari_sized_non_square_frames_run_through_default_nets(h, w):
    x, frame = frames(1, 4, 3, h, w), frames(1, 3, h, w, seed=1)
    G = build_generator(ModelConfig(), 4)
    assert G(x, G.sample_z(1)).shape == (1, 3, h, w)
    for backbone in ("cnn", "transformer"):
        D = build_discriminator(ModelConfig(d_backbone=backbone), 4)
        assert D(x, frame).shape == (1, 1, h // 8, w // 8)


def test_bad_inputs_raise_clear_errors():
    G, D = build_generator(small(), 2), build_discriminator(small(), 2)
    x = frames(1, 2, 3, 64, 64)
    with pytest.raises(ValueError, match="divisible by 8"):
        G(frames(1, 2, 3, 60, 64), G.sample_z(1))
    with pytest.raises(ValueError, match="K=2"):
        G(frames(1, 3, 3, 64, 64), G.sample_z(1))
    with pytest.raises(ValueError, match="z of shape"):
        G(x)
    with pytest.raises(ValueError, match="K=2"):
        D(frames(1, 1, 3, 64, 64), x[:, 0])
    with pytest.raises(ValueError, match="divisible"):
        build_discriminator(small(d_backbone="transformer", d_patch=6), 2)(x, x[:, 0])


@pytest.mark.parametrize("mode", MODES)
def test_z_changes_the_output_and_same_z_repeats_it(mode):
    for output in OUTPUTS:
        G = build_generator(small(z_inject=mode, output=output), 2)
        x, z1, z2 = frames(2, 2, 3, 32, 32), G.sample_z(2), G.sample_z(2)
        assert torch.equal(G(x, z1), G(x, z1))
        assert (G(x, z1) - G(x, z2)).abs().mean() > 1e-3, (mode, output)


def test_z_dim_zero_is_deterministic():
    G = build_generator(small(z_dim=0), 2)
    x = frames(3, 2, 3, 32, 32)
    z = G.sample_z(3)
    assert z.shape == (3, 0)
    y = G(x)
    assert torch.equal(y, G(x, z)) and torch.equal(y, G(x))
    # No batch statistics: train and eval modes agree (to float rounding: training mode computes
    # the decoder per output phase, blocks.upsample_conv; eval mode as written)
    assert torch.allclose(y, G.eval()(x), atol=1e-5)


def test_sample_z_distributions_and_seeding():
    gauss = build_generator(small(z_dim=16, z_dist="gaussian"), 1)
    unif = build_generator(small(z_dim=16, z_dist="uniform"), 1)
    zg = gauss.sample_z(4000, generator=torch.Generator().manual_seed(0))
    zu = unif.sample_z(4000, generator=torch.Generator().manual_seed(0))
    assert zg.shape == zu.shape == (4000, 16)
    assert abs(zg.std().item() - 1.0) < 0.02 and zg.abs().max() > 3
    assert zu.min() >= -1 and zu.max() <= 1 and abs(zu.std().item() - 3**-0.5) < 0.02
    again = gauss.sample_z(4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(zg, again)


def test_discrete_classes_are_one_hot_uniform_and_can_be_chosen():
    G = build_generator(small(z_dim=3, z_classes=4), 1)
    assert G.z_dim == 7
    z = G.sample_z(4000, generator=torch.Generator().manual_seed(0))
    onehot = z[:, 3:]
    assert z.shape == (4000, 7) and torch.equal(onehot.sum(1), torch.ones(4000))
    assert set(onehot.unique().tolist()) == {0.0, 1.0}
    share = onehot.mean(0)
    assert (share - 0.25).abs().max() < 0.03, share      # uniform over the 4 classes
    assert abs(z[:, :3].std().item() - 1.0) < 0.05         # the continuous part is untouched
    chosen = G.sample_z(6, classes=torch.tensor([0, 1, 2, 3, 0, 1]))
    assert torch.equal(chosen[:, 3:].argmax(1), torch.tensor([0, 1, 2, 3, 0, 1]))
    x = frames(6, 1, 3, 32, 32)
    assert G(x, chosen).shape == (6, 3, 32, 32)
    # Only discrete noise: the class alone picks the future.
    Gd = build_generator(small(z_dim=0, z_classes=2), 1)
    za = Gd.sample_z(6, classes=torch.zeros(6, dtype=torch.long))
    zb = Gd.sample_z(6, classes=torch.ones(6, dtype=torch.long))
    assert za.shape == (6, 2) and torch.equal(Gd(x, za), Gd(x, za)) and not torch.equal(Gd(x, za), Gd(x, zb))


def test_batch_members_do_not_interact():
    G = build_generator(small(), 2)
    x, z = frames(4, 2, 3, 32, 32), G.sample_z(4)
    assert torch.allclose(G(x, z)[:1], G(x[:1], z[:1]), atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_repeats_draw_k_samples_from_one_encoding_with_the_same_values_and_gradients(mode):
    """G(x, z, a, repeats=k) on B contexts must equal G on the k-times repeated contexts (rows
    sample-major), outputs and parameter gradients, so best-of-k training can encode once."""
    from einops import repeat

    cfg = small(z_inject=mode, z_dim=2, z_classes=2, actions=3, action_history=2)
    torch.manual_seed(0)
    G = build_generator(cfg, 2)
    x, k = frames(3, 2, 3, 32, 32), 3
    z, a = G.sample_z(k * 3), torch.randint(0, 3, (k * 3, 2))
    grads, outs = [], []
    for args in ((x, z, a, k), (repeat(x, "b t c h w -> (s b) t c h w", s=k), z, a, 1)):
        G.zero_grad()
        y = G(*args[:3], repeats=args[3])
        (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum().backward()
        outs.append(y.detach())
        grads.append(torch.cat([p.grad.flatten() for p in G.parameters()]))
    assert outs[0].shape == (k * 3, 3, 32, 32)
    assert torch.allclose(outs[0], outs[1], atol=1e-5) and torch.allclose(grads[0], grads[1], atol=1e-4)
    assert not torch.allclose(outs[0][:3], outs[0][3:6])  # the draws differ
    with torch.no_grad():  # eval mode (G_ema) computes the decoder as written: the same frames
        assert torch.allclose(G.eval()(x, z, a, repeats=k), outs[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"z of shape \(9, 4\)"):
        G(x, z[:3], a, repeats=k)  # z must hold k rows per context


@pytest.mark.parametrize("rows,cols,k", [(8, 8, 1), (4, 6, 3)])
def test_upsample_conv_equals_upsample_concat_conv_in_values_and_gradients(rows, cols, k):
    """G's decoder levels compute conv3x3(cat[upsample2x(h), skip]) per output phase at low
    resolution, with the skip's part once per context: the same function, also at the borders
    (zero padding) and for non-square maps, with the same gradients for h, skip and the weight."""
    from einops import repeat

    from framegan.nets.blocks import upsample_concat_conv, upsample_conv

    h = torch.randn(k * 2, 5, rows, cols, requires_grad=True)
    skip = torch.randn(2, 3, 2 * rows, 2 * cols, requires_grad=True)
    conv = torch.nn.Conv2d(8, 4, 3, padding=1, bias=False)
    weight = conv.weight
    plain = F.conv2d(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"),
                                repeat(skip, "b ... -> (s b) ...", s=k)], dim=1), weight, padding=1)
    assert torch.equal(upsample_concat_conv(h, skip, conv, repeats=k), plain)  # G_ema's path: as written
    fast = upsample_conv(h, skip, weight, repeats=k)
    assert fast.shape == plain.shape == (k * 2, 4, 2 * rows, 2 * cols)
    assert torch.allclose(fast, plain, atol=1e-4, rtol=1e-5)
    probe = torch.randn_like(plain)
    g_plain = torch.autograd.grad((plain * probe).sum(), (h, skip, weight))
    g_fast = torch.autograd.grad((fast * probe).sum(), (h, skip, weight))
    for a, b in zip(g_fast, g_plain):
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("output", ("residual", "composite"))
def test_untrained_generator_starts_near_copy_last(output):
    G = build_generator(small(output=output), 2)
    x = frames(2, 2, 3, 64, 64)
    off = (G(x, G.sample_z(2)) - x[:, -1]).abs().mean()
    assert off < 0.15 * x[:, -1].abs().mean()  # a blank (zero) frame would be off by all of it


def test_residual_generator_can_light_up_black_pixels():
    G = build_generator(small(output="residual"), 2)
    black = -torch.ones(2, 2, 3, 64, 64)  # saturated background: a hard clamp would block this
    out = G(black, G.sample_z(2))
    L.l1(out, torch.ones_like(out)).backward()
    assert G.head.bias.grad is not None and (G.head.bias.grad < -1e-3).all()  # raise the output


def test_composite_generator_erases_a_bright_pixel_where_the_residual_one_barely_can():
    """Why composite is the default: erasing a saturated sprite pixel (last = +1, truth -1). The
    residual head's gradient there is 1 - 0.99**2 = 0.02, which left trails behind sprites."""
    x, grads = torch.ones(2, 2, 3, 32, 32), {}
    for output in ("residual", "composite"):
        torch.manual_seed(0)
        G = build_generator(small(output=output), 2)
        out = G(x, G.sample_z(2))
        L.l1(out, -torch.ones_like(out)).backward()
        grads[output] = G.stem.conv.weight.grad.norm()  # what reaches the first layer
        if output == "composite":
            paint, mask = G.head.bias.grad[:3], G.head.bias.grad[3]
            assert (paint > 0).all() and mask < 0  # descent paints darker, and more of the frame
    assert grads["composite"] > 10 * grads["residual"], grads


def test_composite_copies_a_pixel_from_the_older_frame_its_mask_picks():
    """model.copy_frames n: each pixel is a softmax mix of the paint and the n newest context
    frames. A mask that picks one frame copies it exactly; n = 1 is the plain composite."""
    torch.manual_seed(0)
    x = frames(2, 4, 3, 32, 32)
    G = build_generator(small(copy_frames=3), 4)
    assert G.head.out_channels == 3 + 3  # paint, then the logits of paint and of the two older frames
    with torch.no_grad():
        G.head.weight.zero_()
        G.head.bias.zero_()
        G.head.bias[5] = 50.0  # the third mask logit: the frame two before the last
    assert torch.allclose(G(x, G.sample_z(2)), x[:, 1], atol=1e-5)  # 4 frames: -3 is index 1
    with torch.no_grad():
        G.head.bias[5] = 0.0
    y = G(x, G.sample_z(2))  # no preference: mostly the last frame, a little of the others
    assert (y - x[:, -1]).abs().mean() < 0.15 * (x[:, 1] - x[:, -1]).abs().mean()

    assert build_generator(small(), 4).copy_frames == 4  # the default, -1: every context frame
    one = build_generator(small(copy_frames=1), 4)
    assert one.head.out_channels == 4 and one.copy_frames == 1
    with torch.no_grad():
        one.head.weight.zero_()
        one.head.bias.copy_(torch.tensor([0.5, -0.5, 0.0, 1.0]))
    paint, mask = torch.tanh(torch.tensor([0.5, -0.5, 0.0])), torch.sigmoid(torch.tensor(1.0 - 2.0))
    want = x[:, -1] + mask * (paint.reshape(1, 3, 1, 1) - x[:, -1])
    assert torch.allclose(one(x, one.sample_z(2)), want, atol=1e-6)


@pytest.mark.parametrize("mode,backbone", list(itertools.product(MODES, ("cnn", "transformer"))))
def test_g_phase_gradient_reaches_every_g_parameter_and_no_d_parameter(mode, backbone):
    G = build_generator(small(z_inject=mode), 2)
    D = build_discriminator(small(d_backbone=backbone), 2)
    D.requires_grad_(False)  # "freeze D, train G"
    x = frames(2, 2, 3, 32, 32)
    L.g_adversarial(D(x, G(x, G.sample_z(2))), "hinge").backward()
    for name, p in G.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no adversarial gradient reaches G.{name}"
    assert all(p.grad is None for p in D.parameters())


@pytest.mark.parametrize("backbone", ("cnn", "transformer"))
def test_r1_double_backward_through_both_discriminators(backbone):
    D = build_discriminator(small(d_backbone=backbone), 2)
    ctx = frames(2, 2, 3, 32, 32).requires_grad_(True)
    frame = frames(2, 3, 32, 32, seed=1).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        r1 = L.r1_penalty(D(ctx, frame), [ctx, frame])
    assert r1.item() > 0
    r1.backward()  # needs a double backward through every layer (attention included)
    weights = [p for name, p in D.named_parameters() if "weight" in name or "original" in name]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in weights)


@pytest.mark.parametrize("mode", MODES)
def test_diversity_loss_trains_g_to_use_z(mode):
    torch.manual_seed(0)
    G = build_generator(small(z_inject=mode, z_dim=8, depth=2), 2)
    x, target = frames(4, 2, 3, 16, 16), frames(4, 3, 16, 16, seed=1)

    def gap():  # mean |G(x, z1) - G(x, z2)| for two fresh noise draws
        with torch.no_grad():
            g = torch.Generator().manual_seed(5)
            return (G(x, G.sample_z(4, generator=g)) - G(x, G.sample_z(4, generator=g))).abs().mean().item()

    before = gap()
    opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    for _ in range(40):
        z1, z2 = G.sample_z(4), G.sample_z(4)
        o1, o2 = G(x, z1), G(x, z2)
        loss = L.l1(o1, target) + L.l1(o2, target) + L.diversity(o1, o2, z1, z2, cap=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = gap()
    # A G that ignored z would give a gap of exactly 0 here, whatever it learned.
    assert after > 0.08 and after > 5 * before, (before, after)


@pytest.mark.parametrize("backbone", ("cnn", "transformer"))
def test_discriminator_learns_to_reject_shuffled_and_noise_frames(backbone):
    """Static scenes: the real next frame equals the context, so only a D that compares the
    candidate with its own context can tell a real frame from another sample's real frame."""
    torch.manual_seed(0)
    D = build_discriminator(small(d_backbone=backbone, d_depth=2, d_patch=4), 2)
    opt = torch.optim.Adam(D.parameters(), lr=2e-3, betas=(0.5, 0.999))

    def batch(seed):
        scene = frames(16, 3, 16, 16, seed=seed)
        noise = torch.rand(16, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1
        return torch.stack([scene, scene], 1), scene, torch.roll(scene, 1, 0), noise

    for step in range(150):
        ctx, real, shuffled, noise = batch(step)
        loss = L.d_real_loss(D(ctx, real), "hinge") + 0.5 * (
            L.d_fake_loss(D(ctx, shuffled), "hinge") + L.d_fake_loss(D(ctx, noise), "hinge"))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        ctx, real, shuffled, noise = batch(10_000)  # unseen scenes
        r, s, n = (D(ctx, f).mean().item() for f in (real, shuffled, noise))
    assert r > s + 0.5 and r > n + 0.5, (r, s, n)


def test_nets_run_under_bf16_autocast_and_channels_last():
    for backbone in ("cnn", "transformer"):
        cfg = small(d_backbone=backbone)
        G = build_generator(cfg, 2).to(memory_format=torch.channels_last)
        D = build_discriminator(cfg, 2).to(memory_format=torch.channels_last)
        x, z = frames(2, 2, 3, 64, 64), G.sample_z(2)
        ref = G(x, z)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = G(x, z)
            logits = D(x, y)
        assert y.dtype == logits.dtype == torch.float32 and y.shape == ref.shape
        assert (y - ref).abs().max() < 0.1  # bf16 rounding, not a different function
        L.g_adversarial(logits, "hinge").backward()
        assert all(p.grad is not None for p in G.parameters())


def test_count_params_counts_each_trainable_weight_once():
    """Spectral norm keeps its weight as ``parametrizations.weight.original`` plus u/v buffers:
    the original counts once, the buffers and frozen weights not at all. (The README's model
    sizes come from this count; tests/test_readme.py checks the default G's.)"""
    from torch.nn.utils.parametrizations import spectral_norm

    sn = spectral_norm(torch.nn.Conv2d(3, 4, 3))
    frozen = torch.nn.Linear(5, 2).requires_grad_(False)
    assert count_params(torch.nn.Sequential(sn, frozen, torch.nn.Linear(2, 3))) == (4 * 3 * 9 + 4) + (2 * 3 + 3)
    with_sn, without = build_discriminator(small(), 2), build_discriminator(small(d_spectral_norm=False), 2)
    assert any(hasattr(m, "parametrizations") for m in with_sn.modules())  # D really is spectral-normed
    assert count_params(with_sn) == count_params(without) > 0
