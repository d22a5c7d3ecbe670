"""The temporal discriminator D(context, frame, action): is ``frame`` a real next frame for
``context`` (after the player pressed ``action``)?

Frames are ``(B, T, C, H, W)`` float in [-1, 1]. D sees the K context frames ``(B, K, C, H, W)``
and one candidate ``(B, C, H, W)`` and returns logits ``(B, 1, h, w)``, one per patch (PatchGAN,
Isola et al. 2017): a local verdict everywhere, so a small wrong sprite cannot hide in a large
correct background. Because the context is an input, a real frame under the wrong context can be
called fake: that is what makes D temporal rather than an image critic.

With ``cfg.actions`` > 0, D is a projection discriminator (Miyato & Koyama 2018): each patch's
logit gets ``<embed(action), features>`` added, so a real frame shown under an action that was not
taken (a wrong-action negative, engine.d_step) can be called fake too: D punishes a frame that
ignores the key. With ``cfg.action_history`` L > 1 D sees the last L keys, as G does (the action
is ``(B, L)``, oldest first): one embedding per (position, key), summed.

Backbones (``cfg.d_backbone``):
  cnn          stride-2 4x4 convs over the stacked (context, candidate) channels, LeakyReLU 0.2,
               no norm, optional spectral norm; logits at H / 2**d_depth. With ``cfg.d_motion``
               the candidate minus the last context frame is stacked too. Why: on Ms. Pac-Man G's
               samples miss about 17 pixels of a 64x64 frame; a fresh D trained alone against a
               frozen G (``framegan.experiments.d_probe --retrain 1000``, G's samples the only
               negatives) scored real over fake on 66 % of the moving patches without the
               difference, 89-91 % with it. A linear first layer could form it, but under spectral
               norm and from a random start it does not in that budget.
  transformer  ViT-style: each frame cut into d_patch x d_patch patches, K+1 time steps, learned
               space (row + column) and time embeddings, full attention across space and time,
               a score per patch of the candidate frame; logits at H / d_patch. Spectral norm
               goes on the patch embedding and the score head only: inside the blocks it shrinks
               q.k until attention is uniform and D cannot find the context patch to compare
               with (toy measurement, real-minus-shuffled logit after 150 Adam steps: 0.05 with
               SN in the blocks and ViT's 0.02 position init; 2.0-5.3 over three seeds as
               built here; ViTGAN, Lee et al. 2021, reports the same trouble with plain SN).
"""
from __future__ import annotations

import contextlib
import itertools

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, reduce
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from framegan.config import DBackbone, ModelConfig
from framegan.nets.blocks import TransformerBlock, action_shape, key_one_hot, maybe_sn

MAX_GRID = 128  # transformer: most patches along one side (128 x 8 px = 1024 px at d_patch 8)
POS_INIT = 0.2  # transformer: std of the initial position embeddings


class PatchCNN(nn.Module):
    """pix2pix-style PatchGAN over the channel-stacked (context, candidate)."""

    def __init__(self, cfg: ModelConfig, context: int, channels: int):
        super().__init__()
        sn, w = cfg.d_spectral_norm, cfg.d_width
        # The key's one-hot also enters as input channels (early fusion): measured on a toy key game,
        # D told a real next frame under the pressed key from the same frame under another key
        # about twice as fast as with the end-of-network projection alone.
        keys = max(cfg.actions, 0) * (cfg.action_history if cfg.actions > 0 else 1)
        self.motion = cfg.d_motion
        chs = [(context + 1 + self.motion) * channels + keys] + [min(w * 2**i, 8 * w) for i in range(cfg.d_depth)]
        layers = []
        for cin, cout in itertools.pairwise(chs):
            layers += [maybe_sn(nn.Conv2d(cin, cout, 4, 2, 1), sn), nn.LeakyReLU(0.2)]
        layers += [maybe_sn(nn.Conv2d(chs[-1], chs[-1], 3, 1, 1), sn), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.head = maybe_sn(nn.Conv2d(chs[-1], 1, 3, 1, 1), sn)
        self.stride, self.features = 2**cfg.d_depth, chs[-1]

    def forward(self, context: torch.Tensor, frame: torch.Tensor, keys: torch.Tensor | None = None,
                pair: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, 1, h, w), features (N, h, w, F)) for the action projection; ``keys``: the
        one-hot keys (N, L * A), extra input channels as if tiled over the frame (``key_planes``);
        ``pair`` (N,): the row of ``context`` each frame is judged under (None: row n for frame n).

        The first conv is linear in its stacked input, so it is computed per part: the context's
        share once per context row, the candidate's once per frame, summed per pair (the same
        values as the conv of the stacked channels; tests/test_nets.py). A step judges every
        context several times (real, fake, wrong-key pairs; k draws in the G phase), so its share
        is computed once; and since no gradient flows into the context, the backward pass computes
        an input gradient for the candidate's channels alone."""
        first = self.net[0]
        weight = first.weight  # read once: under spectral norm each read runs a power iteration
        past, c = context.shape[1] * context.shape[2], frame.shape[1]
        w_ctx, w_frame = weight[:, :past], weight[:, past:past + c]
        if self.motion:  # conv(frame - last) = conv(frame) - conv(last): folded into both parts
            w_motion = weight[:, past + c:past + 2 * c]
            w_ctx = torch.cat([w_ctx[:, :-c], w_ctx[:, -c:] - w_motion], dim=1)
            w_frame = w_frame + w_motion
        h_ctx = F.conv2d(rearrange(context, "b t c h w -> b (t c) h w"), w_ctx, first.bias, first.stride,
                         first.padding)
        h = F.conv2d(frame, w_frame, None, first.stride, first.padding)
        # index_select, not h_ctx[pair]: its backward (index_add) was 5x faster than indexing's
        # (index_put with accumulate) here, 1.0 against 5.5 ms for D's 48 pairs of 16 contexts.
        h = h + (h_ctx if pair is None else h_ctx.index_select(0, pair))
        if keys is not None:
            h = h + key_planes(keys, weight[:, past + c * (1 + self.motion):], first, frame.shape[-2:]).to(h.dtype)
        h = self.net[1:](h)
        return self.head(h), rearrange(h, "b f h w -> b h w f")


def key_planes(keys: torch.Tensor, weight: torch.Tensor, conv: nn.Conv2d, size) -> torch.Tensor:
    """What ``conv`` with ``weight`` ``(O, L * A, kh, kw)`` makes of the one-hot keys ``(B, L * A)``
    tiled over a ``size`` frame, ``(B, O, h, w)``, without tiling them: each key's plane is
    constant, so its response (a constant map but for the zero-padded border) is computed once, on
    one all-ones plane per key, and each row sums the responses of its keys. The same values as
    the conv of the tiled planes (tested), for a fraction of the cost: the key planes were more
    than half of D's input channels on Ms. Pac-Man (9 keys x 2 vs 15 pixel channels)."""
    n_keys = weight.shape[1]
    ones = weight.new_ones(1, n_keys, *size)
    per_key = F.conv2d(ones, rearrange(weight, "o j a b -> (j o) 1 a b"), None, conv.stride, conv.padding,
                       groups=n_keys)
    per_key = rearrange(per_key, "1 (j o) y x -> j o y x", j=n_keys)
    return einsum(keys.to(per_key.dtype), per_key, "b j, j o y x -> b o y x")  # one matmul


class SpaceTimeTransformer(nn.Module):
    """Patch tokens of K context frames + the candidate, attention across space and time."""

    def __init__(self, cfg: ModelConfig, context: int, channels: int):
        super().__init__()
        sn, p = cfg.d_spectral_norm, cfg.d_patch
        dim = 4 * cfg.d_width  # as wide as the CNN's last stage at the default d_depth 3
        self.patch, self.stride = p, p
        self.embed = maybe_sn(nn.Linear(p * p * channels, dim), sn)
        # Position embeddings start about as large as the patch embeddings (not ViT's 0.02): D's
        # first job is to match each candidate patch with the same place in the context.
        self.pos_time = nn.Parameter(torch.randn(context + 1, dim) * POS_INIT)
        self.pos_row = nn.Parameter(torch.randn(MAX_GRID, dim) * POS_INIT)
        self.pos_col = nn.Parameter(torch.randn(MAX_GRID, dim) * POS_INIT)
        self.blocks = nn.ModuleList(TransformerBlock(dim, cfg.d_heads) for _ in range(cfg.d_layers))
        self.norm = nn.LayerNorm(dim)
        self.score = maybe_sn(nn.Linear(dim, 1), sn)
        self.features = dim

    def forward(self, context: torch.Tensor, frame: torch.Tensor, keys: torch.Tensor | None = None,
                pair: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (N, 1, h, w), candidate tokens (N, h, w, F)); ``keys`` is unused here: the
        action reaches this backbone through the projection only. ``pair`` as for the CNN."""
        if pair is not None:
            context = context[pair]
        x = torch.cat([context, frame[:, None]], dim=1)  # (N, K+1, C, H, W)
        t, gh, gw = x.shape[1], x.shape[-2] // self.patch, x.shape[-1] // self.patch
        if gh > MAX_GRID or gw > MAX_GRID:
            raise ValueError(f"transformer D takes at most {MAX_GRID} patches per side, got {gh}x{gw}")
        tok = rearrange(x, "b t c (h p1) (w p2) -> b t h w (p1 p2 c)", p1=self.patch, p2=self.patch)
        tok = self.embed(tok) + self.pos_time[:, None, None] + self.pos_row[:gh, None] + self.pos_col[None, :gw]
        tok = rearrange(tok, "b t h w d -> b (t h w) d")
        # Only SDPA's math kernel has a double backward, which R1 needs (it differentiates D's
        # output w.r.t. D's inputs, then trains on that). The fused kernel was 30-40 % faster
        # here (D fwd+bwd, batch 16, 64x64), so it stays on unless someone wants input gradients.
        wants_input_grad = torch.is_grad_enabled() and (context.requires_grad or frame.requires_grad)
        with sdpa_kernel(SDPBackend.MATH) if wants_input_grad else contextlib.nullcontext():
            for block in self.blocks:
                tok = block(tok)
        candidate = self.norm(rearrange(tok, "b (t h w) d -> b t h w d", t=t, h=gh)[:, -1])
        return rearrange(self.score(candidate), "b h w 1 -> b 1 h w"), candidate


class Discriminator(nn.Module):
    """``forward(context (B,K,C,H,W), frame (B,C,H,W), action (B,) | None) -> logits (B, 1, h, w)``
    (higher = real). With ``pair`` (N,), the N frames are judged under context rows ``pair``:
    the same as ``context[pair]``, without repeating the context's share of the work."""

    def __init__(self, cfg: ModelConfig, context: int, channels: int = 3):
        super().__init__()
        self.context, self.channels = context, channels
        self.num_actions = max(cfg.actions, 0)  # -1 (auto) is resolved by train.py
        self.action_history = cfg.action_history if self.num_actions else 1
        self.backbone = DBackbone(cfg.d_backbone).value
        net = PatchCNN if self.backbone == "cnn" else SpaceTimeTransformer
        self.net = net(cfg, context, channels)
        # Projection: one learned vector per action, dotted with every patch's features.
        self.embed = (maybe_sn(nn.Embedding(self.num_actions * self.action_history, self.net.features),
                               cfg.d_spectral_norm) if self.num_actions else None)

    def forward(self, context: torch.Tensor, frame: torch.Tensor, action: torch.Tensor | None = None,
                pair: torch.Tensor | None = None) -> torch.Tensor:
        if context.ndim != 5 or frame.ndim != 4:
            raise ValueError(f"D expects context (B, K, C, H, W) and frame (B, C, H, W), got "
                             f"{tuple(context.shape)} and {tuple(frame.shape)}")
        m, k, c, height, width = context.shape
        b = frame.shape[0]
        if pair is not None and tuple(pair.shape) != (b,):  # (its values are checked by indexing)
            raise ValueError(f"D's pair must name one of the {m} contexts per frame, shape ({b},); "
                             f"got shape {tuple(pair.shape)}")
        if (k != self.context or c != self.channels or tuple(frame.shape) != (b, c, height, width)
                or (pair is None and m != b)):
            raise ValueError(f"D was built for K={self.context}, C={self.channels}; got context "
                             f"{tuple(context.shape)} and frame {tuple(frame.shape)}")
        s = self.net.stride
        if height % s or width % s:
            raise ValueError(f"{self.backbone} D needs H and W divisible by {s}; got {height}x{width}")
        shape = action_shape(b, self.action_history)
        if self.num_actions and (action is None or tuple(action.shape) != shape):
            raise ValueError(f"D needs action indices of shape {shape}, got "
                             f"{None if action is None else tuple(action.shape)}")
        keys = None
        if self.num_actions:
            keys = key_one_hot(action, self.num_actions)
            a = rearrange(action.long(), "b -> b 1") if action.ndim == 1 else action.long()
        logits, features = self.net(context, frame.to(context.dtype), keys, pair)
        if self.embed is not None:
            offsets = torch.arange(a.shape[1], device=a.device) * self.num_actions  # one table per position
            e = reduce(self.embed(a + offsets), "b l f -> b f", "sum").to(features.dtype)
            logits = logits + rearrange(einsum(features, e, "b h w f, b f -> b h w"), "b h w -> b 1 h w")
        return logits.to(context.dtype)


def build_discriminator(cfg: ModelConfig, context: int, channels: int = 3) -> Discriminator:
    """The discriminator described by ``cfg`` for ``context`` past frames of ``channels`` channels."""
    return Discriminator(cfg, context, channels)
