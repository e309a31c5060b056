"""bitfit: bias-only fine-tuning (Ben Zaken, Goldberg & Ravfogel, ACL 2022). Every bias term of the backbone and
the head train; all other weights stay frozen. On EfficientNet the convolutions have no bias, so the trainable
backbone biases are the batch-norm shifts (their running statistics stay fixed). ~0.1% of the parameters;
DOMAIN.md: LR ~1e-3..1e-4.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import Method
from bench.model import freeze_batchnorm_stats, set_trainable
from bench.registry import METHODS
from methods._common import check_lr, split_groups


@METHODS.register("bitfit")
@dataclass(frozen=True)
class BitFit(Method):
    name = "bitfit"
    version = 1
    description = "biases only (+ head); BN running stats fixed"

    lr: float = 1e-3
    head_lr: float = 1e-3

    def __post_init__(self) -> None:
        check_lr("lr", self.lr)
        check_lr("head_lr", self.head_lr)

    def unsupported_reason(self, task, backbone) -> str | None:
        if backbone.name == "smollm2-135m":
            return "SmolLM2 (Llama) has no bias terms: BitFit would train nothing but the head (use frozen)"
        return None

    def prepare(self, model, backbone, task):
        for name, p in model.encoder.named_parameters():
            p.requires_grad_(name.endswith(".bias"))
        set_trainable(model.head, True)
        return model

    def train_mode(self, model) -> None:
        model.train()
        freeze_batchnorm_stats(model.encoder)

    def param_groups(self, model):
        return split_groups(model, self.lr, self.head_lr)
