"""The adapted model a cell trains: the backbone's encoder followed by a new head."""

from __future__ import annotations

import torch
from torch import nn


class AdaptModel(nn.Module):
    """``encoder`` (pretrained or random backbone returning pooled features) followed by a new ``head``.

    Methods change the encoder in place (freeze it, inject LoRA layers, ...) so ``model.encoder`` and
    ``model.head`` keep their meaning for every method, and the forgetting probe can always reach the backbone.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(**inputs))
