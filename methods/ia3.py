"""ia3: (IA)^3, learned rescaling vectors (Liu et al. 2022) through peft. Keys and values (and, on MiniLM, the
attention-output and FFN-output projections' inputs, peft's default for BERT) are multiplied elementwise by
trainable vectors initialised to one; on EfficientNet the pointwise convolutions' outputs (expansion, head conv)
and the projection convolutions' inputs are rescaled. Fewer parameters than LoRA; DOMAIN.md: LR ~1e-3.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import Method
from bench.model import freeze_batchnorm_stats, set_trainable
from bench.registry import METHODS
from methods._common import check_lr, split_groups

TARGETS = {
    "minilm-l6": (["key", "value", "output.dense"], ["output.dense"]),
    "efficientnet-lite0": (r".*\.(conv_pw|conv_pwl|conv_head)$", r".*\.conv_pwl$"),
    "smollm2-135m": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),  # peft's default for Llama
}


@METHODS.register("ia3")
@dataclass(frozen=True)
class IA3(Method):
    name = "ia3"
    version = 1
    description = "peft (IA)^3 rescaling vectors + head; BN stats fixed"

    lr: float = 3e-3
    head_lr: float = 1e-3

    def __post_init__(self) -> None:
        check_lr("lr", self.lr)
        check_lr("head_lr", self.head_lr)

    def unsupported_reason(self, task, backbone) -> str | None:
        if backbone.name not in TARGETS:
            return f"no (IA)^3 target modules are defined for backbone {backbone.name}"
        return None

    def prepare(self, model, backbone, task):
        from peft import IA3Config, inject_adapter_in_model

        targets, feedforward = TARGETS[backbone.name]
        set_trainable(model, False)
        config = IA3Config(target_modules=targets, feedforward_modules=feedforward)
        model.encoder = inject_adapter_in_model(config, model.encoder)
        for name, p in model.encoder.named_parameters():
            p.requires_grad_("ia3_" in name)
        set_trainable(model.head, True)
        return model

    def train_mode(self, model) -> None:
        model.train()
        freeze_batchnorm_stats(model.encoder)

    def param_groups(self, model):
        return split_groups(model, self.lr, self.head_lr)

    def merge(self, model) -> bool:
        """Fold the adapters into the base weights (peft ``merge``): inference then costs what the base model
        costs."""
        from peft.tuners.tuners_utils import BaseTunerLayer

        layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
        for layer in layers:
            layer.merge()
        return bool(layers)
