"""Frame-quality metrics: PSNR, SSIM, sharpness difference, moving-area masks, sample diversity.

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
from einops import pack, reduce, unpack
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

# A pixel is "moving" when some channel changes by more than 10 of 255 levels between the last
# context frame and the truth. On the sample game's mp4-extracted store, 19 % of pixels change at
# all between consecutive frames, 8.8 % by > 10 levels, 6.5 % by > 32 (the sprites themselves):
# the 1-10 level changes are mostly H.264 noise and ringing, which should not count as motion.
MOVING_THRESHOLD = 10 / 255


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
