"""The conditional generator G(x, z, a): K past frames plus noise (plus the player's action) -> the
next frame.

Frames are ``(B, T, C, H, W)`` float in [-1, 1]. G folds the context ``(B, K, C, H, W)`` into
channels and runs a pix2pix-like U-Net: one stride-2 4x4 conv per encoder level, two 3x3 convs
at the bottleneck, and per decoder level nearest-neighbour upsampling + skip concat + one 3x3
conv (upsample-then-conv avoids the checkerboard of free transposed convs; in training
``blocks.upsample_conv`` computes exactly that as a transposed conv with tied taps, without
materialising the upsampled map or the concatenation).

The head makes the frame in one of three ways (``cfg.output``):
  composite  (default) a paint image P and a mask m per pixel: ``last + m * (tanh(P) - last)``, so
             G copies the last context frame where m ~ 0 and repaints where m ~ 1 (the compositing
             masks of Finn et al. 2016 and SAVP). Erasing a sprite is a repaint with the
             background, as easy for a bright sprite as for a dull one. A residual in tanh space
             made it hard: the gradient at a saturated pixel is 1 - last**2, 0.02 at +-0.99, so
             bright sprites left a trail behind them in every rollout (the fork experiment's
             trail at step 3: 3.9 % of the background off by > 16 levels, composite 0.4 %).
             With ``cfg.copy_frames`` n > 1 the mask becomes a softmax over the paint and the n
             newest context frames: where a sprite leaves, the floor it uncovers was in view a
             few frames ago, and copying it from there is exact where a painted floor is not.
  residual   ``tanh(atanh(last) + delta)``: a change to the last frame, smooth in both directions.
  direct     ``tanh(head)``: the frame from scratch (pix2pix).

The conditioning vector is z followed by a one-hot of the action pressed after the last context
frame (``cfg.actions`` > 0; GameGAN and DIAMOND also condition on the current action). It enters
in one of three ways (``cfg.z_inject``), so the key reaches G exactly where the noise does:
  concat    z tiled as extra channels at the input and at the bottleneck (SAVP-style tiling)
  add       a linear projection of z added to the bottleneck features ("vector addition")
  modulate  a 2-layer mapping MLP turns z into a style w; FiLM (per-channel scale/shift) from w
            acts after every norm of the bottleneck and of every decoder level, so z can flip a
            global, discrete choice (which branch at a fork) rather than add local texture.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import nn

from framegan.config import GOutput, ModelConfig, ZDist, ZInject
from framegan.nets.blocks import ConvNormAct, Mapping, UpConvNormAct, action_shape, key_one_hot

STYLE_DIM = 64      # width of the mapping network's output w (modulate)
HEAD_INIT = 0.1     # scale of the head's initial weights (residual, composite): untrained G ~ copy-last
MASK_BIAS = -2.0    # the composite mask starts at sigmoid(-2) = 0.12: mostly copy, but the paint
                    # image gets gradient from step 0 (at -4 a moving block was never learned)
OLDER_BIAS = -4.0   # copy_frames > 1: the frames before the last start at weight ~0.016 each
# Residual output is tanh(atanh(last) + delta); last is clamped to +-LAST_LIMIT first. The
# gradient of tanh where the output sits at last is 1 - LAST_LIMIT**2: 0.02 here (0.002 at 0.999),
# so a sprite can still appear on a saturated (black) background, at the cost of copying pure
# black/white as +-0.99 (about one uint8 level) until G learns to push it out.
LAST_LIMIT = 0.99


class Generator(nn.Module):
    """U-Net G. ``forward(x (B,K,C,H,W), z (B,z_dim) | None, action int64 | None) -> (B,C,H,W)``
    in [-1, 1].

    ``self.z_dim`` is the width of the whole noise vector: ``cfg.z_dim`` continuous values followed
    by a one-hot of ``cfg.z_classes`` classes (0 = deterministic G, which takes ``z=None``).
    ``self.num_actions`` > 0: ``action`` is required, indices in ``[0, num_actions)``: ``(B,)``,
    the key pressed after the last context frame, or with ``self.action_history`` L > 1 ``(B, L)``,
    the keys pressed after the last L context frames, oldest first (see ``action_shape``).
    """

    def __init__(self, cfg: ModelConfig, context: int, channels: int = 3):
        super().__init__()
        self.context, self.channels, self.depth = context, channels, cfg.depth
        self.z_cont, self.z_classes = cfg.z_dim, cfg.z_classes
        self.z_dim, self.output = cfg.z_dim + cfg.z_classes, GOutput(cfg.output).value
        # -1 (auto) is resolved against the store by train.py; a net built without one has no keys.
        self.num_actions = max(cfg.actions, 0)
        # Most of a key's effect can show after the next frame (Ms. Pac-Man, experiments/key_effect
        # --vary first: only the first key changed, the true futures differ by MSE 3.3e-5 at step
        # 1 and 1.4e-4 at step 2): with model.action_history > 1 G sees the keys before as inputs
        # instead of guessing them from the frames.
        self.action_history = cfg.action_history if self.num_actions else 1
        self.cond_dim = self.z_dim + self.num_actions * self.action_history  # z, then one one-hot per key
        self.z_dist = ZDist(cfg.z_dist).value  # accepts the enum or its string
        self.z_inject = ZInject(cfg.z_inject).value if self.cond_dim > 0 else None  # None: no z, no action

        w = cfg.width
        chs = [min(w * 2**i, 8 * w) for i in range(cfg.depth + 1)]
        z_ch = self.cond_dim if self.z_inject == "concat" else 0
        style = STYLE_DIM if self.z_inject == "modulate" else 0

        self.stem = ConvNormAct(context * channels + z_ch, chs[0])
        self.down = nn.ModuleList(ConvNormAct(chs[i], chs[i + 1], kernel=4, stride=2) for i in range(cfg.depth))
        self.mid = nn.ModuleList([ConvNormAct(chs[-1] + z_ch, chs[-1], style_dim=style),
                                  ConvNormAct(chs[-1], chs[-1], style_dim=style)])
        self.up = nn.ModuleList(UpConvNormAct(chs[i + 1], chs[i], chs[i], style_dim=style)
                                for i in reversed(range(cfg.depth)))
        # composite: n mask logits, paint against the last frame, then each older frame copied from
        copy = context if cfg.copy_frames == -1 else cfg.copy_frames
        self.copy_frames = copy if self.output == "composite" else 0
        self.head = nn.Conv2d(chs[0], channels + self.copy_frames, 3, padding=1)  # (paint,) mask logits
        self.z_proj = nn.Linear(self.cond_dim, chs[-1]) if self.z_inject == "add" else None
        self.mapping = Mapping(self.cond_dim, STYLE_DIM) if self.z_inject == "modulate" else None
        if self.output != "direct":
            # Small but not zero: a zero head would also zero the gradient to every layer below.
            with torch.no_grad():
                self.head.weight.mul_(HEAD_INIT)
                self.head.bias.zero_()

    def sample_z(self, n: int, device=None, generator: torch.Generator | None = None,
                 classes: torch.Tensor | None = None) -> torch.Tensor:
        """``(n, z_dim)`` noise: ``z_cont`` values from ``z_dist`` (gaussian N(0, 1) or uniform
        U(-1, 1)), then a one-hot of a class drawn uniformly, or taken from ``classes`` (n,) when
        given (best-of-k gives every class a turn). ``(n, 0)`` for a deterministic G.

        Why a discrete part: a continuous G maps the connected z-space onto its outputs
        continuously, so between the z that draw "left" and the z that draw "right" lies a
        band that draws something in between (Tanielian et al. 2020, "Learning disconnected
        manifolds: a no GAN's land"). One-hot classes have no in-between to land on.
        """
        if device is None:
            device = self.head.weight.device
        if self.z_dist == "gaussian":
            z = torch.randn(n, self.z_cont, device=device, generator=generator)
        else:
            z = torch.rand(n, self.z_cont, device=device, generator=generator) * 2 - 1
        if self.z_classes == 0:
            return z
        if classes is None:
            classes = torch.randint(self.z_classes, (n,), device=device, generator=generator)
        return torch.cat([z, F.one_hot(classes.to(device), self.z_classes).to(z.dtype)], dim=1)

    def action_shape(self, batch: int) -> tuple[int, ...]:
        """The shape ``forward`` takes ``action`` in: ``(B,)``, or ``(B, L)`` with a key history."""
        return action_shape(batch, self.action_history)

    def condition(self, z: torch.Tensor | None, action: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        """``(B, cond_dim)``: z, then the one-hot of each key, oldest first (either may be empty)."""
        parts = [z.to(like.dtype)] if self.z_dim > 0 else []
        if self.num_actions:
            parts.append(key_one_hot(action, self.num_actions).to(like.dtype))
        return torch.cat(parts, dim=1)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None,
                action: torch.Tensor | None = None, repeats: int = 1) -> torch.Tensor:
        """``repeats`` k > 1: k draws per context. ``x`` holds B contexts, ``z`` and ``action``
        k * B rows, sample-major (row s * B + b is draw s of context b), as the output. The
        encoder never sees z or the key (modulate and add inject them after it), so it runs once
        per context instead of k times: the same values as ``forward`` on the repeated context,
        for less work (best-of-k training draws every context k times)."""
        self._check(x, z, action, repeats)
        if self.z_inject == "concat" and repeats > 1:  # here the input holds z: nothing to share
            x, repeats = repeat(x, "b t c h w -> (s b) t c h w", s=repeats), 1
        h = rearrange(x, "b t c h w -> b (t c) h w")
        cond = self.condition(z, action, h) if self.cond_dim else None
        style = self.mapping(cond) if self.mapping is not None else None
        if self.z_inject == "concat":
            h = torch.cat([h, self._tile(cond, h)], dim=1)

        h = self.stem(h)
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        copies = x[:, x.shape[1] - max(self.copy_frames, 1):]  # the frames the head copies from, last one last
        if repeats > 1:  # the skips stay per context: each decoder level shares their part (upsample_conv)
            h, copies = (repeat(t, "b ... -> (s b) ...", s=repeats) for t in (h, copies))

        if self.z_inject == "concat":
            h = torch.cat([h, self._tile(cond, h)], dim=1)
        elif self.z_inject == "add":
            h = h + rearrange(self.z_proj(cond), "b c -> b c 1 1")
        for block in self.mid:
            h = block(h, style)

        for up, skip in zip(self.up, reversed(skips)):
            h = up(h, skip, style, repeats)

        out = self.head(h).float()
        last = copies[:, -1].float()
        if self.output == "composite" and self.copy_frames == 1:
            paint = torch.tanh(out[:, :self.channels])
            mask = torch.sigmoid(out[:, self.channels:] + MASK_BIAS)
            out = last + mask * (paint - last)  # a convex mix of two frames in [-1, 1]
        elif self.output == "composite":
            # softmax over [paint, each context frame]; the last frame's logit is 0, so with one
            # copy frame this is exactly the sigmoid above. Mask logit i >= 1 is the frame i
            # before the last (flipped here to the context's order, oldest first).
            logits = out[:, self.channels:]
            weights = torch.cat([logits[:, :1] + MASK_BIAS, logits[:, 1:].flip(1) + OLDER_BIAS,
                                 torch.zeros_like(logits[:, :1])], dim=1).softmax(dim=1)  # paint, oldest .. last
            weights = rearrange(weights, "b s h w -> b s 1 h w")
            frames = reduce(weights[:, 1:] * copies.float(), "b t c h w -> b c h w", "sum")
            out = weights[:, 0] * torch.tanh(out[:, :self.channels]) + frames  # a convex mix in [-1, 1]
            # (an einsum here ran as 131k tiny matmuls: 3x slower forward + backward)
        elif self.output == "residual":
            # Smooth in both directions (unlike clamp(last + delta)): a pixel at the saturated
            # background still gets gradient, so a sprite can appear there.
            last = last.clamp(-LAST_LIMIT, LAST_LIMIT)
            out = torch.tanh(torch.atanh(last) + out)
        else:
            out = torch.tanh(out)
        return out.to(x.dtype)

    def _tile(self, z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return repeat(z.to(like.dtype), "b d -> b d h w", h=like.shape[-2], w=like.shape[-1])

    def _check(self, x: torch.Tensor, z: torch.Tensor | None, action: torch.Tensor | None, repeats: int = 1):
        if x.ndim != 5:
            raise ValueError(f"G expects context (B, K, C, H, W), got shape {tuple(x.shape)}")
        if repeats < 1:
            raise ValueError(f"G's repeats must be >= 1, got {repeats}")
        b, k, c, height, width = x.shape
        b *= repeats  # rows of z, action and the output
        if k != self.context or c != self.channels:
            raise ValueError(f"G was built for K={self.context}, C={self.channels}; got K={k}, C={c}")
        m = 2**self.depth
        if height % m or width % m:
            raise ValueError(f"G with depth {self.depth} needs H and W divisible by {m}; got {height}x{width}")
        if self.z_dim > 0 and (z is None or tuple(z.shape) != (b, self.z_dim)):
            got = None if z is None else tuple(z.shape)
            raise ValueError(f"G needs z of shape ({b}, {self.z_dim}), got {got}")
        if self.num_actions and (action is None or tuple(action.shape) != self.action_shape(b)):
            got = None if action is None else tuple(action.shape)
            raise ValueError(f"G needs action indices of shape {self.action_shape(b)}, got {got}")


def build_generator(cfg: ModelConfig, context: int, channels: int = 3) -> Generator:
    """The generator described by ``cfg`` for ``context`` past frames of ``channels`` channels."""
    return Generator(cfg, context, channels)
