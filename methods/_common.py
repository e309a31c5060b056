"""Small checks, parameter-group helpers and the shared base of the fine-tuning methods."""

from __future__ import annotations

from dataclasses import dataclass

from bench.core.api import TEXT, Method, TaskSpec
from bench.core.model import freeze_batchnorm_stats, set_trainable


def check_lr(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"Invalid {name}: {value} (a learning rate in (0, 1), e.g. 1e-4)")


def split_groups(model, backbone_lr: float, head_lr: float, backbone_decay: float | None = None) -> list[dict]:
    """Two optimizer groups: trainable encoder parameters at ``backbone_lr``, head parameters at ``head_lr``.
    ``backbone_decay`` overrides the weight decay of the backbone group (None: the loop's default)."""
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    backbone = {
        "params": [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids],
        "lr": backbone_lr,
    }
    if backbone_decay is not None:
        backbone["weight_decay"] = backbone_decay
    return [backbone, {"params": head, "lr": head_lr}]


@dataclass(frozen=True)
class FrozenBackbone(Method):
    """Base of the parameter-efficient methods: the pretrained backbone stays frozen, batch-norm statistics included,
    except for the parameters the method adds or selects, which train at ``lr``; the new head trains at
    ``head_lr``."""

    lr: float = 1e-3
    head_lr: float = 1e-3

    def __post_init__(self) -> None:
        check_lr("lr", self.lr)
        check_lr("head_lr", self.head_lr)

    def train_mode(self, model) -> None:
        model.train()
        freeze_batchnorm_stats(model.encoder)

    def param_groups(self, model):
        return split_groups(model, self.lr, self.head_lr)


@dataclass(frozen=True)
class FineTune(FrozenBackbone):
    """Base of the methods that train pretrained backbone weights (full, partial, gradual, llrd, l2sp): the two
    learning rates of ``FrozenBackbone``, with the backbone's below the head's.

    DOMAIN.md: 1e-5..1e-4 for vision, 2e-5..5e-5 for BERT-like text; we take the top of each range because the
    schedules here are short; head LR 1e-3. Batch-norm running statistics stay at their pretrained values unless
    ``bn_stats=update`` (see methods/full.py for the measurement behind this).
    """

    lr: float = 1e-4  # backbone
    bn_stats: str = "frozen"  # "frozen": keep pretrained running statistics; "update": re-estimate them

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bn_stats not in ("frozen", "update"):
            raise ValueError(f"Invalid bn_stats: {self.bn_stats!r} (use 'frozen' or 'update')")

    @classmethod
    def defaults_for(cls, spec: TaskSpec) -> dict:
        return {"lr": 5e-5} if spec.modality == TEXT else {}

    def train_mode(self, model) -> None:
        if self.bn_stats == "frozen":
            super().train_mode(model)
        else:
            model.train()


def inject_peft(model, config, marker: str):
    """Inject a peft tuner into the encoder in place; only its parameters (names containing ``marker``) and the
    head train."""
    from peft import inject_adapter_in_model

    set_trainable(model, False)
    model.encoder = inject_adapter_in_model(config, model.encoder)
    for name, p in model.encoder.named_parameters():
        p.requires_grad_(marker in name)
    set_trainable(model.head, True)
    return model


def merge_tuner_layers(model) -> bool:
    """Fold peft tuner layers into the base weights (``merge``): inference then costs what the base model costs."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for layer in layers:
        layer.merge()
    return bool(layers)
