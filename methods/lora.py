"""lora: low-rank adaptation (Hu et al. 2021) through peft. Each targeted weight W gets a trainable delta
(alpha / r) * B A with A: r x d_in, B: d_out x r (B starts at zero, so training starts from the pretrained
function); everything else in the backbone is frozen, batch-norm statistics included; the new head trains.

Targets come from the backbone (``Backbone.lora_targets``): every linear layer inside a transformer's layers
(MiniLM: query, key, value, attention output, FFN in/out); every 1x1 convolution and linear layer of a CNN
(EfficientNet: expansion, projection, head conv), where a 1x1 conv is a linear map per pixel.
Trainable backbone parameters = sum over targets of r * (d_in + d_out).
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.registry import METHODS
from methods._common import FrozenBackbone, inject_peft, merge_tuner_layers


@METHODS.register("lora")
@dataclass(frozen=True)
class LoRA(FrozenBackbone):
    name = "lora"
    version = 1
    description = "peft LoRA on linear / pointwise-conv layers + head; BN stats fixed"

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.r < 1:
            raise ValueError(f"Invalid r: {self.r} (rank must be >= 1)")
        if self.alpha <= 0:
            raise ValueError(f"Invalid alpha: {self.alpha} (must be > 0; the usual choice is 2 * r)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Invalid dropout: {self.dropout} (must be in [0, 1))")

    def prepare(self, model, backbone, task):
        from peft import LoraConfig

        config = LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=backbone.lora_targets(model.encoder),
        )
        return inject_peft(model, config, "lora_")

    mergeable = True

    def merge(self, model) -> bool:
        return merge_tuner_layers(model)
