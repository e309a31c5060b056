"""full: full fine-tuning. Every weight trains; AdamW with warmup then linear decay (the loop), weight decay
0.01, and a lower learning rate for the pretrained backbone than for the new head.

Usual settings (DOMAIN.md): LR 2e-5..5e-5 for BERT-like encoders (we use 5e-5: MiniLM is small), 1e-5..1e-4 for
vision (1e-4), head 1e-3. Best ceiling with enough data; most memory; most forgetting.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import TEXT, Method, TaskSpec
from bench.model import set_trainable
from bench.registry import METHODS
from methods._common import check_lr, split_groups


@METHODS.register("full")
@dataclass(frozen=True)
class Full(Method):
    name = "full"
    version = 1
    description = "all weights train; backbone LR below head LR"

    lr: float = 1e-4  # backbone
    head_lr: float = 1e-3

    def __post_init__(self) -> None:
        check_lr("lr", self.lr)
        check_lr("head_lr", self.head_lr)

    @classmethod
    def defaults_for(cls, spec: TaskSpec) -> dict:
        return {"lr": 5e-5} if spec.modality == TEXT else {}

    def prepare(self, model, backbone):
        set_trainable(model, True)
        return model

    def param_groups(self, model):
        return split_groups(model, self.lr, self.head_lr)
