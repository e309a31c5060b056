"""The helpers every method and the harness use to freeze, count, fingerprint and head a model. torch is imported
inside each function: methods import this module at their top, and listing methods must not load torch."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)


def freeze_batchnorm_stats(module: nn.Module) -> None:
    """Keep batch-norm running statistics fixed (eval mode) inside a module that is otherwise training."""
    from torch import nn

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def count_params(model: nn.Module) -> dict[str, int]:
    head_ids = {id(p) for p in model.head.parameters()}
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    return {
        "total": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in trainable),
        "trainable_no_head": sum(p.numel() for p in trainable if id(p) not in head_ids),
    }


def quantized_share(encoder: nn.Module) -> dict[str, float | int]:
    """How much of the backbone is stored quantized: the number of original weights held in bitsandbytes 4-bit
    layers, and their share of all pretrained backbone weights (counted at full precision, since 4-bit storage
    packs two weights per byte). Adapter parameters (LoRA) are not backbone weights and are left out."""
    quantized, total = 0, 0
    for name, module in encoder.named_modules():
        if "lora_" in name:
            continue
        if type(module).__name__ == "Linear4bit":
            quantized += module.in_features * module.out_features
            total += module.in_features * module.out_features
            total += module.bias.numel() if module.bias is not None else 0
        else:
            total += sum(p.numel() for p in module.parameters(recurse=False))
    out: dict[str, float | int] = {"quantized_weights": quantized}
    if quantized:
        out["quantized_fraction"] = quantized / total
    return out


def tensor_digests(module: nn.Module) -> dict[str, str]:
    """sha1 of every parameter and buffer's bytes, by state-dict name."""
    import torch

    out = {}
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous().reshape(-1)
        out[name] = hashlib.sha1(t.view(torch.uint8).numpy().tobytes()).hexdigest()
    return out


def fingerprint(module: nn.Module, digests: dict[str, str] | None = None) -> str:
    """sha256 over every parameter and buffer (names and bytes): equal iff the weights are identical. ``digests``:
    the module's ``tensor_digests`` when the caller already has them."""
    h = hashlib.sha256()
    for name, digest in sorted((digests or tensor_digests(module)).items()):
        h.update(f"{name}:{digest};".encode())
    return h.hexdigest()


def make_head(in_features: int, num_outputs: int) -> nn.Linear:
    from torch import nn

    head = nn.Linear(in_features, num_outputs)
    nn.init.zeros_(head.bias)
    nn.init.normal_(head.weight, std=0.01)
    return head
