"""The backbone registry: named entries (``efficientnet-lite0``, ``minilm-l6``, ...) and generic families that need
no code: ``timm:<model name>``, ``hf:<model id or local dir>``, ``hf-causal:<model id or local dir>``.

Add a backbone: one ``BACKBONES.add(...)`` entry in a family module (``vision.py`` for timm architectures,
``text.py`` for Hugging Face models), or point a cell at a family with ``--set backbone=hf:/path/to/model``.
What an entry provides is in ``bench.core.backbone``. Importing this package imports no heavy library.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.core.backbone import Backbone, BackboneUnavailable, Loaded, Traits
from bench.core.registry import Registry, UnknownNameError, suggest

__all__ = ["BACKBONES", "Backbone", "BackboneUnavailable", "Loaded", "Traits", "get_backbone", "load_backbone"]


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


# the families register their entries on import (after BACKBONES exists)
from bench.backbones import text, vision  # noqa: E402

BACKBONES.add_family("timm", vision.timm_family)
BACKBONES.add_family("hf", text.hf_family)
BACKBONES.add_family("hf-causal", text.hf_causal_family)
