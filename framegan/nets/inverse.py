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


class InverseModel(nn.Module):
    """``forward(context (B,K,C,H,W), frame (B,C,H,W)) -> class logits (B, classes)``."""

    def __init__(self, context: int, classes: int, width: int = 16, depth: int = 3, channels: int = 3):
        super().__init__()
        self.context, self.classes = context, classes
        chs = [(context + 2) * channels] + [min(width * 2**i, 8 * width) for i in range(depth)]
        layers = []
        for cin, cout in itertools.pairwise(chs):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(chs[-1], classes)

    def forward(self, context: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        frame = frame.to(context.dtype)
        x = torch.cat([rearrange(context, "b t c h w -> b (t c) h w"), frame, frame - context[:, -1]], dim=1)
        return self.head(reduce(self.net(x), "b c h w -> b c", "max")).float()


def inverse_fits(q: InverseModel, weights: dict) -> bool:
    """Whether saved weights fit this design of q (older checkpoints hold an average-pooled q
    without the change channels; they are retrained or skipped, not an error)."""
    own = q.state_dict()
    return own.keys() == weights.keys() and all(own[k].shape == weights[k].shape for k in own)
