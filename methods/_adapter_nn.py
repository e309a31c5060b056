"""The adapter layers (heavy: ``methods/adapter.py`` imports this inside ``prepare``, so listing methods stays
torch-free)."""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    """x + up(act(down(x))) on the last dimension; ``up`` starts at zero (identity at initialisation)."""

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.act = nn.GELU()
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class AfterLinear(nn.Module):
    """A linear layer followed by an adapter: drop-in replacement for the wrapped projection."""

    def __init__(self, linear: nn.Linear, bottleneck: int) -> None:
        super().__init__()
        self.linear = linear
        self.adapter = Bottleneck(linear.out_features, bottleneck)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.linear(x))


class ParallelConv(nn.Module):
    """A (depthwise) convolution with a 1x1 bottleneck branch beside it: conv(x) + up(down(x))."""

    def __init__(self, conv: nn.Conv2d, bottleneck: int) -> None:
        super().__init__()
        self.conv = conv
        self.down = nn.Conv2d(conv.in_channels, bottleneck, 1, stride=conv.stride, bias=False)
        self.up = nn.Conv2d(bottleneck, conv.out_channels, 1, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.up(self.down(x))
