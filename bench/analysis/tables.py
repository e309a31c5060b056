"""The per-task tables, built once: a ``Row`` per (method, budget) with every test metric's mean and 95% interval over
seeds (clipped to the metric's range, ``bench.analysis.stats.seed_summary``), the backbones, the gain over scratch,
forgetting, costs (median and range over seeds: ``Spread``) and flags. The page's leaderboards, summary.md's tables
and ``adaptbench summary`` render these rows; none of them builds its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench import catalog
from bench.analysis import baselines as bl
from bench.analysis.cells import (
    SCRATCH,
    Gain,
    MethodCell,
    adjust_gains,
    base_method,
    gain_over_scratch,
    method_cells,
    variant,
)
from bench.analysis.flags import cell_flags, stopped_by_cap
from bench.analysis.overview import method_rank, task_rank
from bench.analysis.score_interval import cell_intervals
from bench.analysis.stats import Interval, min_seeds, seed_summary
from bench.catalog import held_out
from bench.core.api import TaskSpec
from bench.core.record import SHOWN_SPLITS, TEST, Record, metric_key, split_of
from bench.core.store import Store

COSTS = (  # Cost fields summarised over seeds (``Spread``: median and range)
    "peak_mem_bytes",
    "peak_mem_delta_bytes",
    "train_samples_per_s",
    "eval_samples_per_s",
    "train_time_s",
    "wall_time_s",
)


@dataclass(frozen=True)
class Spread:
    """A cost over seeds: its median and range. Costs are summarised by the median, not the mean, because one slow
    seed (a busy machine, a cold cache) would drag a mean far from what a run typically takes; the range shows it."""

    median: float  # NaN: no seed measured it
    low: float
    high: float
    n: int  # seeds that measured it

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Spread:
        vals = [float(v) for v in values if v is not None and not math.isnan(v)]
        if not vals:
            return cls(math.nan, math.nan, math.nan, 0)
        return cls(float(np.median(vals)), min(vals), max(vals), len(vals))

    def text(self, fmt: Callable[[float], str]) -> str:
        """The median and the range, "22 (20–270)", each value formatted by ``fmt``; one value, or a range that
        formats as one value: "22"."""
        low, high = fmt(self.low), fmt(self.high)
        return fmt(self.median) if self.n == 1 or low == high else f"{fmt(self.median)} ({low}–{high})"

    def describe(self, scale: float = 1.0) -> str:
        """``22 (20–270)``: the median and, when the seeds differ, the range; ``scale`` multiplies every value (bytes
        to MiB); "–" when not measured. Whole numbers from 100 up, one decimal from 1, two below."""
        if self.n == 0:
            return "–"
        digits = _digits(scale * max(abs(self.low), abs(self.high)))
        return self.text(lambda v: f"{scale * v:,.{digits}f}")

    def overlaps(self, other: Spread) -> bool:
        """Whether the two ranges over seeds overlap (the seeds do not separate them)."""
        return self.low <= other.high and other.low <= self.high


def _digits(x: float) -> int:
    return 0 if x >= 100 or x == 0 else 1 if x >= 1 else 2


@dataclass(frozen=True)
class Row:
    """One method at one budget of one task, over its seeds."""

    cell: MethodCell
    backbones: tuple[str, ...]
    metrics: dict[str, Interval]  # every test, test_ood and gap metric over seeds; the primary first
    gain: Gain | None  # over scratch at the same budget (None: no scratch, scratch itself, or an unregistered task)
    forgetting: Interval | None  # the primary probe's drop over seeds (None: not measured, or not held out)
    forgetting_extra: dict[str, Interval]  # further held-out probes every seed measured
    probe: str | None
    probe_before: float | None  # the probe on the untouched backbone (the first seed's record)
    probe_held_out: bool
    flags: tuple[str, ...]  # ``bench.analysis.flags.cell_flags`` (none for a task this checkout does not register)
    n_degenerate: int  # seeds flagged degenerate
    costs: dict[str, Spread]  # median and range over seeds of each of ``COSTS``
    trainable: float  # mean trainable parameters
    trainable_share: float  # of all parameters
    saved_bytes: float  # mean adapter bytes (what must be saved beside the base model)
    device: str | None
    base: bl.Baselines | None = None  # the task's majority-class and chance scores (None: test labels unknown)

    @property
    def method(self) -> str:
        return self.cell.method

    @property
    def budget(self) -> int:
        return self.cell.budget

    @property
    def records(self) -> list[Record]:
        return self.cell.records

    @property
    def n(self) -> int:
        return len(self.cell.records)

    @property
    def caveats(self) -> list[str]:
        """What limits how far this row's numbers can be trusted, in words, for the places a verdict is read (the
        decision map, the leaderboards): its flags (``bench.analysis.flags``, few-seeds as "k of m seeds"), and the
        seeds whose run ended at its step cap."""
        out = []
        for flag in self.flags:
            if flag == "degenerate":
                out.append(f"degenerate: {self.n_degenerate} of {self.n}")
            elif flag == "few-seeds":
                out.append(f"{self.n} of {min_seeds(self.method)} seeds")
            else:
                out.append(flag)
        capped = sum(stopped_by_cap(r) for r in self.records)
        if capped:
            out.append(f"step cap {capped}/{self.n}")
        return out


@dataclass(frozen=True)
class _Unregistered:  # a task this checkout does not register: what a table needs, by default
    primary_metric: str = "accuracy"


def spec_or_none(task: str) -> TaskSpec | None:
    return catalog.spec(task) if catalog.known(task) else None


def task_rows(
    store: Store,
    cells_by_budget: Mapping[int, Mapping[str, MethodCell]],
    spec: TaskSpec | None,
    labels: np.ndarray | None,
    gains: Mapping[tuple[int, str], Gain] | None = None,
) -> list[Row]:
    """Rows in budget order (the whole pool last), then the usual method order. ``labels`` (the test labels) give
    the did-not-learn baseline (None: unknown, no did-not-learn flag); ``gains``: (budget, method) -> its gain over
    scratch, adjusted in the report's family (default: this task's gains, adjusted alone); ``spec`` None (an
    unregistered task): no flags and no gain."""
    if gains is None and spec is not None:
        gains = task_gains(store, cells_by_budget, spec)
    base = bl.of_labels(spec, labels) if labels is not None and spec is not None else None
    primary = metric_key(TEST, (spec or _Unregistered()).primary_metric)
    rows = []
    for budget in sorted(cells_by_budget, key=lambda b: (b == 0, b)):
        cells = cells_by_budget[budget]
        for method in sorted(cells, key=lambda m: (method_rank(base_method(m)), m)):  # a variant after its method
            c = cells[method]
            gain = (gains or {}).get((budget, method))
            flags = cell_flags(store, c, spec, base, gain) if spec else []
            names = sorted({k for r in c.records for k in r.metrics if split_of(k)[0] in SHOWN_SPLITS})
            names.sort(key=lambda k: (k != primary, k))
            first = c.records[0].forgetting
            probes_held_out = all(held_out(r.forgetting.probe, r.task) for r in c.records if r.forgetting)
            drops = [r.forgetting.drop for r in c.records if r.forgetting and r.forgetting.drop is not None]
            rows.append(
                Row(
                    cell=c,
                    backbones=tuple(sorted({r.backbone for r in c.records})),
                    metrics=cell_intervals(store, c.records, names),
                    gain=gain,
                    forgetting=seed_summary(drops) if drops and probes_held_out else None,
                    forgetting_extra=_extra_drops(c.records),
                    probe=first.probe if first else None,
                    probe_before=first.before if first else None,
                    probe_held_out=probes_held_out,
                    flags=tuple(flags),
                    n_degenerate=sum("degenerate" in r.flags for r in c.records),
                    costs={k: Spread.of([getattr(r.cost, k) for r in c.records if r.cost]) for k in COSTS},
                    trainable=_mean([r.params.trainable for r in c.records if r.params]),
                    trainable_share=_mean([r.params.trainable_share for r in c.records if r.params]),
                    saved_bytes=_mean([r.params.adapter_bytes for r in c.records if r.params]),
                    device=c.records[0].cost.device if c.records[0].cost else None,
                    base=base,
                )
            )
    return rows


def task_gains(
    store: Store, cells_by_budget: Mapping[int, Mapping[str, MethodCell]], spec: TaskSpec
) -> dict[tuple[int, str], Gain]:
    """(budget, method) -> its unadjusted gain over scratch at that budget (none for scratch or without scratch). A
    row on another backbone or data (``lora @ hf:/models/x``, ``bench.analysis.cells.row_keys``) is held against
    scratch on the same ones when that row exists, else against the task's scratch row."""
    out = {}
    for budget, cells in cells_by_budget.items():
        for method, c in cells.items():
            scratch = cells.get(SCRATCH + variant(method)) or cells.get(SCRATCH)
            if scratch is not None and base_method(method) != SCRATCH:
                out[(budget, method)] = gain_over_scratch(store, c, scratch, spec)
    return out


def _extra_drops(records: Sequence[Record]) -> dict[str, Interval]:
    """The further probes' drops, for the probes every seed measured and that are held out from the task."""
    out = {}
    for name in records[0].forgetting_extra:
        drops = [r.forgetting_extra[name].drop if name in r.forgetting_extra else None for r in records]
        if all(d is not None for d in drops) and held_out(name, records[0].task):
            out[name] = seed_summary(drops)
    return out


def test_labels(store: Store, records: Sequence[Record], from_data: bool = True) -> np.ndarray | None:
    """A task's test labels: stored with the predictions, else (``from_data``) read from the data root."""
    labels = bl.stored_test_labels(store, records)
    if labels is None and from_data and records:
        labels = bl.data_test_labels(records[0])
    return labels


def tables(
    store: Store, records: Sequence[Record], labels_from_data: bool = True, registered_only: bool = False
) -> dict[str, list[Row]]:
    """task -> its rows, for every task with ok records (tasks in the usual order). ``registered_only``: leave out
    tasks this checkout does not register (they have no spec: no flags, no baselines)."""
    ok = [r for r in records if r.ok and (catalog.known(r.task) or not registered_only)]
    spec_of = {t: spec_or_none(t) for t in {r.task for r in ok}}
    cells = method_cells(ok, lambda t: spec_of[t] or _Unregistered())
    by_task: dict[str, dict[int, dict[str, MethodCell]]] = {}
    for (task, budget), c in cells.items():
        by_task.setdefault(task, {})[budget] = c
    # the gains over scratch of every task and budget: one family, adjusted together
    found = {
        (t, b, m): g for t in by_task if spec_of[t] for (b, m), g in task_gains(store, by_task[t], spec_of[t]).items()
    }
    gains = dict(zip(found, adjust_gains(list(found.values())), strict=True))
    out = {}
    for task in sorted(by_task, key=task_rank):
        spec = spec_of[task]
        labels = test_labels(store, [r for r in ok if r.task == task], labels_from_data) if spec else None
        mine = {(b, m): g for (t, b, m), g in gains.items() if t == task}
        out[task] = task_rows(store, by_task[task], spec, labels, mine)
    return out


def _mean(values: Sequence[float | None]) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan
