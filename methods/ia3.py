"""ia3: (IA)^3, learned rescaling vectors (Liu et al. 2022) through peft. Keys and values (and, on MiniLM, the
attention-output and FFN-output projections' inputs, peft's default for BERT) are multiplied elementwise by
trainable vectors initialised to one; on EfficientNet the pointwise convolutions' outputs (expansion, head conv)
and the projection convolutions' inputs are rescaled. Fewer parameters than LoRA; DOMAIN.md: LR ~1e-3.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.registry import METHODS
from methods._common import FrozenBackbone, inject_peft, merge_tuner_layers

TARGETS = {
    "minilm-l6": (["key", "value", "output.dense"], ["output.dense"]),
    "efficientnet-lite0": (r".*\.(conv_pw|conv_pwl|conv_head)$", r".*\.conv_pwl$"),
    "smollm2-135m": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),  # peft's default for Llama
}


@METHODS.register("ia3")
@dataclass(frozen=True)
class IA3(FrozenBackbone):
    name = "ia3"
    version = 1
    description = "peft (IA)^3 rescaling vectors + head; BN stats fixed"

    lr: float = 3e-3

    def unsupported_reason(self, task, backbone) -> str | None:
        if backbone.name not in TARGETS:
            return f"no (IA)^3 target modules are defined for backbone {backbone.name}"
        return None

    def prepare(self, model, backbone, task):
        from peft import IA3Config

        targets, feedforward = TARGETS[backbone.name]
        return inject_peft(model, IA3Config(target_modules=targets, feedforward_modules=feedforward), "ia3_")

    def merge(self, model) -> bool:
        return merge_tuner_layers(model)
