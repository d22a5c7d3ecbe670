"""The inverse model q(class | context, next frame): which latent action explains a step.

Frames are ``(B, T, C, H, W)`` float in [-1, 1]. With discrete noise (``model.z_classes``) trained
winner-takes-all, each class becomes one choice of the game (left or right at a fork). Footage with
no key log has no labels to say which choice a real step took; q learns it from the generator's
own best-of-k winners (engine.q_step): for every training window, the class whose sample came
closest to the real next frame. Applied to any footage, q labels each step with its latent action
(Genie's latent action model, ILPO's latent policy labels; RESEARCH.md), and a player can then press
the class that does what they want.

A small strided CNN over the channel-stacked (context, frame, frame - last context frame), global
max pool, linear. Why these two: a latent action is a change of a few pixels (a sprite one step to
the left or right), so q sees the change itself, and max pooling keeps that sparse evidence where
an average over the frame drowned it. Measured on the fork game, q trained on a fixed G's decisive
winners (600 steps): average pool answered one class for every held-out step (61 % right on the
decisive ones, chance level), max pool 100 %.
"""
from __future__ import annotations

import itertools

import torch
from einops import rearrange, reduce
from torch import nn


def _encoder(cin: int, width: int, depth: int) -> tuple[nn.Sequential, int]:
    chs = [cin] + [min(width * 2**i, 8 * width) for i in range(depth)]
    layers = []
    for a, b in itertools.pairwise(chs):
        layers += [nn.Conv2d(a, b, 4, 2, 1), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers), chs[-1]


class InverseModel(nn.Module):
    """``forward(context (B,K,C,H,W), frame (B,C,H,W)) -> class logits (B, classes)``;
    ``prior(context) -> class logits (B, classes)``: how likely each class is to explain the next
    step, before it is seen.

    Why a prior: rollout and evaluation draw a class for every sample. Uniform draws are right at a
    fork (each branch half the time) and wrong where one class stands for a rare event: on Space
    Invaders one class learned "the invaders change their animation frame" (it won 9 % of the
    windows) and the other "they do not" (91 %), and uniform draws gave the rare event to half the
    samples. The prior learns from the same best-of-k winners as q, without the next frame
    (cf. the hypothesis scores of resilient multiple-choice learning, Letzelter et al. 2023)."""

    def __init__(self, context: int, classes: int, width: int = 16, depth: int = 3, channels: int = 3):
        super().__init__()
        self.context, self.classes = context, classes
        self.net, out = _encoder((context + 2) * channels, width, depth)
        self.head = nn.Linear(out, classes)
        # The context and its last change (last frame minus the one before): where the scene is
        # moving, and how, is what a rare event's timing can show.
        self.prior_net, out = _encoder((context + 1) * channels, width, depth)
        self.prior_head = nn.Linear(out, classes)
        self.has_prior = True  # False for a checkpoint saved before the prior: classes are cycled

    def forward(self, context: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        frame = frame.to(context.dtype)
        x = torch.cat([rearrange(context, "b t c h w -> b (t c) h w"), frame, frame - context[:, -1]], dim=1)
        return self.head(reduce(self.net(x), "b c h w -> b c", "max")).float()

    def prior(self, context: torch.Tensor) -> torch.Tensor:
        # one context frame (data.context=1) shows no change: a zero plane, the same layout
        change = context[:, -1] - context[:, -2] if context.shape[1] > 1 else torch.zeros_like(context[:, -1])
        x = torch.cat([rearrange(context, "b t c h w -> b (t c) h w"), change], dim=1)
        return self.prior_head(reduce(self.prior_net(x), "b c h w -> b c", "max")).float()


PRIOR_KEYS = ("prior_net.", "prior_head.")


def inverse_fits(q: InverseModel, weights: dict) -> bool:
    """Whether saved weights fit this design of q (older checkpoints hold an average-pooled q
    without the change channels; they are retrained or skipped, not an error). Weights saved
    before the prior fit: ``load_inverse_weights`` loads q and leaves the prior out."""
    own = {k: v for k, v in q.state_dict().items() if k in weights or not k.startswith(PRIOR_KEYS)}
    return own.keys() == weights.keys() and all(own[k].shape == weights[k].shape for k in own)


def load_inverse_weights(q: InverseModel, weights: dict) -> None:
    """Load weights that ``inverse_fits``; without the prior's, ``q.has_prior`` becomes False."""
    q.has_prior = all(any(k.startswith(p) for k in weights) for p in PRIOR_KEYS)
    q.load_state_dict(weights, strict=q.has_prior)
