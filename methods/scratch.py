"""scratch: the same architecture with random weights, every parameter trained.

The baseline that shows whether transfer helps at all (pretrained below scratch = negative transfer). One learning
rate for everything, since no part of the network is pretrained.

Schedule: random weights need far more steps than pretrained ones. With the fine-tuning schedule (3 epochs, at
least 60 steps), four of the six scratch cells of the committed default run chose their last validation pass
(pneumonia-mnist at budgets 64 and 256, SST-2 at 256 and 1024): still improving when the schedule ended, so the
"does transfer help" comparison measured an unconverged baseline. He, Girshick and Dollar (2019, "Rethinking
ImageNet pre-training") find that training from random initialisation catches up with fine-tuning given about 3x
its schedule; we take 10 epochs and at least 200 steps (~3.3x the fine-tuning defaults), still keeping the best
validation pass. Not measured here yet on the CPU suites (about 6 more minutes for `make bench`).
Version history: 1 - first version (the fine-tuning schedule); 2 - 10 epochs, at least 200 steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.api import TEXT, Method, TaskSpec
from bench.core.model import set_trainable
from bench.core.registry import METHODS
from methods._common import check_lr


@METHODS.register("scratch")
@dataclass(frozen=True)
class Scratch(Method):
    name = "scratch"
    version = 2
    pretrained = False
    description = "random init, same architecture, everything trains"

    lr: float = 1e-3

    def __post_init__(self) -> None:
        check_lr("lr", self.lr)

    @classmethod
    def defaults_for(cls, spec: TaskSpec) -> dict:
        return {"lr": 1e-4} if spec.modality == TEXT else {}

    @classmethod
    def train_defaults(cls, spec: TaskSpec) -> dict:
        return {"epochs": 10, "min_steps": 200}  # see the module docstring

    def prepare(self, model, backbone, task):
        set_trainable(model, True)
        return model

    def param_groups(self, model):
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": self.lr}]
