"""peft:<config>: any peft tuner that injects into layers (LoHa, LoKr, OFT, BOFT, VeRA, AdaLoRA, DoRA, HRA,
FourierFT, ...) run by its peft config, as a method family of the registry (``bench.core.registry``):

- ``peft:LoHaConfig`` (a peft config class, spelt as peft spells it), or a short name: ``peft:loha``, ``peft:lokr``,
  ``peft:vera``, ``peft:oft``, ``peft:boft``, ``peft:adalora``, ... (the peft type in lowercase), and ``peft:dora``
  (``LoraConfig(use_dora=True)``). Recorded as ``peft-loha``, ``peft-dora``, ...
- ``peft:path/to/adapter_config.json`` (or the folder holding it): a config as peft's ``save_pretrained`` writes it;
  its values are the defaults. Recorded as ``peft-<type>-<12 hex>``, the sha256 of its content (without peft's
  bookkeeping: version, base model, revision, inference_mode, task_type, auto_mapping), so the same config is the same
  method wherever the file lies, and a changed file is another method (a path is read once per process).

An entry is a frozen dataclass (``FrozenBackbone``: ``lr`` for the adapter, ``head_lr`` for the new head) whose other
fields are the config's own fields of a simple type (int, float, str, bool, or one of them or None) with peft's
defaults (or the file's values): ``--set r=4`` or a suite's ``[set]`` sets them, and they are recorded and keyed like
any method's hyperparameters. Other config items (lists, dicts: ``target_modules``, ``rank_pattern``, ...) come from a
JSON file only. ``target_modules`` defaults to the backbone's ``lora_targets`` (as ``lora``: every linear layer of a
transformer's layers, every pointwise convolution of a CNN); (IA)^3 gets the backbone's ``ia3_targets`` (as ``ia3``).
Trainable: the tuner's parameters (their names hold its prefix, e.g. ``hada_``, ``lokr_``, ``vera_lambda_``) and,
with ``bias`` other than "none", the biases peft would train; the backbone is frozen, batch-norm statistics included.

Injection is peft's ``inject_adapter_in_model`` (``methods._common.inject_peft``). Tuners whose layers share tensors
held on the tuner (VeRA's and PVeRA's random projections, VB-LoRA's vector bank, ...) are refused by it; they are
made the same way from the tuner class, each layer keeping the shared tensors as a submodule. AdaLoRA runs inside
the loop: its orthogonal regularisation is the method's ``penalty`` and its rank allocation runs in ``on_step``,
which the loop calls before each optimizer step with the previous step's gradients still in place (what peft's
``update_and_allocate`` expects after ``optimizer.step()``); ``total_step`` (None) is the run's own length. The last
step's allocation has no step after it to run in: with ``tfinal = 0`` (peft's default) the final forced masking, due
at the very last step, is not applied; set ``tfinal`` >= 1 for a final phase with fixed ranks.

Refused when the name is resolved: prompt learning (prefix, prompt, p-tuning, multitask prompt, CPT, cartridge; use
the ``prefix`` or ``prompt`` methods), adaption prompt, X-LoRA and Shadow (no layer injection), LN tuning and
trainable tokens without ``target_modules`` from a file, ``modules_to_save`` (this harness trains its own head).
Unsupported (a record, status ``unsupported``) where peft refuses the backbone: no matching target modules, a layer
type the tuner does not handle (VeRA, FourierFT on a CNN's convolutions), shapes it cannot use (a block size that does
not divide a layer). This is found before the cell runs by injecting into a weightless (meta-device) copy of the
backbone, confirmed on a randomly initialised one when that fails.
Version history: 1 - first version.
"""

from __future__ import annotations

import copy
import copyreg
import dataclasses
import difflib
import hashlib
import json
import re
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bench.core.api import Method, TrainConfig
from bench.core.model import set_trainable
from bench.core.registry import METHODS, UnknownNameError
from methods._common import FrozenBackbone, inject_peft, merge_tuner_layers

FAMILY = "peft"
VERSION = 1
ADAPTER = "default"  # peft's adapter name
# a saved config's bookkeeping, not the method: left out of a file's identity, and set here
BOOKKEEPING = ("peft_version", "base_model_name_or_path", "revision", "inference_mode", "task_type", "auto_mapping")
PROMPT_TYPES = ("PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "CPT", "CARTRIDGE")
NOT_INJECTED = {
    "ADAPTION_PROMPT": "adaption prompt adds learned prompts to Llama attention (use the prefix or prompt methods)",
    "XLORA": "X-LoRA mixes LoRA adapters that are already trained",
    "SHADOW": "Shadow trains a side network, which peft does not inject into layers",
}
NEEDS_TARGETS = {"LN_TUNING": "the norm layers to tune", "TRAINABLE_TOKENS": "the embedding whose tokens train"}
REFUSALS = (ValueError, TypeError, NotImplementedError)  # what peft raises for a model it cannot adapt

_BUILT: dict[str, type] = {}  # recorded name -> class, so every spelling of an entry is one class
_CONTENT: dict[str, dict[str, Any]] = {}  # digest -> a config file's content, for rebuilding its entry
_SKELETONS: dict[str, Any] = {}  # backbone -> weightless encoder, for the support check
_SUPPORT: dict[tuple[Any, str], str | None] = {}


# ---------------------------------------------------------------------------------------------- the entries
class _FamilyMeta(type):
    """The metaclass of the classes this family builds at run time: pickle rebuilds such a class through the registry
    (``_reduce_class``), since a fresh process (a cell's, a Ray worker's) has no module attribute to find it by."""


@dataclass(frozen=True)
class PeftMethod(FrozenBackbone):
    """Base of the family's entries (not registered itself: ``peft:<config>`` builds a subclass)."""

    name: ClassVar[str] = FAMILY
    version: ClassVar[int] = VERSION
    mergeable: ClassVar[bool] = True
    marker: ClassVar[str] = ""  # the tuner's prefix: every parameter it adds has it in its name
    config_class: ClassVar[str] = ""
    peft_type: ClassVar[str] = ""
    argument: ClassVar[str] = ""  # what ``peft:<argument>`` rebuilds this entry from
    content: ClassVar[dict[str, Any] | None] = None  # a config file's content (its identity), None for a class
    preset: ClassVar[dict[str, Any]] = {}  # config items that are not fields (a file's lists and dicts)
    peft_names: ClassVar[dict[str, str]] = {}  # field -> the config's argument (a field renamed to avoid a clash)
    field_types: ClassVar[dict[str, type]] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, kind in self.field_types.items():  # a setting whose default is None arrives untyped
            value = getattr(self, name)
            if isinstance(value, str) and kind is not str:
                object.__setattr__(self, name, _typed(value, kind, name))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # peft's notes on its own defaults, once per instance
                self.peft_config()
        except REFUSALS as e:
            raise ValueError(f"Invalid {self.name} settings: {e}") from None

    def __reduce__(self):
        return _instance, (type(self), {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def peft_config(self, encoder: Any = None, backbone: Any = None):
        """The peft config of these settings; with ``backbone``, ``target_modules`` (when not given) from it."""
        import peft

        kwargs = {**self.preset, **{peft_name: getattr(self, f) for f, peft_name in self.peft_names.items()}}
        kwargs["inference_mode"] = False
        if self.peft_type == "ADALORA" and kwargs.get("total_step") is None:
            # a placeholder peft insists on; the run's length replaces it in on_step
            kwargs["total_step"] = int(kwargs.get("tinit") or 0) + int(kwargs.get("tfinal") or 0) + 1
        if backbone is not None and kwargs.get("target_modules") is None:
            if self.peft_type == "IA3":
                targets, feedforward = backbone.ia3_targets(encoder)
                kwargs["target_modules"] = targets
                if kwargs.get("feedforward_modules") is None:
                    kwargs["feedforward_modules"] = feedforward
            else:
                kwargs["target_modules"] = backbone.lora_targets(encoder)
        return getattr(peft, self.config_class)(**kwargs)

    def unsupported_reason(self, task, backbone) -> str | None:
        """What peft says when it cannot adapt this backbone (``_refusal``), asked once per process."""
        key = (self, backbone.name)
        if key not in _SUPPORT:
            _SUPPORT[key] = _refusal(self, backbone)
        return _SUPPORT[key]

    def prepare(self, model, backbone, task):
        config = self.peft_config(model.encoder, backbone)
        model = _inject(model, config, self.marker)
        _train_biases(model.encoder, config)
        return model

    def merge(self, model) -> bool:
        return merge_tuner_layers(model)


@dataclass(frozen=True)
class PeftAdaLoRA(PeftMethod):
    """AdaLoRA's two additions to the loop (see the module docstring): rank allocation and the orthogonality term."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if getattr(self, "orth_reg_weight", 0.0) < 0:
            raise ValueError(f"Invalid orth_reg_weight: {self.orth_reg_weight} (must be >= 0; peft's default 0.5)")

    def prepare(self, model, backbone, task):
        from peft.tuners.adalora import RankAllocator

        config = self.peft_config(model.encoder, backbone)
        model = _inject(model, config, self.marker)
        _train_biases(model.encoder, config)
        model._peft_adalora = (RankAllocator(model.encoder, config, ADAPTER), config)  # plain attribute, no module
        return model

    def on_step(self, model, step: int, total_steps: int) -> None:
        state = getattr(model, "_peft_adalora", None)
        if state is None:
            return
        allocator, config = state
        config.total_step = getattr(self, "total_step", None) or total_steps
        if config.tinit >= config.total_step - config.tfinal:
            raise ValueError(
                f"AdaLoRA: tinit ({config.tinit}) must be below total_step - tfinal ({config.total_step} - "
                f"{config.tfinal}) (this run has {total_steps} steps): lower tinit or tfinal, or set total_step"
            )
        if step == 1:  # a run starts (a refit too): no importance from an earlier run
            allocator.reset_ipt()
            config.rank_pattern = None
            return
        params = [p for n, p in model.encoder.named_parameters() if "lora_" in n and ADAPTER in n and p.requires_grad]
        if any(p.grad is None for p in params):  # a run that paused keeps no gradients: nothing to score this step
            return
        _update_and_allocate(allocator, config, model.encoder, step - 1)

    def penalty(self, model):
        import torch

        weight = getattr(self, "orth_reg_weight", 0.0)
        if not weight:
            return None
        terms = []  # as AdaLoraModel.forward: the mean over P and Q of ||P P^T - I||_F (Q^T Q for Q)
        for n, p in model.encoder.named_parameters():
            if ("lora_A" in n or "lora_B" in n) and ADAPTER in n:
                cov = p @ p.T if "lora_A" in n else p.T @ p
                eye = torch.eye(*cov.size(), device=cov.device, dtype=cov.dtype)
                terms.append(torch.norm(cov - eye, p="fro"))
        return weight * torch.stack(terms).mean() if terms else None


def _update_and_allocate(allocator, config, encoder, global_step: int) -> None:
    """peft's ``AdaLoraModel.update_and_allocate`` (peft 0.21), on the encoder and the allocator kept beside it."""
    final = config.total_step - config.tfinal
    if global_step < final:
        _, pattern = allocator.update_and_allocate(encoder, global_step)
        if pattern:
            config.rank_pattern = pattern
    elif global_step == final:
        _, config.rank_pattern = allocator.update_and_allocate(encoder, global_step, force_mask=True)
        allocator.reset_ipt()
    elif config.rank_pattern:
        allocator.mask_using_rank_pattern(encoder, config.rank_pattern)


def _instance(cls: type, values: dict[str, Any]) -> PeftMethod:
    return cls(**values)


def _class_of(argument: str, content: dict[str, Any] | None) -> type:
    """An entry's class, through the registry (a file's content is remembered first: the file may not be here)."""
    if content is not None:
        _CONTENT[_digest(content)] = content
    return METHODS.get(f"{FAMILY}:{argument}")


def _reduce_class(cls: type):
    return _class_of, (cls.argument, cls.content)


copyreg.pickle(_FamilyMeta, _reduce_class)


# ---------------------------------------------------------------------------------------------- building
def build(argument: str) -> type[PeftMethod]:
    """The family's entry for ``peft:<argument>`` (see the module docstring)."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING  # heavy: only when a peft entry is asked for

    by_type = {t.value: c for t, c in PEFT_TYPE_TO_CONFIG_MAPPING.items()}
    aliases = _aliases(by_type)
    if argument in aliases:
        peft_type, preset = aliases[argument]
        type_id = "dora" if argument.lower() == "dora" else _type_id(peft_type)
        return _entry(type_id, peft_type, by_type[peft_type], preset, None, type_id)
    found = re.fullmatch(r"([a-z0-9-]+)-([0-9a-f]{12})", argument)
    if found and found.group(2) in _CONTENT:  # a file's entry rebuilt from its content (pickle)
        content = _CONTENT[found.group(2)]
        return _file_entry(content, by_type)
    path = Path(argument).expanduser()
    if argument.endswith(".json") or "/" in argument or path.is_dir():
        return _file_entry(_read(path, by_type), by_type)
    names = sorted(a for a in aliases if a == a.lower() or a.endswith("Config"))
    raise UnknownNameError(
        suggest_config(argument, names)
        + " Or a peft config file: peft:path/to/adapter_config.json (what save_pretrained writes)."
    )


def suggest_config(argument: str, names: list[str]) -> str:
    close = difflib.get_close_matches(argument, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(f'{FAMILY}:{c}') for c in close)}?" if close else ""
    return f"unknown peft config {argument!r}.{hint} Known: {', '.join(n for n in names if n.endswith('Config'))}."


def _type_id(peft_type: str) -> str:
    return peft_type.lower().replace("_", "-")


def _aliases(by_type: dict[str, type]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every spelling of a config: its class name, its peft type in lowercase (``ln-tuning``, ``ln_tuning``), the
    class name in lowercase without "config" (``lntuning``); and ``dora``."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for peft_type, cls in by_type.items():
        for name in (cls.__name__, _type_id(peft_type), peft_type.lower(), cls.__name__.lower().removesuffix("config")):
            out.setdefault(name, (peft_type, {}))
    out["dora"] = ("LORA", {"use_dora": True})
    return out


def _digest(content: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def _read(path: Path, by_type: dict[str, type]) -> dict[str, Any]:
    """A config file's content: its items without peft's bookkeeping (``BOOKKEEPING``), checked."""
    file = path / "adapter_config.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"peft config file {file} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"peft config file {file}: not readable as JSON ({e})") from None
    if not isinstance(data, dict) or data.get("peft_type") not in by_type:
        raise ValueError(
            f'peft config file {file}: not a peft config (a JSON object with a peft_type, e.g. "LOHA", as '
            "save_pretrained writes it)"
        )
    known = {f.name for f in dataclasses.fields(by_type[data["peft_type"]])}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"peft config file {file}: {', '.join(unknown)} not settings of {by_type[data['peft_type']].__name__} "
            "in this peft version"
        )
    return {k: v for k, v in data.items() if k not in BOOKKEEPING}


def _file_entry(content: dict[str, Any], by_type: dict[str, type]) -> type[PeftMethod]:
    digest = _digest(content)
    _CONTENT[digest] = content
    peft_type = content["peft_type"]
    type_id = _type_id(peft_type)
    preset = {k: v for k, v in content.items() if k != "peft_type"}
    return _entry(f"{type_id}-{digest}", peft_type, by_type[peft_type], preset, content, f"{type_id}-{digest}")


def _entry(
    ident: str, peft_type: str, config_cls: type, preset: dict[str, Any], content: dict[str, Any] | None, argument: str
) -> type[PeftMethod]:
    """The class of one entry (one per recorded name in a process)."""
    name = f"{FAMILY}-{ident}"
    if name in _BUILT:
        return _BUILT[name]
    from peft.config import PeftConfig, PromptLearningConfig

    what = config_cls.__name__ + (" from a config file" if content is not None else "")
    if peft_type in PROMPT_TYPES or issubclass(config_cls, PromptLearningConfig):
        raise ValueError(
            f"{what} is prompt learning, which this family does not run: use the prefix method (prefix tuning) or "
            "the prompt method (prompt tuning)"
        )
    if peft_type in NOT_INJECTED:
        raise ValueError(f"{what} cannot run here: {NOT_INJECTED[peft_type]}")
    if peft_type in NEEDS_TARGETS and not preset.get("target_modules"):
        raise ValueError(
            f"{what} needs target_modules ({NEEDS_TARGETS[peft_type]}), which no backbone declares: give them in a "
            "peft config file (peft:path/to/adapter_config.json)"
        )
    if preset.get("modules_to_save"):
        raise ValueError(f"{what}: modules_to_save is not supported (the harness trains its own head); drop it")
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    marker = getattr(PEFT_TYPE_TO_TUNER_MAPPING.get(peft_type), "prefix", None)
    if not marker:
        raise ValueError(f"{what}: peft names no parameter prefix for its tuner, so its parameters cannot be found")

    hints = _hints(config_cls)
    own = {f.name for f in dataclasses.fields(PeftConfig)}  # peft's bookkeeping, not settings
    taken = _taken()
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {}
    peft_names: dict[str, str] = {}
    field_types: dict[str, type] = {}
    for f in dataclasses.fields(config_cls):
        if f.name in own or not f.init or f.default is dataclasses.MISSING:
            continue
        kind, optional = _simple(hints.get(f.name, f.type))
        default = preset.get(f.name, f.default)
        if kind is None or (default is None and not optional):
            continue
        if default is not None and not _fits(default, kind):
            if kind is float and isinstance(default, int) and not isinstance(default, bool):
                default = float(default)
            elif kind is int and isinstance(default, float):
                kind = float
            else:
                continue  # a file's value of another type than peft declares: it stays a config item
        field = f"peft_{f.name}" if f.name in taken else f.name
        annotations[field] = kind | None if optional else kind
        namespace[field] = default
        peft_names[field] = f.name
        field_types[field] = kind
    for peft_name in peft_names.values():
        preset.pop(peft_name, None)
    source = f" from a config file (sha256 {ident.rsplit('-', 1)[-1]})" if content is not None else ""
    dora = " with use_dora" if preset.get("use_dora") or namespace.get("use_dora") else ""
    namespace.update(
        __annotations__=annotations,
        __module__=__name__,
        __qualname__="Peft" + "".join(part.capitalize() for part in ident.split("-")),
        name=name,
        version=VERSION,
        description=f"peft {config_cls.__name__}{dora}{source} on the backbone's layers + head; BN stats fixed",
        marker=marker,
        config_class=config_cls.__name__,
        peft_type=peft_type,
        argument=argument,
        content=content,
        preset=preset,
        peft_names=peft_names,
        field_types=field_types,
    )
    base = PeftAdaLoRA if peft_type == "ADALORA" else PeftMethod
    cls = dataclass(frozen=True)(_FamilyMeta(namespace["__qualname__"], (base,), namespace))
    _BUILT[name] = cls
    return cls


def _hints(config_cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_cls)
    except Exception:  # an annotation this Python cannot evaluate: those fields are left to files
        return {}


def _simple(tp: Any) -> tuple[type | None, bool]:
    """(int, float, str or bool, whether None is allowed) for a simple annotation; (None, False) for any other."""
    if tp in (int, float, str, bool):
        return tp, False
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        return (str, False) if all(isinstance(a, str) for a in args) else (None, False)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            kind, _ = _simple(rest[0])
            return kind, len(rest) < len(args)
    return None, False


def _fits(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return isinstance(value, bool) and kind is bool
    return isinstance(value, kind)


def _typed(value: str, kind: type, name: str) -> Any:
    try:
        if kind is bool:
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[value.lower()]
        return kind(value)
    except (KeyError, ValueError):
        raise ValueError(f"Invalid value for {name}: {value!r} (expected {kind.__name__})") from None


def _taken() -> set[str]:
    """Names a config field cannot have here, renamed peft_<name>: the method's and the loop's (a ``--set`` key must
    name one field) and the tasks' input settings. The same in every process: a pickled entry is rebuilt anew."""
    names = {f.name for f in dataclasses.fields(FrozenBackbone)} | {f.name for f in dataclasses.fields(TrainConfig)}
    names |= {n for n in dir(Method) if not n.startswith("__")} | {n for n in vars(PeftMethod) if not n.startswith("_")}
    return names | {"backbone", "tune", "image_size", "max_len", "split"}


# ---------------------------------------------------------------------------------------------- the model
def _inject(model, config, marker: str):
    """``inject_peft``; for a tuner whose layers share tensors held on the tuner (refused by peft's
    ``inject_adapter_in_model``), the same steps with the tuner class, whose layers keep those tensors as submodules."""
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    tuner = PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type]
    if not tuner.uses_shared_state:
        return inject_peft(model, config, marker)
    set_trainable(model, False)
    model.encoder = tuner(model.encoder, config, adapter_name=ADAPTER).model
    for name, p in model.encoder.named_parameters():
        p.requires_grad_(marker in name)
    set_trainable(model.head, True)
    return model


def _train_biases(encoder, config) -> None:
    """``bias`` other than "none", as peft's ``_mark_only_adapters_as_trainable``: "all" trains every bias of the
    backbone, "<prefix>_only" the biases of the adapted layers."""
    bias = getattr(config, "bias", "none")
    if not isinstance(bias, str) or bias == "none":
        return
    if bias == "all":
        for name, p in encoder.named_parameters():
            if "bias" in name:
                p.requires_grad_(True)
        return
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in encoder.modules():
        if isinstance(module, BaseTunerLayer) and getattr(module, "bias", None) is not None:
            module.bias.requires_grad_(True)


def _refusal(method: PeftMethod, backbone) -> str | None:
    """Why peft refuses to adapt ``backbone`` with ``method``'s config (None: it does not, or it cannot be told here
    and the run will say). Injects into a weightless copy; a failure there is confirmed on a random-init copy."""
    import torch
    from torch import nn

    def attempt(encoder) -> None:
        holder = nn.Module()
        holder.encoder, holder.head = encoder, nn.Identity()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            method.prepare(holder, backbone, None)

    try:
        if backbone.name not in _SKELETONS:
            with torch.device("meta"):
                _SKELETONS[backbone.name] = backbone.load(pretrained=False).encoder
        with torch.device("meta"):
            attempt(copy.deepcopy(_SKELETONS[backbone.name]))
        return None
    except Exception:  # e.g. BOFT reads values, which meta tensors do not have: ask a real copy
        pass
    try:
        encoder = backbone.load(pretrained=False).encoder
    except Exception:  # the backbone cannot be built here: the cell will say why
        return None
    try:
        attempt(encoder)
    except REFUSALS as e:
        text = " ".join(str(e).split())
        return f"peft refuses {method.config_class} on {backbone.name}: {text[:400]}"
    except Exception:
        return None
    return None


METHODS.add_family(FAMILY, build)
