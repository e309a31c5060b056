"""Small checks and parameter-group helpers shared by the method modules."""

from __future__ import annotations


def check_lr(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"Invalid {name}: {value} (a learning rate in (0, 1), e.g. 1e-4)")


def split_groups(model, backbone_lr: float, head_lr: float) -> list[dict]:
    """Two optimizer groups: trainable encoder parameters at ``backbone_lr``, head parameters at ``head_lr``."""
    head = [p for p in model.head.parameters() if p.requires_grad]
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in head_ids]
    return [{"params": backbone, "lr": backbone_lr}, {"params": head, "lr": head_lr}]
