"""llrd: full fine-tuning with layer-wise learning-rate decay (Howard & Ruder 2018; Clark et al. 2020).

Block i of B (input first, ``encoder.blocks()``) trains at lr * decay^(B - 1 - i): the top block at ``lr``, each
block below it ``decay`` times slower, so generic early layers stay close to their pretrained values. The head
trains at ``head_lr``. DOMAIN.md: decay 0.65-0.95; we use 0.8.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FineTune


@METHODS.register("llrd")
@dataclass(frozen=True)
class LLRD(FineTune):
    name = "llrd"
    version = 1
    description = "full fine-tuning, LR decayed by a factor per block toward the input"

    decay: float = 0.8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.decay <= 1:
            raise ValueError(f"Invalid decay: {self.decay} (a factor in (0, 1], e.g. 0.8)")

    def prepare(self, model, backbone, task):
        set_trainable(model, True)
        return model

    def param_groups(self, model):
        blocks = model.encoder.blocks()
        groups, seen = [], set()
        for i, block in enumerate(blocks):
            params = [p for p in block.parameters() if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in params)
            groups.append({"params": params, "lr": self.lr * self.decay ** (len(blocks) - 1 - i)})
        head = [p for p in model.head.parameters() if p.requires_grad]
        seen.update(id(p) for p in head)
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
        if rest:  # parameters outside the listed blocks (none for the current backbones) train at the top LR
            groups.append({"params": rest, "lr": self.lr})
        return [*groups, {"params": head, "lr": self.head_lr}]
