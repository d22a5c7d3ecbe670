"""Building blocks shared by the generator and the discriminator.

Feature maps are ``(B, C, H, W)``; frames elsewhere are ``(B, T, C, H, W)`` float in [-1, 1].
No BatchNorm anywhere: batch statistics would couple the k samples drawn for one context (and
make train-mode and eval-mode outputs differ), so G uses GroupNorm and D uses no norm at all.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups (small widths keep several channels per group)."""
    return nn.GroupNorm(math.gcd(channels, 8), channels)


def pixel_norm(v: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit RMS (StyleGAN's mapping output), so FiLM's init scale is known."""
    return v * torch.rsqrt(v.pow(2).mean(dim=-1, keepdim=True) + eps)


def action_shape(batch, history: int) -> tuple:
    """The shape G and D take key indices in: ``(B,)``, or ``(B, L)`` with a key history of L."""
    return (batch,) if history == 1 else (batch, history)


def key_one_hot(action: torch.Tensor, num_actions: int) -> torch.Tensor:
    """``(B, L * A)`` one-hots of key indices ``(B,)`` or ``(B, L)`` (oldest first, one block of
    ``num_actions`` per key): the layout of G's condition vector and of D's key planes."""
    keys = F.one_hot(action.long(), num_actions)
    return keys if action.ndim == 1 else rearrange(keys, "b l a -> b (l a)")


def maybe_sn(module: nn.Module, enabled: bool) -> nn.Module:
    """Spectral norm (Miyato et al. 2018) on a conv / linear when ``enabled``."""
    return spectral_norm(module) if enabled else module


class Mapping(nn.Module):
    """z -> style vector w: a 2-layer MLP, output at unit RMS (StyleGAN-like mapping network)."""

    def __init__(self, z_dim: int, style_dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, style_dim), nn.SiLU(), nn.Linear(style_dim, style_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return pixel_norm(self.net(z))


class FiLM(nn.Module):
    """Per-channel scale and shift from a style vector: ``h * (1 + gamma(w)) + beta(w)``.

    The affine layer starts with output std ``init_std`` (w has unit RMS), not zero: z must move
    the features from step 0, or G learns to ignore it before the diversity signal arrives.
    """

    def __init__(self, style_dim: int, channels: int, init_std: float = 0.2):
        super().__init__()
        self.affine = nn.Linear(style_dim, 2 * channels)
        nn.init.normal_(self.affine.weight, std=init_std / math.sqrt(style_dim))
        nn.init.zeros_(self.affine.bias)

    def forward(self, h: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        gamma, beta = rearrange(self.affine(style), "b (two c) -> two b c 1 1", two=2)
        return h * (1 + gamma) + beta


class ConvNormAct(nn.Module):
    """conv -> GroupNorm -> optional FiLM -> SiLU. ``kernel=4, stride=2`` halves H and W exactly."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, style_dim: int = 0):
        super().__init__()
        # No conv bias: GroupNorm's shift replaces it (a bias before a norm gets no gradient).
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding=(kernel - stride + 1) // 2, bias=False)
        self.norm = group_norm(cout)
        self.film = FiLM(style_dim, cout) if style_dim else None

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(self.conv(x))
        if self.film is not None:
            h = self.film(h, style)
        return F.silu(h)


def upsample_kernel(w: torch.Tensor) -> torch.Tensor:
    """``(O, C, 3, 3)`` -> ``(C, O, 4, 4)``: a 3x3 conv (padding 1) after nearest-neighbour x2
    upsampling, as the kernel of a stride-2 transposed conv (padding 1) of the low-res map. Per
    axis, an even output row 2i sees upsampled rows 2i-1, 2i, 2i+1 = low-res rows i-1, i, i (kernel
    rows 1 and 2 add up), an odd row 2i+1 sees i, i, i+1 (rows 0 and 1 add up); the transposed
    conv's tap t of low-res row i lands on output row 2i - 1 + t, so its 4 taps are, in order:
    row 2, rows 1 + 2, rows 0 + 1, row 0. Each output pixel gets 2x2 taps instead of 3x3; and
    since the taps are tied this way, it draws no checkerboard: it *is* upsample + conv."""
    def fold(k: torch.Tensor, dim: int) -> torch.Tensor:
        r0, r1, r2 = k.unbind(dim)
        return torch.stack([r2, r1 + r2, r0 + r1, r0], dim)
    return rearrange(fold(fold(w, -2), -1), "o c y x -> c o y x")


def upsample_concat_conv(h: torch.Tensor, skip: torch.Tensor, conv: nn.Conv2d, repeats: int = 1) -> torch.Tensor:
    """``conv(cat[upsample2x_nearest(h), skip])`` as written: ``h`` ``(k * B, ...)``, ``skip``
    ``(B, ...)`` repeated for the k draws (``repeats``)."""
    skip = skip if repeats == 1 else repeat(skip, "b ... -> (s b) ...", s=repeats)
    return conv(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), skip.to(h.dtype)], dim=1))


def upsample_conv(h: torch.Tensor, skip: torch.Tensor, weight: torch.Tensor, repeats: int = 1) -> torch.Tensor:
    """``conv3x3(cat[upsample2x_nearest(h), skip])`` (padding 1, no bias) without building either
    the upsampled map or the concatenation; the same values up to float rounding (tested).

    ``h`` ``(k * B, Ch, H, W)``, ``skip`` ``(B, Cs, 2H, 2W)`` with ``repeats`` k: the k draws of a
    context share its skip (sample-major rows, as ``Generator.forward``), so the skip's part of
    the conv runs once per context. The upsampled part is one stride-2 transposed conv of the
    low-res map with the folded kernel (``upsample_kernel``: 4 taps per output pixel instead of
    9). It replaced a 2x2 conv per output phase whose four phases were sliced out and interleaved
    back: the same taps, but the slices' backward zero-filled the whole four-phase map four
    times. benchmarks/train_speed.py, the whole step with framegan's layers against the plain
    ones: 1.07x before, 1.20x after in bf16 (Xeon, AVX-512), 1.26x before, 1.34x after in fp32 on
    AVX2 kernels."""
    ch = h.shape[1]
    w_up, w_skip = weight[:, :ch], weight[:, ch:]
    up = F.conv_transpose2d(h, upsample_kernel(w_up), stride=2, padding=1)
    side = F.conv2d(skip.to(up.dtype), w_skip, padding=1)
    return up + (side if repeats == 1 else repeat(side, "b ... -> (s b) ...", s=repeats))


class UpConvNormAct(ConvNormAct):
    """A decoder level of the U-Net: ``ConvNormAct`` on ``cat[upsample2x(h), skip]`` (the skip
    ``(B, ...)`` shared by ``repeats`` draws of each context). In training mode computed by
    ``upsample_conv``; in eval mode (G_ema: rollout, play, the ONNX export) as written, which is
    faster there: at batch 1 the kernel folding costs more than it saves. With the per-phase
    convs: torch fp32 151 against 173 frames/s, ONNX Runtime 18-184 against 279-368 (it prepacks
    only a constant kernel); with the transposed conv: torch fp32 199 against 210, ONNX Runtime
    287 against 365, and at batch 32 a tie (torch bf16 1019 against 1034; benchmarks/
    rollout_speed.py, Xeon with AVX-512, each pair from one session)."""

    def __init__(self, cin: int, cskip: int, cout: int, style_dim: int = 0):
        super().__init__(cin + cskip, cout, style_dim=style_dim)

    def forward(self, h: torch.Tensor, skip: torch.Tensor, style: torch.Tensor | None = None,
                repeats: int = 1) -> torch.Tensor:
        if self.training:
            h = upsample_conv(h, skip, self.conv.weight, repeats)
        else:
            h = upsample_concat_conv(h, skip, self.conv, repeats)
        h = self.norm(h)
        if self.film is not None:
            h = self.film(h, style)
        return F.silu(h)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: full self-attention over all tokens, then an MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"transformer width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(self.ln1(x)), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.proj(rearrange(a, "b h n d -> b n (h d)"))
        return x + self.mlp(self.ln2(x))
