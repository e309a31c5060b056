"""scratch: the same architecture with random weights, every parameter trained.

The baseline that shows whether transfer helps at all (pretrained below scratch = negative transfer). Same
schedule as ``full``; one learning rate for everything, since no part of the network is pretrained.
Version history: 1 - first version.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.api import TEXT, Method, TaskSpec
from bench.model import set_trainable
from bench.registry import METHODS
from methods._common import check_lr


@METHODS.register("scratch")
@dataclass(frozen=True)
class Scratch(Method):
    name = "scratch"
    version = 1
    pretrained = False
    description = "random init, same architecture, everything trains"

    lr: float = 1e-3

    def __post_init__(self) -> None:
        check_lr("lr", self.lr)

    @classmethod
    def defaults_for(cls, spec: TaskSpec) -> dict:
        return {"lr": 1e-4} if spec.modality == TEXT else {}

    def prepare(self, model, backbone, task):
        set_trainable(model, True)
        return model

    def param_groups(self, model):
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": self.lr}]
