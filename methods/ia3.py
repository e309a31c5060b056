"""ia3: (IA)^3, learned rescaling vectors (Liu et al. 2022) through peft. The backbone says where
(``Backbone.ia3_targets``): on transformers, keys and values and the FFN output projection's input (peft's default
per model type); on CNNs, the pointwise convolutions' outputs and the projection convolutions' inputs. Each is
multiplied elementwise by a trainable vector initialised to one. Fewer parameters than LoRA; DOMAIN.md: LR ~1e-3.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.registry import METHODS
from methods._common import FrozenBackbone, inject_peft, merge_tuner_layers


@METHODS.register("ia3")
@dataclass(frozen=True)
class IA3(FrozenBackbone):
    name = "ia3"
    version = 1
    description = "peft (IA)^3 rescaling vectors + head; BN stats fixed"

    lr: float = 3e-3

    def prepare(self, model, backbone, task):
        from peft import IA3Config

        targets, feedforward = backbone.ia3_targets(model.encoder)
        return inject_peft(model, IA3Config(target_modules=targets, feedforward_modules=feedforward), "ia3_")

    mergeable = True

    def merge(self, model) -> bool:
        return merge_tuner_layers(model)
