"""frozen: feature extraction. The backbone is frozen (weights and batch-norm statistics), its pooled features
are computed once per cell and reused for every epoch, and only a linear head trains on them.

Fastest and forgets nothing by construction; expected to be weak when the target domain is far from pretraining.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from bench.api import Method, TaskSpec
from bench.model import set_trainable
from bench.registry import METHODS
from methods._common import check_lr


@METHODS.register("frozen")
@dataclass(frozen=True)
class Frozen(Method):
    name = "frozen"
    version = 1
    cache_features = True
    description = "backbone frozen (BN stats too), features cached once, linear head trains"
    sweep_aliases: ClassVar[dict[str, str]] = {"head_lr": "lr"}  # only the head trains: its LR is ``lr``

    lr: float = 1e-3

    def __post_init__(self) -> None:
        check_lr("lr", self.lr)

    @classmethod
    def train_defaults(cls, spec: TaskSpec) -> dict:
        # head steps on cached features cost microseconds: train the linear head to convergence
        return {"epochs": 100, "min_steps": 1000, "weight_decay": 0.0}

    def prepare(self, model, backbone, task):
        set_trainable(model.encoder, False)
        set_trainable(model.head, True)
        model.encoder.eval()
        return model

    def train_mode(self, model) -> None:
        model.head.train()
        model.encoder.eval()  # batch-norm statistics and dropout of a frozen backbone stay fixed

    def param_groups(self, model):
        return [{"params": list(model.head.parameters()), "lr": self.lr}]
