"""The catalog: the only module that imports the plugins (``tasks/``, ``methods/``, the backbone families in
``bench.backbones`` and the forgetting probes in ``bench.probes``), so the registries of ``bench.core`` are filled
through it (a task or method module at the registry's first use: ``Registry.discover``). Whatever the rest of
bench asks about plugins, it asks here: a task's spec, a cell resolved into a ``Resolved`` (the one object that then
travels, with its key), what a method declares about itself, a probe's facts, which files a task reads and what is
supported. Importing it loads no heavy library: plugins keep theirs inside the
functions that need them (``tests/test_layout.py`` holds them to it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import methods  # noqa: F401  (every module of methods/ is found by its file and registers itself at first use)
import tasks  # noqa: F401  (every module of tasks/ likewise registers its tasks)
from bench import backbones, probes  # noqa: F401  (the backbone families and the forgetting probes)
from bench.core.api import Cell, Method, Resolved, TaskSpec, TrainConfig, TuneSpec
from bench.core.backbone import BACKBONES
from bench.core.registry import METHODS, TASKS, UnknownNameError, suggest
from bench.core.store import RECORDED_SPECS
from bench.probes import PROBE_VERSION, PROBES, ProbeSpec, held_out
from tasks import declared

__all__ = [
    "BACKBONES",
    "METHODS",
    "PROBES",
    "PROBE_VERSION",
    "TASKS",
    "ProbeSpec",
    "UnknownNameError",
    "declaration_toml",
    "declare_recorded",
    "held_out",
    "known",
    "method_class",
    "probe",
    "probe_files",
    "resolve",
    "spec",
    "support_matrix",
    "task_files",
    "task_name",
]


def spec(task: str) -> TaskSpec:
    """The TaskSpec of a registered task, or of a declared dataset this process declared or read a record of
    (UnknownNameError, with suggestions, for any other name)."""
    if task not in TASKS and task in RECORDED_SPECS:
        return declared.spec_from_dict(RECORDED_SPECS[task])
    return TASKS.get(task).spec


def declare_recorded(declaration: dict[str, Any]) -> str:
    """Declare a dataset from the declaration its records carry; returns its task name."""
    return declared.declare_recorded(declaration)


def declaration_toml(declaration: dict[str, Any]) -> str:
    """A recorded declaration as the TOML file that declares it again."""
    return declared.Declaration.from_dict(declaration).toml()


def known(task: str) -> bool:
    """Whether ``spec(task)`` answers: a registered task, or a declared dataset declared here or read in a record."""
    return task in TASKS or task in RECORDED_SPECS


def task_name(text: str, base: Path | None = None) -> str:
    """The task a ``--task`` value or a suite's task entry names: a registered task, or a declared dataset (a
    declaration ``.toml``, a data file or folder, or a name with ``datasets/<name>.toml`` beside the suite or in the
    working folder), which is read, checked (a ``DataError`` names any problem) and registered."""
    if text in TASKS:
        return text
    found = declared.task_name(text, base)
    if found is None:
        TASKS.get(text)  # UnknownNameError with suggestions
    return found


def method_class(name: str) -> type[Method]:
    """The class of a registered method, whose class attributes declare what it is (``trains``, ``pretrained``,
    ``seedless``, ``budget_free``, ``min_seeds``, ...). Records can name a method this checkout no longer has: it is
    then described by ``Method``'s defaults (trains, pretrained, seeded), never by a guess from its name. A report's
    row key (``lora @ hf:/models/x``, ``bench.analysis.cells.row_keys``) is its first word's method."""
    name = name.split(" ", 1)[0]
    return METHODS.get(name) if name in METHODS else Method


def method_label(method: str, task: str) -> str:
    """The method as the report names it on ``task``: its name, and the mechanism in brackets when one name covers
    several (``Method.mechanism``: "fewshot (nearest class mean)" on images, "fewshot (in-context LM)" on text); a
    row key's backbone and data after it (``fewshot (in-context LM) @ hf-causal:/models/x``)."""
    method, sep, rest = method.partition(" ")
    if not (known(task) and method in METHODS.names()):
        return method + sep + rest
    mechanism = method_class(method).mechanism(spec(task))
    return (f"{method} ({mechanism})" if mechanism else method) + sep + rest


def probe(name: str) -> ProbeSpec | None:
    """A forgetting probe's declaration (its metric, direction, scored examples and range); None for a name this
    checkout does not register (a record of older code)."""
    return PROBES.get(name)


# ------------------------------------------------------------------------------------------- resolution
def _coerce(value: Any, current: Any, key: str) -> Any:
    """Turn a CLI/suite value into the type of the field's default (a tuple of numbers: a list, or "a,b,c")."""
    if isinstance(current, tuple):
        items = value.split(",") if isinstance(value, str) else value
        try:
            if not isinstance(items, list | tuple) or not items:
                raise ValueError
            return tuple(float(v) for v in items)
        except (TypeError, ValueError):
            raise ValueError(f"Invalid value for {key}: {value!r} (expected numbers, e.g. 1e-3,1e-2)") from None
    if not isinstance(value, str) or isinstance(current, str):
        return value
    try:
        if isinstance(current, bool):
            if value.lower() in ("1", "true", "yes"):
                return True
            if value.lower() in ("0", "false", "no"):
                return False
            raise ValueError
        if isinstance(current, int):
            return int(value)
        if isinstance(current, float):
            return float(value)
    except ValueError:
        raise ValueError(f"Invalid value for {key}: {value!r} (expected {type(current).__name__})") from None
    return value


def resolve(cell: Cell | Resolved) -> Resolved:
    """Instantiate task, method and train config for a cell: the ``Resolved`` that then travels (harness, grid,
    executors, records) instead of being resolved again.

    Precedence, lowest first: dataclass defaults; the task's ``train_defaults``; the method's per-task
    ``defaults_for``/``train_defaults``; the cell's overrides (suite ``set`` tables and ``--set key=value``).
    An override key must name a field of exactly one of the three; anything else is an error with suggestions.
    Overrides are typed here, once (``--set r=4`` is the integer 4, as ``r = 4`` in a suite), and the Resolved's
    ``cell`` carries the typed values, so the record's ``overrides`` and the CI gate see one cell, however it was
    asked for. A ``Resolved`` is returned as it is: a cell is never resolved twice.
    """
    if isinstance(cell, Resolved):
        return cell
    task_cls = TASKS.get(cell.task)
    method_cls = METHODS.get(cell.method)
    if METHODS.canonical(cell.method) != cell.method:  # a family name (peft:LoHaConfig): records use the entry's own
        cell = dataclasses.replace(cell, method=METHODS.canonical(cell.method))  # (peft-loha), safe in a file name
    task_spec: TaskSpec = task_cls.spec
    owners = {
        "task": {f.name: f.default for f in dataclasses.fields(task_cls)},
        "method": {f.name: f.default for f in dataclasses.fields(method_cls)},
        "train": {f.name: f.default for f in dataclasses.fields(TrainConfig)},
    }
    values: dict[str, dict[str, Any]] = {
        "task": {},
        "method": dict(method_cls.defaults_for(task_spec)),
        "train": {**task_cls.train_defaults, **method_cls.train_defaults(task_spec)},
    }
    backbone = method_cls.backbone_for(task_spec) or task_spec.backbone
    typed: dict[str, Any] = {}
    tune = _tune(cell.overrides, method_cls)
    if tune is not None:
        typed["tune"] = tune.as_dict()
    for key, value in cell.overrides.items():
        if key == "tune" or key.startswith("tune."):
            continue
        if key == "backbone":
            BACKBONES.get(str(value))  # an unknown name fails here, with suggestions
            backbone = typed[key] = str(value)
            continue
        hits = [o for o, names in owners.items() if key in names]
        if not hits:
            every = sorted(set().union(*owners.values()))
            raise ValueError(unknown_setting(key, every, f"{cell.method} on {cell.task}"))
        if len(hits) > 1:
            raise ValueError(f"--set {key}: ambiguous, it is a field of {' and '.join(hits)}")
        values[hits[0]][key] = typed[key] = _coerce(value, owners[hits[0]][key], key)

    # a method's minimum schedule (its train_defaults' min_steps, e.g. scratch's 200) is a floor under a suite's cap
    # too, unless the cell sets min_steps itself (a stated choice, e.g. the proxy's 8-step smoke runs)
    floor = method_cls.train_defaults(task_spec).get("min_steps", 0)
    cap = values["train"].get("max_steps")
    if floor and "min_steps" not in cell.overrides and cap and int(cap) < floor:
        values["train"]["max_steps"] = floor

    def build(cls, section: str):
        defaults = owners[section]
        return cls(**{k: _coerce(v, defaults.get(k), k) for k, v in values[section].items()})

    return Resolved(
        cell=dataclasses.replace(cell, overrides=typed) if typed != cell.overrides else cell,
        task=build(task_cls, "task"),
        method=build(method_cls, "method"),
        train=build(TrainConfig, "train"),
        backbone=backbone,
        tune=tune,
    )


# other libraries' names for settings (Hugging Face, timm, PEFT...) -> this benchmark's keys, the first one the cell
# has is suggested (a frozen probe's learning rate is head_lr); and a cell's coordinates, which are not settings
SETTING_ALIASES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("learning_rate", "learningrate", "base_lr", "lr_rate"), ("lr", "head_lr")),
    **dict.fromkeys(("head_learning_rate", "classifier_lr", "head_lr_rate"), ("head_lr",)),
    **dict.fromkeys(("wd", "l2_penalty"), ("weight_decay",)),
    **dict.fromkeys(("batch", "bs", "batchsize", "train_batch_size", "per_device_train_batch_size"), ("batch_size",)),
    **dict.fromkeys(("eval_batch", "per_device_eval_batch_size", "test_batch_size"), ("eval_batch_size",)),
    **dict.fromkeys(("epoch", "num_epochs", "n_epochs", "num_train_epochs"), ("epochs",)),
    **dict.fromkeys(("steps", "num_steps", "train_steps", "max_iters", "iterations"), ("max_steps", "max_iter")),
    **dict.fromkeys(("warmup", "warmup_steps", "warmup_fraction"), ("warmup_ratio",)),
    **dict.fromkeys(("rank", "lora_r", "lora_rank"), ("r",)),
    **dict.fromkeys(("lora_alpha",), ("alpha",)),
    **dict.fromkeys(("lora_dropout",), ("dropout",)),
    **dict.fromkeys(("max_length", "max_seq_len", "max_seq_length", "seq_len", "sequence_length"), ("max_len",)),
    **dict.fromkeys(("img_size", "resolution", "input_size"), ("image_size",)),
    **dict.fromkeys(("grad_clip", "clip_grad_norm", "max_norm", "gradient_clipping"), ("max_grad_norm",)),
    **dict.fromkeys(("dtype", "fp16", "bf16", "amp", "mixed_precision"), ("precision",)),
    **dict.fromkeys(("eval_steps", "eval_interval", "val_every", "validate_every"), ("eval_every",)),
    **dict.fromkeys(("early_stopping_patience", "early_stopping"), ("patience",)),
    **dict.fromkeys(("shots", "n_shots", "num_shots", "k_shot"), ("k",)),
    **dict.fromkeys(("num_threads", "n_threads"), ("threads",)),
    **dict.fromkeys(("scheduler", "lr_scheduler", "schedule"), ("lr_schedule",)),
    **dict.fromkeys(("num_virtual_tokens", "prompt_length", "prefix_length"), ("n_tokens",)),
}
COORDINATES = {"seed": "--seed N", "budget": "--budget N", "task": "--task NAME", "method": "--method NAME"}


def unknown_setting(key: str, known: list[str], whose: str = "this cell") -> str:
    """The error for an unknown ``--set`` key: the key it is another library's name for (``learning_rate``: ``lr``)
    when the cell has it (when not, that ``whose`` has no such setting), else the closest known keys (difflib); a
    cell coordinate (``seed``) names its own flag."""
    plain = key.strip().lower().replace("-", "_")
    if plain in COORDINATES:
        return (
            f"--set {key}: the {plain} is a cell coordinate, not a setting: use {COORDINATES[plain]} "
            f"(a suite: its [[matrix]] {plain}s{', or grid --seeds' if plain == 'seed' else ''})"
        )
    alias = next((k for k in (*SETTING_ALIASES.get(plain, ()), plain) if k in known and k != key), None)
    if alias is not None:
        return f"--set {key}: unknown {key!r}. Did you mean {alias!r}? Known: {', '.join(sorted(known))}."
    if plain in SETTING_ALIASES:
        return (
            f"--set {key}: unknown {key!r}: this benchmark calls it {SETTING_ALIASES[plain][0]!r}, which {whose} does "
            f"not take. Known: {', '.join(sorted(known))}."
        )
    return f"--set {key}: " + suggest(key, known, "setting").replace("unknown setting", "unknown")


def _tune(overrides: dict[str, Any], method_cls: type[Method]) -> TuneSpec | None:
    """The cell's nested-tuning space: ``tune`` (a suite's table) and ``tune.<name>`` keys (``--set``), each naming a
    field of the method (or one of its ``sweep_aliases``)."""
    table = dict(overrides.get("tune") or {})
    table.update({k.removeprefix("tune."): v for k, v in overrides.items() if k.startswith("tune.")})
    if not table:
        return None
    own = [f.name for f in dataclasses.fields(method_cls)]

    def field_of(key: str) -> str:
        name = key if key in own else method_cls.sweep_aliases.get(key)
        if name is None:
            what = f"its hyperparameters: {', '.join(own)}" if own else "it has no hyperparameters"
            hint = " (it does not train)" if not method_cls.trains else ""
            raise ValueError(f"tune {key}: method {method_cls.name} has no such hyperparameter ({what}){hint}")
        if name in overrides:
            raise ValueError(f"tune {key}: {name} of {method_cls.name} is both tuned and fixed by a setting")
        return name

    if not method_cls.trains:
        raise ValueError(f"tune: method {method_cls.name} does not train, so it has nothing to tune; drop tune")
    return TuneSpec.parse(table, field_of)


# ------------------------------------------------------------------------------------------- questions
def support_matrix(budget: int = 64, settings: dict[str, Any] | None = None) -> list[tuple[str, str, str, str | None]]:
    """(task, method, backbone, unsupported reason or None) for every registered pair, exactly as ``run`` and
    ``grid`` decide it (the same resolution and ``Resolved.unsupported_reason``). ``settings``: what every cell sets
    (``ls --matrix --set backbone=...``); a setting a method does not take is that pair's reason."""
    rows = []
    if settings and "backbone" in settings:
        BACKBONES.get(str(settings["backbone"]))  # an unknown name is the command's error, not every pair's reason
    for t in TASKS:
        for m in METHODS:
            try:
                res = resolve(Cell(t, m, budget, 0, dict(settings or {})))
            except ValueError as e:
                rows.append((t, m, str((settings or {}).get("backbone", "-")), str(e).split(" Known:")[0]))
                continue
            rows.append((t, m, res.backbone, res.unsupported_reason()))
    return rows


def task_files(names: list[str] | None = None) -> dict[str, tuple[str, ...]]:
    """name -> data files, for the given tasks (default: every task, then every forgetting probe's files)."""
    out = {name: TASKS.get(name)().files() for name in (names or TASKS.names())}
    if not names:
        out.update({f"probe {name}": p.files for name, p in PROBES.items()})
    return out


def probe_files(backbone: str) -> tuple[str, ...]:
    """The data files the forgetting probes of a backbone read."""
    return tuple(f for p in BACKBONES.get(backbone).probes for f in PROBES[p].files)
