"""Networks: the generator G(x, z) and the temporal discriminator D(context, frame)."""
from torch import nn

from framegan.nets.discriminator import Discriminator, build_discriminator
from framegan.nets.generator import Generator, build_generator


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters (spectral norm's original weights count once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = ["Discriminator", "Generator", "build_discriminator", "build_generator", "count_params"]
