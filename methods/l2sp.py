"""l2sp: full fine-tuning with the L2-SP penalty (Li, Grandvalet & Davoine, ICML 2018).

Loss = task loss + alpha/2 * ||w_backbone - w_pretrained||^2 + beta/2 * ||w_head||^2. The penalty pulls the
backbone toward its starting point instead of toward zero, so plain weight decay is switched off for the backbone
(the head keeps the loop's decay as well as beta). The pretrained values are copied once at prepare time and kept
outside the module's state, so they are neither trained nor counted nor saved. DOMAIN.md: alpha ~1e-4..1e-2.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import FineTune, split_groups


@METHODS.register("l2sp")
@dataclass(frozen=True)
class L2SP(FineTune):
    name = "l2sp"
    version = 1
    description = "full fine-tuning + alpha/2 ||w - w_pretrained||^2 toward the pretrained weights"

    alpha: float = 1e-2
    beta: float = 1e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"Invalid alpha/beta: {self.alpha}/{self.beta} (penalty weights must be >= 0)")

    def prepare(self, model, backbone, task):
        set_trainable(model, True)
        # a plain attribute (not a buffer): the anchor must not appear in state_dict, counts or fingerprints
        object.__setattr__(model, "_l2sp_anchor", [(p, p.detach().clone()) for p in model.encoder.parameters()])
        return model

    def param_groups(self, model):
        return split_groups(model, self.lr, self.head_lr, backbone_decay=0.0)

    def penalty(self, model):
        backbone = sum(((p - p0) ** 2).sum() for p, p0 in model._l2sp_anchor)
        head = sum((p**2).sum() for name, p in model.head.named_parameters() if name.endswith("weight"))
        return 0.5 * self.alpha * backbone + 0.5 * self.beta * head
