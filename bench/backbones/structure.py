"""Where a network can be cut and adapted, found from its module types: a transformer's layer list, a CNN's stages,
the modules of given types inside a scope. The families (``vision.py``, ``text.py``) and the encoders use these, so a
user's own model needs no code. Written here rather than taken from a library because peft and timm each know only
their own half (peft: target names per model type; timm: stage names per architecture). torch is imported inside the
functions that need it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn


def params_in(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def layer_list(model: nn.Module) -> nn.ModuleList:
    """A transformer's list of layers: the ModuleList holding the most parameters."""
    from torch import nn

    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 1]
    if not lists:
        raise ValueError(f"{type(model).__name__} has no list of layers (nn.ModuleList) to adapt")
    return max(lists, key=params_in)


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """Input-first stages of a transformer: what comes before the layer list (embeddings), each layer, and what
    comes after it (final norm), following the path from ``model`` down to the layer list."""
    layers = layer_list(model)

    def along(module: nn.Module) -> list[nn.Module]:
        out: list[nn.Module] = []
        for child in module.children():
            if child is layers:
                out.extend(layers)
            elif not params_in(child):
                continue
            elif any(m is layers for m in child.modules()):
                out.extend(along(child))
            else:
                out.append(child)
        return out

    return along(model)


def cnn_blocks(net: nn.Module) -> list[nn.Module]:
    """Input-first stages of a CNN: the stem (leading layers grouped), each stage of the dominant sequential
    container (timm's ``blocks`` / ``stages``) or each top-level container, and the trailing layers grouped.
    EfficientNet: [stem conv + bn], 7 MBConv stages, [head conv + bn]; ResNet: [conv1 + bn1], layer1..layer4."""
    from torch import nn

    children = [c for c in net.children() if params_in(c)]
    total = params_in(net)
    containers = [c for c in children if isinstance(c, nn.Sequential | nn.ModuleList) and len(c) > 1]
    dominant = max(containers, key=params_in, default=None)
    if dominant is not None and params_in(dominant) < total / 2:
        dominant = None
    blocks: list[nn.Module] = []
    pending: list[nn.Module] = []

    def flush() -> None:
        if pending:
            blocks.append(pending[0] if len(pending) == 1 else nn.ModuleList(pending))
            pending.clear()

    for child in children:
        if child is dominant:
            flush()
            blocks.extend(child)
        elif not any(params_in(g) for g in child.children()):  # a plain layer (conv, norm, linear)
            pending.append(child)
        else:
            flush()
            blocks.append(child)
    flush()
    return blocks


def named_in(encoder: nn.Module, scope: nn.Module, kinds: tuple[type, ...]) -> list[tuple[str, nn.Module]]:
    """(name relative to ``encoder``, module) of every module of the given types inside ``scope``."""
    inside = {id(m) for m in scope.modules()}
    return [(n, m) for n, m in encoder.named_modules() if id(m) in inside and isinstance(m, kinds)]


def parent_and_attr(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, attr = name.rpartition(".")
    return (root.get_submodule(parent) if parent else root), attr


def unwrap(module: nn.Module) -> nn.Module:
    """The model inside a peft wrapper (prompt/prefix tuning wrap the transformer), or the module itself."""
    get = getattr(module, "get_base_model", None)
    return get() if callable(get) else module
