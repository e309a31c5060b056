"""The visual prompt (heavy: ``methods/prompt.py`` imports this inside ``prepare``, so listing methods stays
torch-free)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PadPrompter(nn.Module):
    """Adds a learnable frame of width ``pad`` around ``size`` x ``size`` images (zero inside)."""

    def __init__(self, size: int, pad: int) -> None:
        super().__init__()
        inner = size - 2 * pad
        self.size, self.pad = size, pad
        self.top = nn.Parameter(torch.zeros(3, pad, size))
        self.bottom = nn.Parameter(torch.zeros(3, pad, size))
        self.left = nn.Parameter(torch.zeros(3, inner, pad))
        self.right = nn.Parameter(torch.zeros(3, inner, pad))

    def frame(self) -> torch.Tensor:
        inner = self.size - 2 * self.pad
        middle = torch.cat([self.left, self.top.new_zeros(3, inner, inner), self.right], dim=2)
        return torch.cat([self.top, middle, self.bottom], dim=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        frame = self.frame().unsqueeze(0)
        if frame.shape[-1] != pixel_values.shape[-1] or frame.shape[-2] != pixel_values.shape[-2]:
            frame = F.interpolate(frame, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
        return pixel_values + frame


class PromptedVision(nn.Module):
    """A vision encoder whose inputs first pass through a visual prompt."""

    def __init__(self, encoder: nn.Module, prompter: PadPrompter) -> None:
        super().__init__()
        self.prompter = prompter
        self.inner = encoder

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.inner(self.prompter(pixel_values))

    def blocks(self) -> list[nn.Module]:
        return self.inner.blocks()
