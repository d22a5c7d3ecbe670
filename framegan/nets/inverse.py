"""The inverse model q(class | context, next frame): which latent action explains a step.

Frames are ``(B, T, C, H, W)`` float in [-1, 1]. With discrete noise (``model.z_classes``) trained
winner-takes-all, each class becomes one choice of the game (left or right at a fork). Footage with
no key log has no labels to say which choice a real step took; q learns it from the generator's
own best-of-k winners (engine.q_step): for every training window, the class whose sample came
closest to the real next frame. Applied to any footage, q labels each step with its latent action
(Genie's latent action model, ILPO's latent policy labels; RESEARCH.md), and a player can then press
the class that does what they want.

A small strided CNN over the channel-stacked (context, frame), global average pool, linear.
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
        chs = [(context + 1) * channels] + [min(width * 2**i, 8 * width) for i in range(depth)]
        layers = []
        for cin, cout in itertools.pairwise(chs):
            layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(chs[-1], classes)

    def forward(self, context: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        x = torch.cat([rearrange(context, "b t c h w -> b (t c) h w"), frame.to(context.dtype)], dim=1)
        return self.head(reduce(self.net(x), "b c h w -> b c", "mean")).float()
