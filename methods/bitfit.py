"""bitfit: bias-only fine-tuning (Ben Zaken, Goldberg & Ravfogel, ACL 2022). Every bias term of the backbone and
the head train; all other weights stay frozen. On EfficientNet the convolutions have no bias, so the trainable
backbone biases are the batch-norm shifts (their running statistics stay fixed). ~0.1% of the parameters;
DOMAIN.md: LR ~1e-3..1e-4.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FrozenBackbone


@METHODS.register("bitfit")
@dataclass(frozen=True)
class BitFit(FrozenBackbone):
    name = "bitfit"
    version = 1
    description = "biases only (+ head); BN running stats fixed"

    def unsupported_reason(self, task, backbone) -> str | None:
        if not backbone.traits().has_bias:
            return f"{backbone.name} has no bias terms: BitFit would train nothing but the head (use frozen)"
        return None

    def prepare(self, model, backbone, task):
        for name, p in model.encoder.named_parameters():
            p.requires_grad_(name.endswith(".bias"))
        set_trainable(model.head, True)
        return model
