"""prefix: prefix tuning (Li & Liang 2021) through peft. ``n_tokens`` trainable key/value vectors are prepended
to the attention of every layer of the frozen text encoder; optionally reparameterised by an MLP during training
(``projection``). Prefixes act on attention keys and values, which CNNs do not have: unsupported on them.
Parameters (no projection): n_tokens * n_layers * 2 * hidden. DOMAIN.md: 10-20 virtual tokens; expected to be
weaker than LoRA for classification.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FrozenBackbone


@METHODS.register("prefix")
@dataclass(frozen=True)
class Prefix(FrozenBackbone):
    name = "prefix"
    version = 1
    description = "peft prefix tuning: trainable key/value prefixes in every layer + head (text only)"

    n_tokens: int = 20
    projection: bool = False
    lr: float = 1e-2

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_tokens < 1:
            raise ValueError(f"Invalid n_tokens: {self.n_tokens} (must be >= 1)")

    def unsupported_reason(self, task, backbone) -> str | None:
        if not backbone.traits().attention:
            return (
                f"prefix tuning prepends key/value vectors to attention layers; {backbone.name} has none "
                "(use prompt: visual prompting works on CNNs)"
            )
        return None

    def prepare(self, model, backbone, task):
        from peft import PrefixTuningConfig, TaskType, get_peft_model

        set_trainable(model, False)
        config = PrefixTuningConfig(
            task_type=TaskType.FEATURE_EXTRACTION, num_virtual_tokens=self.n_tokens, prefix_projection=self.projection
        )
        model.encoder.wrap_transformer(lambda transformer: get_peft_model(transformer, config))
        for name, p in model.encoder.named_parameters():
            p.requires_grad_("prompt_encoder" in name)
        set_trainable(model.head, True)
        return model
