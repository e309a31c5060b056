"""partial: partial fine-tuning. The early backbone blocks stay frozen; the last ``n_blocks`` blocks and the head
train, the blocks at a lower learning rate than the head (DOMAIN.md: ~10x below).

Blocks are the backbone's stages in input order (``encoder.blocks()``): EfficientNet-Lite0 has 9 (stem, seven
MBConv stages, head conv), MiniLM 7 (embeddings, six transformer layers). Middle ground between frozen and full.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FineTune


@METHODS.register("partial")
@dataclass(frozen=True)
class Partial(FineTune):
    name = "partial"
    version = 1
    description = "last N backbone blocks + head train; backbone LR below head LR"

    n_blocks: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_blocks < 1:
            raise ValueError(f"Invalid n_blocks: {self.n_blocks} (train at least one block; use frozen for none)")

    def prepare(self, model, backbone, task):
        blocks = model.encoder.blocks()
        if self.n_blocks > len(blocks):
            raise ValueError(f"Invalid n_blocks: {self.n_blocks} ({backbone.name} has {len(blocks)} blocks)")
        set_trainable(model, False)
        for block in blocks[-self.n_blocks :]:
            set_trainable(block, True)
        set_trainable(model.head, True)
        return model
