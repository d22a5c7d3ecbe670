"""Frame-quality metrics: PSNR, SSIM, sharpness difference, spectral detail (radially averaged power
spectrum, high-frequency power), moving-area masks, sample diversity.

Inputs are frames ``(..., C, H, W)`` float in [-1, 1] (a batch is ``(B, T, C, H, W)``); every
metric is computed per frame on intensities mapped to [0, 1] (peak value 1) and returns one value
per frame with the leading shape ``(...)``. Masks are bool ``(..., H, W)``: a masked metric averages
only over the pixels where the mask is true and is NaN for a frame whose mask is empty.

Infinity: an exact prediction has zero error, so PSNR and sharpness difference are +inf (that is
the honest value). ``to_db`` is the one place errors become decibels; callers that average should
average *errors* and convert the mean (``evaluate`` does), never average dB values that may be inf.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from einops import einsum, pack, rearrange, reduce, unpack
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

# A pixel is "moving" when some channel changes by more than 10 of 255 levels between the last
# context frame and the truth. On the sample game's mp4-extracted store, 19 % of pixels change at
# all between consecutive frames, 8.8 % by > 10 levels, 6.5 % by > 32 (the sprites themselves):
# the 1-10 level changes are mostly H.264 noise and ringing, which should not count as motion.
MOVING_THRESHOLD = 10 / 255

# Spectral detail (``raps``, ``hf_energy``): see the section "spectral detail" below for the reasons.
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma weights of R, G, B
HF_CUTOFF = 0.25   # cycles/pixel: the upper half of the radial frequencies up to Nyquist (0.5)
TAPER = 0.5        # Tukey window: a cosine taper over the outer quarter of each side, flat inside
MOVING_MARGIN = 4  # pixels the moving-area mask grows by before it becomes a spectral window
MOVING_SOFTNESS = 2.0  # Gaussian sigma (pixels) that tapers the grown mask's edge


def unit(frames: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model range -> [0, 1] intensities (clamped), float32: the scale metrics are quoted on."""
    return frames.float().clamp(-1.0, 1.0).add(1.0).div(2.0)


def to_db(error: torch.Tensor) -> torch.Tensor:
    """10·log10(peak² / error) with peak 1; error 0 -> +inf, NaN stays NaN."""
    return 10.0 * torch.log10(1.0 / error)


def _fold(x: torch.Tensor, pattern: str):
    """Fold all leading dims into one batch dim: (flat, packed shapes for ``_unfold``)."""
    flat, ps = pack([x], pattern)
    return flat, ps


def _unfold(values: torch.Tensor, ps) -> torch.Tensor:
    """One value per frame ``(N,)`` -> the original leading shape ``(...)``."""
    return unpack(values, ps, "*")[0]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of per-pixel values ``(N, C, H, W)`` over C and the mask ``(N, H, W)`` (NaN if empty)."""
    values = reduce(values, "n c h w -> n h w", "mean")
    if mask is None:
        return reduce(values, "n h w -> n", "mean")
    m = mask.to(values.dtype)
    return reduce(values * m, "n h w -> n", "sum") / reduce(m, "n h w -> n", "sum")  # 0/0 = NaN


def mse(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame mean squared error on [0, 1] intensities (over the mask if given)."""
    p, ps = _fold(unit(pred), "* c h w")
    t, _ = _fold(unit(truth), "* c h w")
    m = None if mask is None else _fold(mask, "* h w")[0]
    return _unfold(_masked_mean((p - t) ** 2, m), ps)


def psnr(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame PSNR in dB (inf for an exact frame). Whole frame: torchmetrics; masked: ``to_db(mse)``."""
    if mask is not None:
        return to_db(mse(pred, truth, mask))
    p, ps = _fold(unit(pred), "* c h w")
    t, _ = _fold(unit(truth), "* c h w")
    value = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    return _unfold(value, ps)


def ssim(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame SSIM (torchmetrics: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, reflect padding).

    Masked: torchmetrics' per-pixel SSIM map averaged over channels and the mask's pixels.
    Frames must be larger than 5 pixels on each side (the reflect padding of the window).
    """
    p, ps = _fold(unit(pred), "* c h w")
    t, _ = _fold(unit(truth), "* c h w")
    value, ssim_map = structural_similarity_index_measure(
        p, t, data_range=1.0, reduction="none", return_full_image=True)
    if mask is not None:
        value = _masked_mean(ssim_map, _fold(mask, "* h w")[0])
    return _unfold(value, ps)


def _gradient_sum(x: torch.Tensor) -> torch.Tensor:
    """|∇_i x| + |∇_j x| on the pixels that have an upper and a left neighbour: (N, C, H-1, W-1)."""
    core = x[..., 1:, 1:]
    return (core - x[..., :-1, 1:]).abs() + (core - x[..., 1:, :-1]).abs()


def sharpness_error(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-frame mean |(∇_i Y + ∇_j Y) − (∇_i Ŷ + ∇_j Ŷ)|, the denominator of ``sharpness_diff``."""
    p, ps = _fold(unit(pred), "* c h w")
    t, _ = _fold(unit(truth), "* c h w")
    m = None if mask is None else _fold(mask, "* h w")[0][:, 1:, 1:]
    return _unfold(_masked_mean((_gradient_sum(t) - _gradient_sum(p)).abs(), m), ps)


def sharpness_diff(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Sharpness difference in dB (Mathieu, Couprie & LeCun 2016, "Deep multi-scale video prediction
    beyond mean square error", Sec. 4):

        10·log10( max_I² / ( 1/N · Σ_ij |(∇_i Y + ∇_j Y) − (∇_i Ŷ + ∇_j Ŷ)| ) ),
        ∇_i Y = |Y[i, j] − Y[i−1, j]|,  ∇_j Y = |Y[i, j] − Y[i, j−1]|,

    on [0, 1] intensities (max_I = 1), averaged over channels and the N pixels with both
    neighbours. Higher = the prediction's edges match the truth's; inf for an exact frame.
    """
    return to_db(sharpness_error(pred, truth, mask))


def moving_mask(last: torch.Tensor, truth: torch.Tensor, threshold: float = MOVING_THRESHOLD) -> torch.Tensor:
    """Bool ``(..., H, W)``: pixels where some channel of ``truth`` differs from the last context
    frame by more than ``threshold`` (on [0, 1] intensities)."""
    change = (unit(truth) - unit(last)).abs()
    return reduce(change, "... c h w -> ... h w", "max") > threshold


def diversity(samples: torch.Tensor) -> torch.Tensor:
    """Mean pairwise L1 distance (on [0, 1] intensities) between the S samples of ``(S, ..., C, H, W)``;
    returns ``(...)``. 0 when S = 1 or when all samples are equal."""
    s = samples.shape[0]
    if s < 2:
        return torch.zeros(samples.shape[1:-3])
    x = unit(samples)
    pairs = [reduce((x[i] - x[j]).abs(), "... c h w -> ...", "mean")
             for i, j in itertools.combinations(range(s), 2)]
    return torch.stack(pairs).mean(0)


def frame_scores(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Everything ``evaluate`` pools, per frame, sharing the work (one SSIM map, one gradient pass):
    ``mse``, ``ssim``, ``sharpness_error``, each also ``*_moving`` (over ``mask``, NaN if empty).
    The values equal ``mse`` / ``ssim`` / ``sharpness_error`` called one by one."""
    p, ps = _fold(unit(pred), "* c h w")
    t, _ = _fold(unit(truth), "* c h w")
    m, _ = _fold(mask, "* h w")
    _, ssim_map = structural_similarity_index_measure(p, t, data_range=1.0, reduction="none",
                                                      return_full_image=True)
    per_pixel = {"mse": ((p - t) ** 2, m), "ssim": (ssim_map, m),
                 "sharpness_error": ((_gradient_sum(t) - _gradient_sum(p)).abs(), m[:, 1:, 1:])}
    out = {}
    for name, (values, region) in per_pixel.items():
        out[name] = _unfold(_masked_mean(values, None), ps)
        out[name + "_moving"] = _unfold(_masked_mean(values, region), ps)
    return out


# ----------------------------------------------------------------------------- spectral detail
# A blur measure that needs no learned weights: how much of the truth's fine detail a prediction
# has. The radially averaged power spectrum (RAPS) of a frame is its Fourier power averaged over
# rings of equal spatial frequency; blur removes the outer rings, noise and checkerboard artifacts
# add to them. ``hf_energy`` sums the power above ``HF_CUTOFF``; prediction / truth is the
# high-frequency power ratio (1 = as detailed as the truth, < 1 blurred, > 1 noise/artifacts).
# Details and why:
# - Luma (BT.601), one spectrum per frame: blur is a loss of structure, which lives in luma; the
#   colour channels are strongly correlated, and H.264 stores chroma at half resolution, so the
#   truth's chroma has no real upper-band detail to compare against. Other channel counts: mean.
# - The window-weighted mean is removed first: a constant brightness offset then cancels exactly
#   (and the DC term, which carries no detail, is zero).
# - Tukey window (cosine taper over the outer quarter of each side): the DFT treats the frame as
#   periodic, so the jump between opposite borders is a false edge whose power spreads over every
#   frequency and is the same in prediction and truth, pulling the ratio towards 1. Measured (64x64,
#   fine texture on a left-to-right ramp, prediction = Gaussian blur sigma 1; the texture alone
#   gives 0.022): no window 0.84, Hann 0.022, Tukey 0.5 0.022, Tukey 0.25 0.030. Tukey 0.5 leaks
#   as little as Hann but keeps 47 % of the frame's weight (mean w², Hann: 14 %), so HUDs and
#   weapons near the border still count.
# - Cutoff 0.25 cycles/pixel (rings from half of Nyquist up to Nyquist; the corners beyond 0.5,
#   present only on the diagonals, are left out so the band is isotropic): a Gaussian blur of
#   sigma 1 pixel keeps exp(-4 pi² sigma² f²) = 8 % of the power at 0.25, so one pixel of blur
#   shows clearly, while the low frequencies (layout, large shapes) that PSNR already scores stay
#   out.
# - Power is |DFT|² / (H·W), so a frame's spectrum sums to the energy of its windowed, mean-free
#   luma. Pooling over frames (``evaluate``, ``train``) divides *summed* energies (prediction over
#   truth), i.e. per-frame ratios weighted by the truth's detail: a near-flat truth frame cannot
#   make the ratio explode as a mean of per-frame ratios would.
# - Moving area: the window is the moving-area mask grown by ``MOVING_MARGIN`` pixels, its edge
#   tapered by a Gaussian of sigma ``MOVING_SOFTNESS``, times the Tukey window. The growth keeps
#   the moving object's own edges (where its detail is) and the halo a blurred prediction smears
#   around them inside the window; the taper keeps the window's edge from being a hard false edge
#   (a hard mask adds the same spurious high frequencies to both spectra, as the frame border
#   does). Prediction and truth get the same window, so the ratio compares like with like; a
#   frame's energy grows with its window, so pooled frames weigh by the size of their moving area,
#   as the other moving-area metrics weigh by moving pixels. (The spectrum of the masked
#   *difference* would measure error, not detail: a sharp but misplaced sprite would count as
#   blur.)


def luma(frames: torch.Tensor) -> torch.Tensor:
    """``(..., C, H, W)`` in [-1, 1] -> luma ``(..., H, W)`` on [0, 1] (BT.601 for C = 3, else the channel mean)."""
    x = unit(frames)
    if x.shape[-3] == 3:
        return einsum(x, torch.tensor(LUMA, dtype=x.dtype, device=x.device), "... c h w, c -> ... h w")
    return reduce(x, "... c h w -> ... h w", "mean")


def _tukey(n: int, alpha: float = TAPER, device=None) -> torch.Tensor:
    """1-D Tukey window sampled at pixel centres: flat, with a raised-cosine taper over ``alpha / 2`` of each end."""
    x = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
    edge = torch.minimum(x, 1 - x) / (alpha / 2)  # < 1 inside the taper
    return torch.where(edge < 1, 0.5 * (1 - torch.cos(torch.pi * edge)), torch.ones_like(x))


def spectral_window(h: int, w: int, device=None) -> torch.Tensor:
    """The whole-frame window ``(H, W)``: separable Tukey (``TAPER``)."""
    return einsum(_tukey(h, device=device), _tukey(w, device=device), "h, w -> h w")


def moving_window(mask: torch.Tensor) -> torch.Tensor:
    """Bool mask ``(..., H, W)`` -> float window ``(..., H, W)`` in [0, 1]: the mask grown by
    ``MOVING_MARGIN`` pixels, tapered by a Gaussian of sigma ``MOVING_SOFTNESS``, times the
    whole-frame window. All zero where the mask is empty."""
    m, ps = pack([mask.float()], "* h w")
    m = rearrange(m, "n h w -> n 1 h w")
    r = MOVING_MARGIN
    m = F.max_pool2d(m, 2 * r + 1, stride=1, padding=r)
    radius = round(2 * MOVING_SOFTNESS)
    g = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, device=m.device) / MOVING_SOFTNESS) ** 2)
    g = g / g.sum()
    m = F.conv2d(m, rearrange(g, "k -> 1 1 k 1"), padding=(radius, 0))  # zero padding: no motion outside
    m = F.conv2d(m, rearrange(g, "k -> 1 1 1 k"), padding=(0, radius))
    m = rearrange(m, "n 1 h w -> n h w") * spectral_window(*m.shape[-2:], device=m.device)
    return unpack(m, ps, "* h w")[0]


def _power(frames: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """|DFT(window · (luma − its window-weighted mean))|² / (H·W): ``(..., H, W)``."""
    y = luma(frames)
    total = reduce(window, "... h w -> ... 1 1", "sum")
    mean = reduce(y * window, "... h w -> ... 1 1", "sum") / total.clamp(min=1e-12)  # empty window: 0
    h, w = y.shape[-2:]
    return torch.fft.fft2((y - mean) * window).abs().square() / (h * w)


def _rings(h: int, w: int, device=None) -> tuple[torch.Tensor, int]:
    """Ring index of every DFT coefficient ``(H, W)`` (radius · min(H, W), rounded), and the ring
    count up to Nyquist along the shorter side."""
    fy = torch.fft.fftfreq(h, device=device)
    fx = torch.fft.fftfreq(w, device=device)
    r = torch.sqrt(rearrange(fy, "h -> h 1") ** 2 + rearrange(fx, "w -> 1 w") ** 2)
    n = min(h, w)
    return (r * n).round().long(), n // 2 + 1


def radial_frequencies(h: int, w: int) -> torch.Tensor:
    """The frequency (cycles/pixel) of each ``raps`` ring: k / min(H, W), k = 0 .. min(H, W) // 2."""
    n = min(h, w)
    return torch.arange(n // 2 + 1) / n


def _ring_sums(frames: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Power summed per ring ``(..., R)`` and the coefficients per ring ``(R,)``."""
    h, w = frames.shape[-2:]
    window = spectral_window(h, w, frames.device) if mask is None else moving_window(mask)
    power = _power(frames, window)
    ring, n_rings = _rings(h, w, frames.device)
    inside = ring < n_rings
    p, ps = pack([power[..., inside]], "* k")
    sums = torch.zeros(p.shape[0], n_rings, dtype=p.dtype, device=p.device)
    sums.index_add_(1, ring[inside], p)
    return unpack(sums, ps, "* r")[0], torch.bincount(ring[inside], minlength=n_rings)


def raps(frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Radially averaged power spectrum ``(..., R)`` of each frame's windowed luma: mean power of
    the ring at ``radial_frequencies(H, W)``. With ``mask`` (bool ``(..., H, W)``): of the moving
    area (``moving_window``)."""
    sums, counts = _ring_sums(frames, mask)
    return sums / counts


def hf_energy(frames: torch.Tensor, mask: torch.Tensor | None = None, cutoff: float = HF_CUTOFF) -> torch.Tensor:
    """Per-frame power ``(...)`` in the rings at or above ``cutoff`` cycles/pixel: Σ count · ``raps``
    over the band (the energy of the band-passed, windowed luma)."""
    sums, _ = _ring_sums(frames, mask)
    band = radial_frequencies(*frames.shape[-2:]).to(sums.device) >= cutoff - 1e-9
    return sums[..., band].sum(-1)


def hf_ratio(pred: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor | None = None,
             cutoff: float = HF_CUTOFF) -> torch.Tensor:
    """Per-frame high-frequency power ratio ``(...)``: ``hf_energy(pred) / hf_energy(truth)``
    (1 = as detailed as the truth, < 1 blurred, > 1 noise). Pool frames by summing the energies
    first (see above), not by averaging these ratios."""
    return hf_energy(pred, mask, cutoff) / hf_energy(truth, mask, cutoff)
