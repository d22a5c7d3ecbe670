"""framegan.metrics against hand computations (frames are float in [-1, 1])."""
import math

import numpy as np
import pytest
import torch

from framegan import metrics as M


def _frames(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _ssim_reference(x: np.ndarray, y: np.ndarray, sigma=1.5, radius=5, k1=0.01, k2=0.03) -> float:
    """Wang et al. 2004 SSIM written out in numpy: Gaussian-weighted local statistics, reflect
    padding, mean of the SSIM map over channels and pixels. x, y: (C, H, W) in [0, 1]."""
    d = np.arange(-radius, radius + 1)
    g = np.exp(-(d / sigma) ** 2 / 2)
    w = np.outer(g, g) / np.outer(g, g).sum()

    def local_mean(a):  # Gaussian-weighted mean around every pixel
        p = np.pad(a, radius, mode="reflect")
        out = np.zeros_like(a)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                out[i, j] = (p[i:i + 2 * radius + 1, j:j + 2 * radius + 1] * w).sum()
        return out

    c1, c2 = k1 ** 2, k2 ** 2
    maps = []
    for a, b in zip(x.astype(np.float64), y.astype(np.float64)):
        ma, mb = local_mean(a), local_mean(b)
        va, vb = local_mean(a * a) - ma ** 2, local_mean(b * b) - mb ** 2
        cov = local_mean(a * b) - ma * mb
        maps.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(maps))


def test_ssim_matches_independent_reference():
    truth = _frames(3, 16, 16, seed=1)
    pred = (truth + 0.3 * _frames(3, 16, 16, seed=2)).clamp(-1, 1)
    want = _ssim_reference(M.unit(pred).numpy(), M.unit(truth).numpy())
    got = M.ssim(pred, truth).item()
    assert 0.2 < want < 0.99  # a non-trivial example, not the identity
    assert got == pytest.approx(want, abs=1e-5)
    assert M.ssim(truth, truth).item() == pytest.approx(1.0, abs=1e-6)


def test_psnr_known_values_and_inf():
    truth = _frames(2, 3, 3, 8, 8).clamp(-0.8, 0.8)
    shifted = truth + 0.2  # +0.1 on [0, 1] intensities: MSE 0.01 -> 20 dB exactly
    p = M.psnr(shifted, truth)
    assert p.shape == (2, 3)
    assert torch.allclose(p, torch.full((2, 3), 20.0), atol=1e-3)
    assert torch.isinf(M.psnr(truth, truth)).all() and (M.psnr(truth, truth) > 0).all()
    full = torch.ones(2, 3, 8, 8, dtype=torch.bool)
    assert torch.allclose(M.psnr(shifted, truth, full), p, atol=1e-4)  # mask path == torchmetrics


def test_masked_metrics_use_only_the_mask():
    truth = torch.zeros(1, 3, 16, 16)
    pred = truth.clone()
    pred[..., :8] = 0.4  # error only in the left half
    right = torch.zeros(1, 16, 16, dtype=torch.bool)
    right[..., 8:] = True
    assert torch.isinf(M.psnr(pred, truth, right)).all()
    assert math.isfinite(M.psnr(pred, truth).item())
    assert M.mse(pred, truth, ~right).item() == pytest.approx(0.04, abs=1e-6)  # (0.2)² on [0, 1]
    full = torch.ones(1, 16, 16, dtype=torch.bool)
    assert M.ssim(pred, truth, full).item() == pytest.approx(M.ssim(pred, truth).item(), abs=1e-6)
    empty = torch.zeros(1, 16, 16, dtype=torch.bool)
    for f in (M.psnr, M.ssim, M.sharpness_diff):
        assert torch.isnan(f(pred, truth, empty)).all()


def test_sharpness_diff_hand_example():
    # truth: a vertical edge 0 -> 1 (on [0, 1]) between columns 3 and 4; prediction: flat grey
    truth = -torch.ones(1, 1, 8, 8)
    truth[..., 4:] = 1.0
    pred = torch.zeros(1, 1, 8, 8)
    # truth gradients on the 7x7 interior: |∇_j| = 1 only in interior column j=4 (one of 7 columns)
    want = 10 * math.log10(1 / (7 / 49))
    assert M.sharpness_diff(pred, truth).item() == pytest.approx(want, abs=1e-4)
    assert math.isinf(M.sharpness_diff(truth, truth).item())
    # the same edge at half contrast (0.25 -> 0.75) leaves half the gradient error: 10·log10(14)
    weak = truth * 0.5
    assert M.sharpness_diff(weak, truth).item() == pytest.approx(10 * math.log10(14), abs=1e-4)


def test_moving_mask():
    clip = _frames(4, 3, 16, 16)
    assert not M.moving_mask(clip[:-1], clip[:-1]).any()  # static: empty
    moved = clip.clone()
    moved[2, 1, 5, 7] += 0.5 if moved[2, 1, 5, 7] < 0 else -0.5
    mask = M.moving_mask(clip, moved)
    assert mask.shape == (4, 16, 16)
    assert mask.sum().item() == 1 and mask[2, 5, 7]
    base = clip.clamp(-0.9, 0.9)  # room to shift without clamping
    # +d in model units is +d/2 on [0, 1]: half the threshold is ignored, 1.5x counts everywhere
    assert not M.moving_mask(base, base + M.MOVING_THRESHOLD).any()
    assert M.moving_mask(base, base + 3 * M.MOVING_THRESHOLD).all()


def test_diversity():
    a = torch.full((2, 3, 8, 8), -1.0)
    b = torch.full((2, 3, 8, 8), 0.0)   # 0.5 away from a on [0, 1]
    c = torch.full((2, 3, 8, 8), 1.0)   # 1.0 away from a, 0.5 from b
    assert torch.allclose(M.diversity(torch.stack([a, b, c])), torch.full((2,), 2.0 / 3.0))
    assert torch.equal(M.diversity(torch.stack([a, a, a])), torch.zeros(2))
    assert torch.equal(M.diversity(a[None]), torch.zeros(2))


def test_frame_scores_match_the_single_metrics():
    truth = _frames(2, 3, 3, 16, 16, seed=3)
    pred = (truth + 0.2 * _frames(2, 3, 3, 16, 16, seed=4)).clamp(-1, 1)
    mask = M.moving_mask(truth.roll(1, 1), truth)
    s = M.frame_scores(pred, truth, mask)
    for name, fn in (("mse", M.mse), ("ssim", M.ssim), ("sharpness_error", M.sharpness_error)):
        assert torch.allclose(s[name], fn(pred, truth), atol=1e-6)
        assert torch.allclose(s[name + "_moving"], fn(pred, truth, mask), atol=1e-6)
    assert s["mse"].shape == (2, 3)


# ----------------------------------------------------------------------------- spectral detail
def _texture(*lead, size=32, seed=0):
    """Smooth-ish random texture in [-0.6, 0.6] (room for noise and offsets without clamping)."""
    from torchvision.transforms.v2.functional import gaussian_blur

    x = torch.randn(*lead, 3, size, size, generator=torch.Generator().manual_seed(seed))
    x = gaussian_blur(x.flatten(0, -4), [5, 5], [0.7, 0.7]).unflatten(0, lead)
    return 0.6 * x / x.abs().amax()


def _blur(x, sigma):
    from torchvision.transforms.v2.functional import gaussian_blur

    k = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(x.flatten(0, -4), [k, k], [sigma, sigma]).unflatten(0, x.shape[:-3])


def test_hf_ratio_identical_is_one_blur_below_noise_above():
    truth = _texture(2, 3)
    assert torch.allclose(M.hf_ratio(truth, truth), torch.ones(2, 3), atol=1e-6)
    ratios = [M.hf_ratio(_blur(truth, s), truth) for s in (0.5, 1.0, 2.0)]
    assert (ratios[0] < 0.7).all() and (ratios[1] < 0.2).all()       # clearly blurred ...
    assert (ratios[0] > ratios[1]).all() and (ratios[1] > ratios[2]).all()  # ... more blur, lower
    noise = 0.1 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(1))
    assert (M.hf_ratio(truth + noise, truth) > 1.3).all()
    # a constant brightness offset carries no detail: the window-weighted mean is removed first
    assert torch.allclose(M.hf_ratio(truth + 0.3, truth), torch.ones(2, 3), atol=1e-4)
    assert torch.allclose(M.hf_energy(truth - 0.2), M.hf_energy(truth), rtol=1e-4)


def test_hf_ratio_on_the_moving_area():
    truth = _texture(2, size=48)
    mask = torch.zeros(2, 48, 48, dtype=torch.bool)
    mask[:, 20:28, 10:18] = True
    # blur only far from the moving area (the right half): whole frame sees it, the moving area does not
    far = truth.clone()
    far[..., :, 28:] = _blur(truth, 2.0)[..., :, 28:]
    assert torch.allclose(M.hf_ratio(far, truth, mask), torch.ones(2), atol=0.02)
    assert (M.hf_ratio(far, truth) < 0.8).all()
    # blur inside the moving area: the moving-area ratio drops far below the whole-frame one
    near = truth.clone()
    near[..., 14:34, 4:24] = _blur(truth, 2.0)[..., 14:34, 4:24]
    inside, whole = M.hf_ratio(near, truth, mask), M.hf_ratio(near, truth)
    assert (inside < 0.3).all() and (inside < whole - 0.2).all()
    assert torch.allclose(M.hf_ratio(truth, truth, mask), torch.ones(2), atol=1e-6)
    assert torch.isnan(M.hf_ratio(truth, truth, torch.zeros_like(mask))).all()  # no motion: no score
    w = M.moving_window(mask)
    assert w.shape == (2, 48, 48) and w[0, 23, 14] == pytest.approx(1.0, abs=1e-6) and w[0, 0, 0] == 0


def test_window_keeps_the_border_jump_out_of_the_band():
    # The DFT sees the frame as periodic: a left-to-right ramp is a hard edge at the border. Unwindowed,
    # its leakage (the same in both spectra) pulls a blurred texture's ratio to 0.84; windowed, the ramp
    # changes the ratio by little.
    tex = 0.3 * _texture(1, size=64)
    ramp = torch.linspace(-0.5, 0.5, 64).expand(1, 3, 64, 64)
    alone = M.hf_ratio(_blur(tex, 1.0), tex).item()
    with_ramp = M.hf_ratio(_blur(tex + ramp, 1.0), tex + ramp).item()
    assert alone < 0.2 and with_ramp == pytest.approx(alone, abs=0.02)


def test_raps_rings_and_luma():
    truth = _texture(2)
    spec = M.raps(truth)
    freqs = M.radial_frequencies(32, 32)
    assert spec.shape == (2, 17) and freqs[-1] == 0.5 and spec[:, 0].abs().max() < 1e-6  # mean removed
    # the band energy is the ring powers weighted by ring sizes; a pure horizontal cosine of
    # period 4 pixels (0.25 cycles/pixel) puts its power in the ring at 0.25
    j = torch.arange(32)
    stripes = torch.cos(2 * torch.pi * j / 4).expand(1, 3, 32, 32) * 0.5
    peak = M.raps(stripes)[0].argmax().item()
    assert freqs[peak] == pytest.approx(0.25)
    grey = M.luma(truth)
    assert grey.shape == (2, 32, 32)
    assert torch.allclose(M.luma(truth[:, :1]), M.unit(truth[:, 0]))  # one channel: itself
    # colour noise that leaves luma unchanged (R up, B down in the luma-neutral proportion) is ignored
    tint = torch.zeros_like(truth)
    tint[:, 0], tint[:, 2] = 0.114 * 0.2, -0.299 * 0.2
    assert torch.allclose(M.luma(truth + tint), grey, atol=1e-6)
