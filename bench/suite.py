"""Suites: named lists of cells, declared in ``bench/suites/<name>.toml``; their sweeps; and which records belong to a
suite's current definition. The grid that runs them is ``bench.run.grid``.

A suite file holds ``description``, ``seeds``, optional ``timeout_s`` and ``set`` (settings for every cell), and
one or more ``[[matrix]]`` blocks, each crossing ``tasks`` x ``methods`` x ``budgets`` (x seeds) with its own
optional ``set`` table. ``tasks``/``methods`` may be ``["*"]`` or ``["all"]`` (the whole registry); ``budgets`` may be
``"task"`` (each task's own budgets) or ``"task+full"`` (those and the full training set, budget 0). The grid
skips every cell that already has an ``ok`` record, so an interrupted run
resumes where it stopped.

A block may tune hyperparameters first: ``sweep = { lr = [1e-4, 3e-4, 1e-3] }`` with ``sweep_budget = 256`` and
optionally ``sweep_seeds`` (default: the block's first seed). For each (task, method) of the block the grid first
runs the sweep cells (ordinary cells, one per value or combination of values and sweep seed, at the sweep budget),
picks the value with the best mean validation primary metric over the sweep seeds (the first listed wins a tie;
a value that diverged on any seed scores worst), and then runs the block's cells (every budget and seed) with it;
their records say so in ``tuned_from`` (the sweep's cells, keys and scores). A sweep key names a hyperparameter of
each method of the block (a field, or a name in the method's ``sweep_aliases``: frozen's ``head_lr`` is its
``lr``); anything else is refused when the suite loads. If a sweep cell failed (any status but ok, unsupported or
diverged), nothing is chosen and never a default: the block's cells of that (task, method) get records with status
``failed`` and the reason ``sweep failed`` (under a key that marks the swept fields pending). Sweep records are
reused like any other, so selection is deterministic and resumable.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import itertools
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.catalog import METHODS, TASKS, resolve, task_name
from bench.core.api import Cell
from bench.core.record import VAL, Record, metric_key, new_record
from bench.core.registry import UnknownNameError, suggest

SUITES_DIR = Path(__file__).parent / "suites"


@dataclass(frozen=True)
class Sweep:
    """The sweep of one (task, method) of a ``[[matrix]]`` block: the cells that try each value at ``budget`` on
    ``seeds``, and the block's cells (``budgets`` x ``block_seeds``) that then run with the chosen value."""

    block: int  # 1-based, as errors count blocks
    task: str
    method: str
    space: tuple[tuple[str, tuple[Any, ...]], ...]  # (method field, values), in the order the suite lists them
    budget: int
    seeds: tuple[int, ...]
    settings: dict[str, Any]  # the block's settings (suite ``set`` and block ``set``), without the swept fields
    budgets: tuple[int, ...]
    block_seeds: tuple[int, ...]
    suite: str

    @property
    def name(self) -> str:
        return f"block {self.block}: {self.task} x {self.method}"

    @property
    def fields(self) -> list[str]:
        return [f for f, _ in self.space]

    def candidates(self) -> list[dict[str, Any]]:
        """Every value (or combination of values, for several keys) to try, in the suite's order."""
        return [dict(zip(self.fields, combo, strict=True)) for combo in itertools.product(*(v for _, v in self.space))]

    def cells(self) -> list[Cell]:
        return [
            Cell(self.task, self.method, self.budget, seed, {**self.settings, **values}, suite=self.suite)
            for values in self.candidates()
            for seed in self.seeds
        ]

    def dependents(self, chosen: dict[str, Any] | None = None, tuned_from: dict[str, Any] | None = None) -> list[Cell]:
        """The block's cells with the ``chosen`` values (None: not chosen yet, the fields left at their defaults)."""
        return [
            Cell(
                self.task,
                self.method,
                b,
                seed,
                {**self.settings, **(chosen or {})},
                suite=self.suite,
                tuned_from=tuned_from,
            )
            for b in self.budgets
            for seed in self.block_seeds
        ]


@dataclass(frozen=True)
class Adaptive:
    """A suite's ``[adaptive]`` table: seeds added in batches where a comparison is still open (a sequential design).

    Every method that trains starts at its block's seeds (n_1 of them) and may be raised to ``n_1 + batch``, then
    ``n_1 + 2 batch``, ... up to ``max_seeds``: each level is a *look*. A comparison is tested at every look it
    reached, at the level ``alpha * w_j`` (``spending``), and its p-value is the smallest ``p_j / w_j`` (Bonferroni
    over the looks: valid whatever the data decided about adding seeds; ``bench.analysis.sequential``). The spending
    ``w_j = t_j^2 - t_(j-1)^2`` with ``t_j = n_j / n_max`` (a power-family alpha-spending function, rho = 2) keeps
    most of alpha for the last, largest look. ``minutes`` is the grid's time budget, its first cells included: a look
    whose estimated cost (the cells' recorded times) would pass it is not started."""

    max_seeds: int
    batch: int
    minutes: float

    def looks(self, initial: int) -> list[int]:
        """The seed counts of the looks for a method whose cells start with ``initial`` seeds."""
        counts = [initial]
        while counts[-1] + self.batch <= self.max_seeds:
            counts.append(counts[-1] + self.batch)
        return counts

    def spending(self, initial: int) -> list[float]:
        """The share of alpha each look spends (sums to 1)."""
        looks = self.looks(initial)
        t = [n / looks[-1] for n in looks]
        return [t[0] ** 2] + [t[j] ** 2 - t[j - 1] ** 2 for j in range(1, len(t))]


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cells: tuple[Cell, ...]  # the cells of blocks without a sweep
    timeout_s: float
    sweeps: tuple[Sweep, ...] = ()  # one per (task, method) of blocks with a sweep: their cells come from the grid
    adaptive: Adaptive | None = None
    replicate: str | None = None  # which of the file's [replicates] this is (None: the file has none)
    replicates: tuple[str, ...] = ()

    def sweep_cells(self) -> list[Cell]:
        return [c for s in self.sweeps for c in s.cells()]

    def more_seeds(self, task: str, method: str, budget: int, seeds: list[int], why: str, look: int) -> list[Cell]:
        """Cells of (task, method, budget) at more ``seeds``, with the settings of the block that defines it and an
        ``allocation`` saying which look added them and why."""
        like = [c for c in self.cells if (c.task, c.method, c.budget) == (task, method, budget)]
        if not like:
            raise ValueError(f"suite {self.name} has no cell {task} x {method} @ {budget} to add seeds to")
        base = like[0]
        allocation = {**(base.allocation or {}), "look": look, "why": why}
        return [dataclasses.replace(base, seed=s, allocation=allocation) for s in seeds]

    def next_seeds(self, task: str, method: str, budget: int, have: set[int], count: int) -> list[int]:
        """The ``count`` seeds after the block's own for (task, method, budget), skipping ``have``."""
        own = [c.seed for c in self.cells if (c.task, c.method, c.budget) == (task, method, budget)]
        out, seed = [], max(own) + 1
        while len(out) < count:
            if seed not in have:
                out.append(seed)
            seed += 1
        return out


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


MAX_SEED = 2**32 - 1  # numpy's seed range
TOP_KEYS = ("description", "seeds", "timeout_s", "set", "matrix", "adaptive", "replicates")
BLOCK_KEYS = ("tasks", "methods", "budgets", "seeds", "set", "sweep", "sweep_budget", "sweep_seeds", "tune")
ADAPTIVE_KEYS = ("max_seeds", "batch", "minutes")
REPLICATE_KEYS = ("seed_offset", "test_half")
WHOLE_POOL = ("task", "task+full")


def resolve_suite_path(name_or_path: str) -> Path:
    """A suite name (``bench/suites/<name>.toml``) or a path to a ``.toml`` file; the suite's name is its stem."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ValueError(suggest(name_or_path, suite_names(), "suite"))
    elif not path.exists():
        raise ValueError(f"suite file {path} does not exist")
    return path


def load_suite(name_or_path: str, seeds: list[int] | None = None, replicate: str | None = None) -> Suite:
    """The suite's cells and sweeps. ``seeds`` (``grid --seeds``) replaces the seeds of the whole file, every
    block's own ``seeds`` included; a block's explicit ``sweep_seeds`` stay, otherwise its sweep runs on the first of
    ``seeds``. The records are filed under the suite's name as usual (a 3-seed baseline of a 1-seed suite).

    ``replicate`` names one of the file's ``[replicates]`` (default: the first): an independent repetition of the
    whole suite, its seeds shifted by ``seed_offset`` (every block's, so its seeds, tuning and draws are its own) and
    its cells tested on half ``test_half`` of each test set (so two replicates share no test item)."""
    path = resolve_suite_path(name_or_path)
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"suite file {path} is not valid TOML: {e}") from e
    name = path.stem
    where = f"suite file {path}"
    _check_keys(spec, TOP_KEYS, where)
    adaptive = _adaptive(spec.get("adaptive"), where)
    replicates = _replicates(spec.get("replicates"), where)
    if replicate is not None and replicate not in replicates:
        known = f"its replicates: {', '.join(replicates)}" if replicates else "it declares no [replicates]"
        raise ValueError(f"{where}: no replicate {replicate!r} ({known})")
    chosen = replicate or next(iter(replicates), None)
    offset = replicates[chosen]["seed_offset"] if chosen else 0
    override = _seeds(list(seeds), "--seeds") if seeds is not None else None
    seeds = _seeds(spec.get("seeds", [0]), where)  # checked even when overridden: a broken file stays refused
    seeds = override or seeds
    timeout = spec.get("timeout_s", 3600)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"{where}: timeout_s must be a positive number of seconds, not {timeout!r}")
    if not isinstance(spec.get("description", ""), str):
        raise ValueError(f"{where}: description must be a string")
    common = _table(spec.get("set", {}), f"{where}, [set]")
    if chosen and replicates[chosen]["test_half"]:
        common = {**common, "test_half": replicates[chosen]["test_half"]}
    blocks = spec.get("matrix")
    if not blocks:
        raise ValueError(f"{where}: no [[matrix]] block; add one with tasks, methods and budgets")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise ValueError(f"{where}: matrix must be [[matrix]] blocks (tables), not {type(blocks).__name__}")
    cells: list[Cell] = []
    sweeps: list[Sweep] = []
    for i, block in enumerate(blocks):
        here = f"{where}, [[matrix]] block {i + 1}"
        _check_keys(block, BLOCK_KEYS, here)
        missing = {"tasks", "methods", "budgets"} - set(block)
        if missing:
            raise ValueError(f"{here}: lacks {', '.join(sorted(missing))}")
        settings = {**common, **_table(block.get("set", {}), f"{here}, set")}
        if "tune" in block:
            if "sweep" in block:
                raise ValueError(f"{here}: tune (inside each seed) and sweep (once, shared) both given; keep one")
            settings["tune"] = _table(block["tune"], f"{here}, tune")
        tasks = _task_names(block["tasks"], path.parent, here)
        methods = _names(block["methods"], METHODS, "method", here)
        block_seeds = _seeds(block["seeds"], here) if "seeds" in block else seeds
        block_seeds = [s + offset for s in (override or block_seeds)]
        if any(s > MAX_SEED for s in block_seeds):
            raise ValueError(f"{here}: seed_offset {offset} takes seeds past {MAX_SEED}")
        budgets_value = _check_budgets(block["budgets"], here)
        first, first_sweep = len(cells), len(sweeps)
        sweep = _check_sweep(block, block_seeds, here)
        for task in tasks:
            budgets = _budgets(budgets_value, task)
            for method in methods:
                if sweep is None:
                    allocation = _design(adaptive, method, len(block_seeds))
                    cells += [
                        Cell(task, method, b, seed, settings, suite=name, allocation=allocation)
                        for b in budgets
                        for seed in block_seeds
                    ]
                    continue
                if adaptive is not None:
                    raise ValueError(f"{here}: a sweep (shared by every seed) in an adaptive suite; use tune instead")
                space, sweep_budget, sweep_seeds = sweep
                fields = _sweep_fields(space, method, settings, here)
                sweeps.append(
                    Sweep(
                        block=i + 1,
                        task=task,
                        method=method,
                        space=tuple((fields[k], tuple(v)) for k, v in space.items()),
                        budget=sweep_budget,
                        seeds=tuple(sweep_seeds),
                        settings=settings,
                        budgets=tuple(budgets),
                        block_seeds=tuple(block_seeds),
                        suite=name,
                    )
                )
        checked = cells[first:] + [c for s in sweeps[first_sweep:] for c in (*s.cells(), *s.dependents())]
        for cell in checked:  # fail on a typo now, not an hour into the run
            try:
                resolve(cell)
            except ValueError as e:
                raise ValueError(f"{_blame(cell, common, where, here)}: {e}") from None
    return Suite(
        name,
        spec.get("description", ""),
        tuple(cells),
        float(timeout),
        tuple(sweeps),
        adaptive,
        chosen,
        tuple(replicates),
    )


def _blame(cell: Cell, common: dict[str, Any], where: str, here: str) -> str:
    """Where a cell's settings error comes from: the file's top-level ``[set]`` when the cell fails with those
    settings alone, else the block ``here``."""
    if common:
        try:
            resolve(dataclasses.replace(cell, overrides=dict(common)))
        except ValueError:
            return f"{where}, [set]"
    return here


def _design(adaptive: Adaptive | None, method: str, initial: int) -> dict[str, Any] | None:
    """What every record of a cell of an adaptive suite carries: its look (1: the block's own seeds), the looks its
    method's cells can reach and their alpha spending. A method that does not train keeps its seeds (its seeds are
    draws of a finite set: phrasings, demonstrations), so it has one look."""
    if adaptive is None:
        return None
    grows = METHODS.get(method).trains
    looks = adaptive.looks(initial) if grows else [initial]
    spending = adaptive.spending(initial) if grows else [1.0]
    return {"look": 1, "looks": looks, "spending": [round(w, 6) for w in spending], "why": "the block's own seeds"}


def _adaptive(value: Any, where: str) -> Adaptive | None:
    if value is None:
        return None
    here = f"{where}, [adaptive]"
    table = _table(value, here)
    _check_keys(table, ADAPTIVE_KEYS, here)
    missing = [k for k in ADAPTIVE_KEYS if k not in table]
    if missing:
        raise ValueError(f"{here}: lacks {', '.join(missing)} (e.g. max_seeds = 7, batch = 2, minutes = 55)")
    for key in ("max_seeds", "batch"):
        v = table[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{here}: {key} must be a positive number of seeds, not {v!r}")
    minutes = table["minutes"]
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or minutes <= 0:
        raise ValueError(f"{here}: minutes must be a positive time budget, not {minutes!r}")
    return Adaptive(table["max_seeds"], table["batch"], float(minutes))


def _replicates(value: Any, where: str) -> dict[str, dict[str, int]]:
    if value is None:
        return {}
    here = f"{where}, [replicates]"
    table = _table(value, here)
    out = {}
    for name, rep in table.items():
        rep = _table(rep, f"{here} {name}")
        _check_keys(rep, REPLICATE_KEYS, f"{here} {name}")
        offset, half = rep.get("seed_offset", 0), rep.get("test_half", 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"{here} {name}: seed_offset must be a non-negative integer, not {offset!r}")
        if half not in (0, 1, 2):
            raise ValueError(f"{here} {name}: test_half must be 1 or 2 (0: the whole test set), not {half!r}")
        out[name] = {"seed_offset": offset, "test_half": half}
    halves = [r["test_half"] for r in out.values() if r["test_half"]]
    if len(halves) != len(set(halves)):
        raise ValueError(f"{here}: two replicates test on the same half: give each its own test_half")
    return out


def _check_sweep(block: dict[str, Any], block_seeds: list[int], where: str):
    """(space, sweep_budget, sweep_seeds) of a block with ``sweep``, None without; errors name the key."""
    if "sweep" not in block:
        stray = [k for k in ("sweep_budget", "sweep_seeds") if k in block]
        if stray:
            raise ValueError(f"{where}: {stray[0]} without sweep; add sweep = {{ lr = [1e-4, 3e-4, 1e-3] }}")
        return None
    space = block["sweep"]
    example = "e.g. sweep = { lr = [1e-4, 3e-4, 1e-3] }"
    if not isinstance(space, dict) or not space:
        raise ValueError(f"{where}: sweep must be a table of hyperparameter = [values], {example}, not {space!r}")
    for key, values in space.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{where}: sweep {key}: a non-empty list of values to try, {example}, not {values!r}")
        if any(isinstance(v, dict | list) for v in values):
            raise ValueError(f"{where}: sweep {key}: values must be numbers, strings or booleans, not {values!r}")
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"{where}: sweep {key}: a value is listed twice in {values!r}")
    if "sweep_budget" not in block:
        raise ValueError(f"{where}: sweep needs sweep_budget, the one budget its cells run at (e.g. 256)")
    budget = block["sweep_budget"]
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"{where}: sweep_budget must be a number of examples (0 = the whole pool), not {budget!r}")
    sweep_seeds = _seeds(block["sweep_seeds"], f"{where}, sweep_seeds") if "sweep_seeds" in block else block_seeds[:1]
    return dict(space), budget, sweep_seeds


def _sweep_fields(space: dict[str, list], method: str, settings: dict[str, Any], where: str) -> dict[str, str]:
    """Sweep key -> the method's field it sets: the field of that name, or one the method's ``sweep_aliases`` maps
    the key to. Anything else, and a field the block also fixes with ``set``, is refused."""
    cls = METHODS.get(method)
    own = [f.name for f in dataclasses.fields(cls)]
    out = {}
    for key in space:
        field_name = key if key in own else cls.sweep_aliases.get(key)
        if field_name is None:
            what = f"hyperparameters: {', '.join(own)}" if own else "no hyperparameters"
            hint = " (it does not train: take it out of this block)" if not cls.trains else ""
            raise ValueError(f"{where}: sweep key {key!r}: method {method} has no such hyperparameter ({what}){hint}")
        if field_name in settings or key in settings:
            raise ValueError(f"{where}: sweep key {key!r}: {field_name} of {method} is both swept and fixed by set")
        if field_name in out.values():
            raise ValueError(f"{where}: sweep keys name the same field {field_name} of {method} twice")
        out[key] = field_name
    return out


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown key {key!r}.{hint} Allowed: {', '.join(allowed)}.")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table of settings (key = value), not {value!r}")
    return value


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: seeds must be a non-empty list of integers, e.g. seeds = [0, 1, 2], not {value!r}")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise ValueError(f"{where}: seeds: {s!r} is not a seed (an integer from 0 to {MAX_SEED})")
    return list(value)


EVERY = (["*"], ["all"])  # a block's tasks or methods: every registered one (a new method is covered with no edit)


def _names(value: Any, registry, kind: str, where: str) -> list[str]:
    """A block's names; ``["*"]`` or ``["all"]``: every registered name, sorted (cells a method declares unsupported
    are recorded ``unsupported``, as for a listed name)."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f'{where}: {kind}s must be a non-empty list of names, or ["*"] for all, not {value!r}')
    if value in EVERY:
        return registry.names()
    for v in value:
        if v not in registry:
            raise ValueError(f"{where}: {registry.explain(v)}")
    return list(value)


def _task_names(value: Any, base: Path, where: str) -> list[str]:
    """A block's tasks: registered names, or declared datasets (a declaration file, a data file or folder, relative
    to the suite's folder, or a name with ``datasets/<name>.toml`` beside the suite), read and checked here."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value) or value in EVERY:
        return _names(value, TASKS, "task", where)
    out = []
    for v in value:
        try:
            out.append(task_name(v, base))
        except UnknownNameError:
            raise ValueError(f"{where}: {suggest(v, TASKS.names(), 'task')} Or a dataset: a declaration .toml, a "
                             "data file or folder, or datasets/<name>.toml beside the suite") from None  # fmt: skip
    return out


def _check_budgets(value: Any, where: str) -> list[int] | str:
    fix = f"budgets must be a non-empty list of example counts (0 = the whole pool), or one of {WHOLE_POOL}"
    if isinstance(value, str):
        if value not in WHOLE_POOL:
            raise ValueError(f"{where}: {fix}, not {value!r}")
        return value
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: {fix}, not {value!r}")
    for b in value:
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            raise ValueError(f"{where}: budgets: {b!r} is not an example count; {fix}")
    return list(value)


def _budgets(value: list[int] | str, task: str) -> list[int]:
    if isinstance(value, list):
        return value
    own = list(TASKS.get(task).spec.budgets)
    return [*own, 0] if value == "task+full" else own


def select(cells: tuple[Cell, ...], pattern: str | None) -> list[Cell]:
    """Keep cells whose ``task/method/budget/seed`` matches a glob (``glue-*/lora/*``) or contains a substring."""
    if not pattern:
        return list(cells)
    out = []
    for c in cells:
        ident = f"{c.task}/{c.method}/{c.budget}/{c.seed}"
        if fnmatch.fnmatch(ident, pattern) or pattern in ident:
            out.append(c)
    return out


# ------------------------------------------------------------------------------------------- sweeps
SWEEP_FAILED = "sweep failed"


@dataclass
class SweepOutcome:
    """What a sweep's records say: ``status`` "selected" (``chosen`` and ``tuned_from`` set), "waiting" (a sweep
    cell has no record yet), "failed" or "unsupported" (``reason`` says why; nothing is chosen)."""

    sweep: Sweep
    status: str
    reason: str = ""
    chosen: dict[str, Any] | None = None
    tuned_from: dict[str, Any] | None = None

    def describe(self) -> str:
        if self.status != "selected":
            return f"sweep {self.sweep.name}: {self.status}: {self.reason}"
        scores = "; ".join(
            f"{values_text(row['values'])} -> " + ("no score" if row["mean"] is None else f"{row['mean']:.4f}")
            for row in self.tuned_from["scores"]
        )
        return f"sweep {self.sweep.name}: {values_text(self.chosen)} chosen on mean {self.tuned_from['on']} ({scores})"


def values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def select_sweep(sweep: Sweep, lookup: Callable[[str], Record | None]) -> SweepOutcome:
    """Choose the sweep's value from its cells' records (``lookup``: key -> record or None): the best mean over the
    sweep seeds of the validation primary metric, the first listed on a tie. Diverging on any seed, or a validation
    score that is not a number, rules a value out; a cell that failed in any other way fails the whole sweep."""
    spec = TASKS.get(sweep.task).spec
    on = metric_key(VAL, spec.primary_metric)
    sign = spec.sign
    rows, failed, waiting, unsupported = [], [], [], []
    for values in sweep.candidates():
        cells: dict[str, Any] = {}
        scores: list[float] = []
        for seed in sweep.seeds:
            cell = Cell(sweep.task, sweep.method, sweep.budget, seed, {**sweep.settings, **values}, suite=sweep.suite)
            key = resolve(cell).key
            record = lookup(key)
            if record is None:
                waiting.append(cell.describe())
            elif record.status == "unsupported":
                unsupported.append(record.error or "unsupported")
            elif record.status == "diverged":
                cells[key] = "diverged"
                scores.append(math.nan)
            elif record.ok:
                score = record.metrics.get(on, math.nan)
                cells[key] = None if math.isnan(score) else score
                scores.append(score)
            else:
                failed.append(f"{cell.describe()} ended {record.status} ({key})")
        mean = sum(scores) / len(scores) if len(scores) == len(sweep.seeds) else math.nan
        rows.append({"values": values, "mean": None if math.isnan(mean) else mean, "cells": cells})
    if failed:
        return SweepOutcome(sweep, "failed", f"{SWEEP_FAILED}: " + "; ".join(failed))
    if unsupported and len(unsupported) == len(sweep.candidates()) * len(sweep.seeds):
        return SweepOutcome(sweep, "unsupported", unsupported[0])
    if unsupported:
        return SweepOutcome(sweep, "failed", f"{SWEEP_FAILED}: only some of its cells are unsupported")
    if waiting:
        return SweepOutcome(sweep, "waiting", f"{len(waiting)} sweep cells have no record yet: {waiting[0]}, ...")
    valid = [r for r in rows if r["mean"] is not None]
    if not valid:
        return SweepOutcome(sweep, "failed", f"{SWEEP_FAILED}: every value diverged or has no finite {on}")
    best = max(valid, key=lambda r: sign * r["mean"])  # max keeps the first of equal scores: the first listed
    tuned_from = {
        "sweep": sweep.name,
        "on": on,
        "budget": sweep.budget,
        "seeds": list(sweep.seeds),
        "selected": dict(best["values"]),
        "scores": rows,
    }
    return SweepOutcome(sweep, "selected", chosen=dict(best["values"]), tuned_from=tuned_from)


def pending_records(outcome: SweepOutcome, cells: list[Cell]) -> list[Record]:
    """Records of a failed (or unsupported) sweep's block cells: the swept fields were never chosen, so each record
    says why under a key that marks them pending (``Resolved.pending_key``), never under the defaults' key."""
    out = []
    for cell in cells:
        cell = dataclasses.replace(cell, tuned_from={"sweep": outcome.sweep.name, outcome.status: outcome.reason})
        res = resolve(cell)
        status = "unsupported" if outcome.status == "unsupported" else "failed"
        record = new_record(res, status, outcome.reason)
        record.key = res.pending_key(outcome.sweep.fields)
        for name in outcome.sweep.fields:
            record.hparams["method"][name] = None
        out.append(record)
    return out


def expand(suite: Suite, lookup: Callable[[str], Record | None]) -> tuple[list[Cell], list[SweepOutcome]]:
    """The suite's cells as its records now define them: the fixed cells, then each sweep's block cells with the
    value it chose (tuned cells); and every sweep's outcome. Block cells of a sweep not chosen are left out."""
    outcomes = [select_sweep(s, lookup) for s in suite.sweeps]
    tuned = [c for o in outcomes if o.status == "selected" for c in o.sweep.dependents(o.chosen, o.tuned_from)]
    return [*suite.cells, *tuned], outcomes


def wanted(sweep: Sweep, pattern: str | None) -> bool:
    """A sweep runs when the filter keeps any of its cells or of its block's cells."""
    return not pattern or bool(select(sweep.cells(), pattern) or select(sweep.dependents(), pattern))


# ---------------------------------------------------------------------- records of the current definition
def current_records(suite: str, records: list[Record], suite_file: str | None = None) -> tuple[list[Record], list[str]]:
    """The records of the cells in the suite's current definition (same keys: same code versions, settings and
    budgets), and notes on what was left out or has not run yet. Records of an earlier definition stay on disk.
    ``suite_file`` is the suite's path when it is not one of ``bench/suites/``. Cells tuned by a sweep count with
    the values their sweep's records choose; the sweep cells themselves are left out of the tables (each tried one
    value); a sweep that has not chosen is a note (the sweeps table shows the choices)."""
    if suite_file is None and suite not in suite_names():  # records without a suite file (`run --suite adhoc`)
        return records, []
    definition = load_suite(suite_file or suite, replicate=_replicate_of(suite_file or suite, records))
    by_key = {r.key: r for r in records}
    cells, outcomes = expand(definition, by_key.get)
    wanted = {resolve(cell).key for cell in cells}
    defined = set(wanted)  # the definition's own cells (what "no record yet" counts)
    # more seeds of a cell in the suite are the suite's cells (a later look of an adaptive design, a rerun with
    # --seeds, a baseline recorded at more seeds): same task, method, budget and settings, another seed
    blocks: dict[tuple[str, str, int], list] = {}
    for c in (*cells, *definition.cells):
        blocks.setdefault((c.task, c.method, c.budget), []).append(c)
    for r in records:
        if r.key in wanted:
            continue
        for base in blocks.get((r.task, r.method, r.budget), ()):
            if base.seed != r.seed and resolve(dataclasses.replace(base, seed=r.seed)).key == r.key:
                wanted.add(r.key)
                break
    # a sweep's choice is in the sweeps table (page and summary); a sweep that did not choose is a note
    notes = [o.describe() for o in outcomes if o.status != "selected"]
    for o in outcomes:
        if o.status in ("failed", "unsupported"):  # their block cells' records say so, under pending keys
            wanted |= {resolve(c).pending_key(o.sweep.fields) for c in o.sweep.dependents()}
        elif o.status == "waiting":
            notes.append(f"the cells of {o.sweep.name} wait for their sweep: run the grid to fill them.")
    sweep_only = {resolve(c).key for c in definition.sweep_cells()} - wanted
    kept = [r for r in records if r.key in wanted]
    swept = sum(r.key in sweep_only for r in records)
    if swept:
        notes.append(f"{swept} sweep cells are not in the tables: each tried one value for the cells tuned by it.")
    if len(kept) + swept < len(records):
        notes.append(
            f"{len(records) - len(kept) - swept} records of cells outside the suite's current definition (earlier "
            "code versions, settings or budgets) are not shown; they stay in the results folder (--all-records shows "
            "them)."
        )
    missing = len(defined - {r.key for r in kept})
    if missing:
        notes.append(f"{missing} of the suite's {len(defined)} cells have no record yet (run the grid to fill them).")
    return kept, notes


def _replicate_of(suite: str, records: list[Record]) -> str | None:
    """The replicate of a suite file that ``records`` belong to: the one whose test half most of them scored (None:
    the file declares no replicates, or the records say nothing)."""
    names = load_suite(suite).replicates
    halves = [r.splits.test_half for r in records if r.splits is not None and r.splits.test_half]
    if not names or not halves:
        return None
    common = max(set(halves), key=halves.count)
    for name in names:
        cells = load_suite(suite, replicate=name).cells
        if cells and cells[0].overrides.get("test_half") == common:
            return name
    return None


def shown_records(
    suite: str, records: list[Record], suite_file: str | None, where: str | Path, all_records: bool = False
) -> tuple[list[Record], list[str]]:
    """The records a report or summary shows (``current_records``) and its notes; when none belong to the suite's
    current definition (an archive of an earlier one, such as the baselines), all of them, with a note saying so."""
    if all_records or not records:
        return records, []
    kept, notes = current_records(suite, records, suite_file)
    if kept:
        return kept, notes
    return records, [
        f"None of the {len(records)} records in {where} belong to the current definition of suite {suite} "
        f"(earlier code versions, settings or budgets): all of them are shown, as --all-records does. "
        f"`adaptbench grid --suite {suite}` runs today's cells."
    ]
