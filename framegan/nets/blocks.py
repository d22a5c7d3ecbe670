"""Building blocks shared by the generator and the discriminator.

Feature maps are ``(B, C, H, W)``; frames elsewhere are ``(B, T, C, H, W)`` float in [-1, 1].
No BatchNorm anywhere: batch statistics would couple the k samples drawn for one context (and
make train-mode and eval-mode outputs differ), so G uses GroupNorm and D uses no norm at all.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
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
