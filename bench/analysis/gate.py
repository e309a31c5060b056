"""The CI regression gate (``adaptbench compare``): a candidate run's records held against a baseline's, cell by cell.

**Cells.** A cell is what a suite asks for: task, method, budget and the settings the suite or the user set
(``Record.overrides``); its seeds are its repetitions. Cells are not matched by the record's key, which also hashes
every resolved default: a code change to a default (the kind of change this gate exists for) gives the same cell a
new key, and matching by key would report one cell gone and another new instead of what moved. Resolved settings
that differ from the baseline's are printed under the cell. Where a folder holds several records of one cell and
seed (older code versions), the newest counts.

**The rule.** For each cell and each gated quantity (the primary test metric; forgetting, the drop of the
backbone's primary probe; peak memory), with the baseline's n seeds x_s and the candidate's m seeds y_s:

    sigma     = max(sd of the baseline's seeds (0 with one seed), the measurement's floor, below)
    change    = mean of y_s - x_s over the seeds both ran         tolerance = k * sigma
              = mean(y) - mean(x) when they share no seed         tolerance = k * sigma * sqrt(1/m + 1/n)
    fail when the change in the bad direction (metric down, forgetting or memory up) exceeds the tolerance.

Seeds are paired where both runs have them: a seed fixes the training subset, initialisation and data order, so
on unchanged code the same seed reproduces its numbers (exactly, on one machine) and the seed's own luck cancels;
k seed-sds is then a generous bound on what a change may move without a reader of the results noticing. CI runs the
proxy at seed 0 and the baseline has seeds 0, 1, 2, so CI is paired. A candidate seed the baseline never ran is
held against the baseline's mean, and the difference of two means spreads by sqrt(1/m + 1/n) sd (with 3 seeds the
sd is itself uncertain: give the candidate the baseline's seeds). The floors keep a baseline whose seeds agree
exactly (sd 0) from failing on the last digit:

- primary metric: the sampling error of a score on the test items it was measured on, as for a proportion on
  [lo, hi]: sqrt((p - lo)(hi - p) / N), N the record's test-set size, [lo, hi] = [0, 1] ([-1, 1] for MCC and
  correlations, where it is sqrt((1 - r^2) / N)), p the baseline's mean kept one item inside the range: the binomial
  standard error for accuracy, and of the order of AUROC's, F1's and a correlation's.
- forgetting: the same for the probe's score on its examples (the record's ``limit``, else the whole probe);
  perplexity has no bounded range and no floor.
- peak memory: the across-seed sd pooled over every baseline cell measured the same way (CPU process peak RSS, or
  CUDA max allocated) on the same backbone. Memory moves with the allocator and the sampler, not only with the
  seed, and that noise is estimated from all those cells (n - 1 degrees of freedom each) far better than from one
  cell's 3 values; per backbone, because a 135M-parameter LM's process is larger and noisier than an EfficientNet's.
  At least the measurement's resolution: a 4 KiB page (RSS), a 512-byte block (the CUDA caching allocator).

**Same machine class: the tight rule.** A seed fixes everything random, so on one machine class (the records'
``env.machine_class``: CPU model and family, the instruction sets that pick float kernels, torch's CPU capability,
torch version and threads; on a GPU its name, compute capability, CUDA and cuDNN; see
``bench.run.meters.machine_class``) with the same transformers, peft and timm, a rerun of unchanged code reproduces
a cell's numbers. When every paired seed of a cell ran on the same machine class in both runs, its primary metric is
held to the metric's practical margin (``bench.core.metrics``: a point of accuracy or AUROC) instead of k sigma: a
3-point drop fails ("same seed, same machine class, different result"), which the seed-spread rule (median
tolerance 0.13 on the proxy) let through; a rise beyond the margin is noted, not failed (the gate fails drops).
Records written before the class was recorded match by ``env.machine`` (a hash of the CPU model, every CPU flag,
cores, threads and library versions: equal hashes are one class). Records of different classes, or of an unknown
one (the committed baselines), keep the seed-spread rule and the text says why and names both classes: the same key
and seed give another number on another machine (the proxy's pneumonia-mnist x scratch @64 seed 0: AUROC 0.633 on
the baseline's machine, 0.449 on another "AMD EPYC" with the same torch and threads; the loss differs from step 4,
float differences that training from scratch amplifies). A cell whose paired seed has the same key (same code and
settings) in both runs and a primary metric that differs by more than the margin across machines that are not known
to be one class is listed as machine-sensitive: the records show it, not a guess.

Exact rules: the trainable parameter count must equal the baseline's; the status must be the same (seed by seed;
a seed the baseline did not run must have one of its statuses); a backbone the baseline left untouched at every
seed (identical weights: the probe's "after" is its "before") must stay untouched; every cell of the baseline must
have a record in the candidate, at some seed. Cells only in the candidate are listed as new. Throughput (training
examples per second, else evaluation) is shown with its ratio and marked when it moved by more than k of the
baseline's seed sds; it never fails the gate: it depends on the machine and on its load.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import fmean, stdev
from typing import TYPE_CHECKING, Any

from bench import catalog
from bench.core.metrics import METRICS, metric_range
from bench.core.record import TEST, metric_key
from bench.core.store import Store

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record

DEFAULT_K = 3.0
RESOLUTION_BYTES = {"process_peak_rss": 4096, "cuda_max_allocated": 512}  # a page; a CUDA allocator block
PRIMARY, FORGETTING, MEMORY, PARAMS, STATUS, MISSING = (
    "primary metric",
    "forgetting",
    "peak memory",
    "trainable parameters",
    "status",
    "missing",
)
RULES = (PRIMARY, FORGETTING, MEMORY, PARAMS, STATUS, MISSING)
Ident = tuple[str, str, int, str]  # task, method, budget, the cell's own settings (JSON)


def identity(record: Record) -> Ident:
    """Task, method, budget and the settings asked for, each at its typed value (a record of ``--set r=4`` written
    before overrides were typed holds the string "4"; its resolved hyperparameters hold 4)."""
    typed = {}
    for name, value in record.overrides.items():
        sections = [s for s in record.hparams.values() if isinstance(s, dict) and name in s]
        typed[name] = sections[0][name] if sections else value
    return (record.task, record.method, record.budget, json.dumps(typed, sort_keys=True, default=str))


def floor_se(value: float, n: int | None, lo: float, hi: float) -> float:
    """Sampling error of a score on ``n`` items, as for a proportion on [lo, hi] (see the module docstring)."""
    if not n or math.isnan(value) or not hi > lo:
        return 0.0
    step = (hi - lo) / n
    p = min(max(value, lo + step), hi - step)
    return math.sqrt(max(0.0, (p - lo) * (hi - p)) / n)


@dataclass(frozen=True)
class Moved:
    """One quantity of one cell: the baseline's seeds against the candidate's, by the gate's rule."""

    base: float  # the baseline's mean over the paired seeds, or over all its seeds when none is paired
    base_sd: float  # across the baseline's seeds; NaN with one seed
    cand: float  # the candidate's mean over the same seeds, or over all its seeds
    change: float  # cand - base: the mean paired difference, or the difference of means
    tolerance: float
    sigma: float
    floor: float
    paired: tuple[int, ...]  # seeds compared pair by pair (empty: the means)
    worse: float  # the change in the bad direction (positive = worse)
    same_machine: bool = False  # every paired seed ran on the same machine: held to the metric's margin

    @property
    def beyond(self) -> bool:
        return self.worse > self.tolerance

    def why(self, k: float, unit: Callable[[float], str]) -> str:
        """What moved against what, and the tolerance it was held to, in words."""
        seeds = ",".join(map(str, self.paired))
        against = f"seed {seeds} vs the same seed" if self.paired else "mean vs the baseline's mean, no seed in common"
        if self.same_machine:
            sign = "+" if self.change >= 0 else "-"
            return (
                f"same seed, same machine class, different result: {unit(self.base)} -> {unit(self.cand)}, change "
                f"{sign}{unit(abs(self.change))} ({against}); tolerance {unit(self.tolerance)} (the metric's margin: "
                "a same-seed rerun on one machine class reproduces its numbers)"
            )
        source = "baseline seed sd" if self.sigma > self.floor else "measurement floor"
        widen = "" if self.paired else " x sqrt(1/m + 1/n)"
        sign = "+" if self.change >= 0 else "-"
        return (
            f"{unit(self.base)} -> {unit(self.cand)}, change {sign}{unit(abs(self.change))} ({against}); "
            f"tolerance {unit(self.tolerance)} = {k:g} x {unit(self.sigma)} ({source}){widen}"
        )


def held(base: dict[int, float], cand: dict[int, float], floor: float, k: float, worse_sign: float) -> Moved | None:
    """The candidate's values (seed -> value) against the baseline's; None when either side has none."""
    if not base or not cand:
        return None
    n = len(base)
    sd = stdev(base.values()) if n > 1 else math.nan
    sigma = max(0.0 if n < 2 else sd, floor)
    paired = tuple(sorted(set(base) & set(cand)))
    if paired:
        x, y, tolerance = fmean(base[s] for s in paired), fmean(cand[s] for s in paired), k * sigma
    else:
        x, y = fmean(base.values()), fmean(cand.values())
        tolerance = k * sigma * math.sqrt(1 / len(cand) + 1 / n)
    return Moved(x, sd, y, y - x, tolerance, sigma, floor, paired, (y - x) * worse_sign)


@dataclass(frozen=True)
class Check:
    rule: str  # one of RULES
    text: str  # what failed, by how much, against which tolerance


@dataclass
class Row:
    """One cell: its records in each run (seed -> record), what moved, the rules it failed, and notes."""

    ident: Ident
    label: str
    base: dict[int, Record]
    cand: dict[int, Record]
    metric: str = ""
    moved: dict[str, Moved | None] = field(default_factory=dict)  # PRIMARY, FORGETTING, MEMORY, "throughput"
    params: str = "-"
    failures: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    throughput_moved: bool = False
    # the paired seeds' machine classes: SAME (the tight rule), OTHER or UNKNOWN (the seed-spread rule), "" (no seed
    # paired, or no primary metric); ``classes``: (baseline's, candidate's) of a pair that is not the same
    machine: str = ""
    classes: tuple[str, str] = ("", "")
    sensitive: str = ""  # "0.633 -> 0.449 at seed 0": same key and seed, another number on another machine

    @property
    def failed(self) -> bool:
        return bool(self.failures)

    @property
    def verdict(self) -> str:
        if not self.cand:
            return "MISSING"
        return "new" if not self.base else "FAIL" if self.failed else "ok"


@dataclass
class Comparison:
    rows: list[Row]
    k: float
    superseded: tuple[int, int]  # older records of a cell and seed that a newer one replaced: baseline, candidate

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.rows)


def gather(records: Sequence[Record]) -> tuple[dict[Ident, dict[int, Record]], int]:
    """cell -> seed -> record, the newest record of a cell and seed winning; and how many older ones were left."""
    cells: dict[Ident, dict[int, Record]] = {}
    superseded = 0
    for r in sorted(records, key=lambda r: r.created_at):
        seeds = cells.setdefault(identity(r), {})
        superseded += r.seed in seeds
        seeds[r.seed] = r
    return cells, superseded


def compare(
    baseline: Sequence[Record],
    candidate: Sequence[Record],
    k: float = DEFAULT_K,
    spec_of: Callable[[str], TaskSpec] | None = None,
) -> Comparison:
    """Hold every cell of ``candidate`` against ``baseline`` by the module's rule."""
    if spec_of is None:
        spec_of = catalog.spec
    if not 0 < k < math.inf:
        raise ValueError(f"the tolerance factor k must be a positive number, not {k}")
    base_cells, base_old = gather(baseline)
    cand_cells, cand_old = gather(candidate)
    memory_floor = _memory_floors(base_cells)
    idents = sorted(set(base_cells) | set(cand_cells))
    labels = _labels(idents)
    rows = []
    for ident in idents:
        row = Row(ident, labels[ident], base_cells.get(ident, {}), cand_cells.get(ident, {}))
        if row.base and not row.cand:
            seeds = ",".join(map(str, sorted(row.base)))
            row.failures.append(Check(MISSING, f"no candidate record at any seed (the baseline ran seed {seeds})"))
        elif row.base:
            _hold(row, spec_of(ident[0]), k, memory_floor)
        rows.append(row)
    return Comparison(rows, k, (base_old, cand_old))


# ------------------------------------------------------------------------------------------ one cell
def _num(v: float) -> str:
    return f"{v:.3f}"


def _mib(v: float) -> str:
    return f"{v / 2**20:.1f} MiB"


def _primary(spec: TaskSpec) -> Callable[[Record], float | None]:
    def get(r: Record) -> float | None:
        v = r.metrics.get(metric_key(TEST, spec.primary_metric))
        return None if v is None or math.isnan(v) else float(v)

    return get


def _forgetting(r: Record) -> float | None:
    f = r.forgetting
    if f is None or f.drop is None or f.held_out is False or math.isnan(f.drop):
        return None  # scratch (nothing to forget), or a probe that reads the task's own data (not held out)
    return float(f.drop)


def _memory(r: Record) -> float | None:
    return None if r.cost is None or r.cost.peak_mem_bytes is None else float(r.cost.peak_mem_bytes)


def _throughput(r: Record) -> float | None:
    rate = r.cost and (r.cost.train_samples_per_s or r.cost.eval_samples_per_s)
    return float(rate) if rate else None


def _values(records: dict[int, Record], get: Callable[[Record], float | None]) -> dict[int, float]:
    return {s: v for s, r in records.items() if r.ok and (v := get(r)) is not None}


def _memory_floors(cells: dict[Ident, dict[int, Record]]) -> Callable[[str, str], float]:
    """(way of measuring, backbone) -> the across-seed sd of peak memory pooled over every baseline cell measured
    that way on that backbone (over every backbone when none of its cells has two seeds), at least the resolution."""
    sums: dict[tuple[str, str], list[float]] = {}
    for seeds in cells.values():
        values = _values(seeds, _memory)
        kinds = {(str(r.cost.peak_mem_kind), r.backbone) for r in seeds.values() if r.ok and r.cost is not None}
        if len(values) < 2 or len(kinds) != 1:
            continue
        kind = kinds.pop()
        for group in (kind, (kind[0], "")):
            acc = sums.setdefault(group, [0.0, 0.0])
            acc[0] += (len(values) - 1) * stdev(values.values()) ** 2
            acc[1] += len(values) - 1
    pooled = {group: math.sqrt(ss / dof) for group, (ss, dof) in sums.items()}

    def floor(kind: str, backbone: str) -> float:
        spread = pooled.get((kind, backbone), pooled.get((kind, ""), 0.0))
        return max(spread, RESOLUTION_BYTES.get(kind, 0))

    return floor


def _hold(row: Row, spec: TaskSpec, k: float, memory_floor: Callable[[str, str], float]) -> None:
    _check_status(row)
    same = {s for s in set(row.base) & set(row.cand) if row.base[s].status == row.cand[s].status}
    base = {s: r for s, r in row.base.items() if r.ok}
    cand = {s: r for s, r in row.cand.items() if r.ok and (s in same or s not in row.base)}
    if not base or not cand:
        return
    row.metric = spec.primary_metric
    lo, hi = metric_range(spec.primary_metric) or (0.0, 1.0)
    n_test = max((r.splits.test for r in base.values() if r.splits), default=0)
    values = _values(base, _primary(spec))
    floor = floor_se(fmean(values.values()), n_test, lo, hi) if values else 0.0
    what = f"{metric_key(TEST, spec.primary_metric)} {'fell' if spec.higher_is_better else 'rose'}"
    margin = METRICS[spec.primary_metric].margin
    _gate(row, PRIMARY, base, cand, _primary(spec), floor, k, -spec.sign, _num, what, margin)
    _machines(row, base, cand, _primary(spec), margin)

    first = next((r.forgetting for r in base.values() if r.forgetting), None)
    probe = catalog.probe(first.probe) if first else None  # its examples and range are declared with it
    items, (lo, hi) = (probe.examples or 0, probe.range) if probe and probe.range else (0, (0.0, 0.0))
    after = [r.forgetting.after for r in base.values() if r.forgetting and r.forgetting.after is not None]
    floor = floor_se(fmean(after), (first.limit if first else 0) or items, lo, hi) if after else 0.0
    _gate(
        row, FORGETTING, base, cand, _forgetting, floor, k, 1.0, _num, f"the {first.probe if first else ''} drop rose"
    )
    untouched = [r.forgetting.after_from_identical_weights for r in base.values() if r.forgetting]
    changed = [s for s, r in cand.items() if r.forgetting and not r.forgetting.after_from_identical_weights]
    if untouched and all(untouched) and changed:
        seeds = ",".join(map(str, changed))
        text = f"the backbone's weights changed (seed {seeds}); the baseline left them untouched at every seed"
        row.failures.append(Check(FORGETTING, text))

    kinds = {r.cost.peak_mem_kind for r in (*base.values(), *cand.values()) if r.cost}
    if len(kinds) > 1:
        row.notes.append(f"peak memory not compared: measured as {' and as '.join(sorted(map(str, kinds)))}")
    else:
        floor = memory_floor(str(kinds.pop()) if kinds else "", next(iter(base.values())).backbone)
        _gate(row, MEMORY, base, cand, _memory, floor, k, 1.0, _mib, "peak memory grew")

    base_p = {s: r.params.trainable for s, r in base.items() if r.params}
    known = sorted(set(base_p.values()))
    row.params = ", ".join(f"{p:,}" for p in known) or "-"
    for s, r in sorted(cand.items()):
        now, was = r.params.trainable if r.params else None, [base_p[s]] if s in base_p else known
        if known and now not in was:
            row.params += f" -> {now:,}" if now is not None else " -> none"
            shown = " or ".join(f"{p:,}" for p in was)
            row.failures.append(Check(PARAMS, f"{shown} -> {now if now is None else f'{now:,}'} (seed {s}); exact"))
            break

    moved = held(_values(base, _throughput), _values(cand, _throughput), 0.0, k, -1.0)
    row.moved["throughput"] = moved
    row.throughput_moved = moved is not None and not math.isnan(moved.base_sd) and abs(moved.change) > moved.tolerance
    _notes(row, base, cand)


SAME, OTHER, UNKNOWN = "same", "other", "unknown"
LIBRARIES = ("transformers", "peft", "timm")  # recorded beside the class; a new version can change a model's sums


def machine_class(record: Record) -> str | None:
    """The record's machine class with the library versions it ran (``"; "``-joined parts); for a record written
    before the class was recorded, ``machine <hash>`` where it has ``env.machine``; None: unknown."""
    env = record.env
    if env is None:
        return None
    if env.machine_class:
        return "; ".join([env.machine_class, *(f"{lib} {getattr(env, lib) or '-'}" for lib in LIBRARIES)])
    return f"machine {env.machine}" if env.machine else None


def machine_relation(a: Record, b: Record) -> str:
    """SAME: one machine class (for a record without one, one ``env.machine`` hash, which hashes more than the class:
    equal hashes are one class); UNKNOWN: a record with neither; OTHER: both known, not the same."""
    ea, eb = a.env, b.env
    if ea is not None and eb is not None and ea.machine_class and eb.machine_class:
        return SAME if machine_class(a) == machine_class(b) else OTHER
    if ea is not None and eb is not None and ea.machine and ea.machine == eb.machine:
        return SAME
    return UNKNOWN if machine_class(a) is None or machine_class(b) is None else OTHER


def same_machine(base: dict[int, Record], cand: dict[int, Record]) -> bool:
    """Every seed both runs have ran on one machine class: same code, same seed, same arithmetic."""
    paired = set(base) & set(cand)
    return bool(paired) and all(machine_relation(base[s], cand[s]) == SAME for s in paired)


def _gate(row, rule, base, cand, get, floor, k, worse_sign, unit, what, margin: float | None = None) -> None:
    """Hold one quantity; with ``margin``, seeds paired on the same machine class are held to it instead (the tight
    rule): a drop beyond it fails, a rise beyond it is noted."""
    base_v, cand_v = _values(base, get), _values(cand, get)
    moved = held(base_v, cand_v, floor, k, worse_sign)
    if moved is not None and margin is not None and moved.paired and same_machine(base, cand):
        moved = replace(moved, tolerance=margin, same_machine=True)
    row.moved[rule] = moved
    if base_v and not cand_v:
        row.failures.append(Check(rule, f"the baseline has it and the candidate's records do not ({what})"))
    elif moved is not None and moved.beyond:
        row.failures.append(Check(rule, f"{what}: {moved.why(k, unit)}"))
    elif moved is not None and moved.same_machine and -moved.worse > moved.tolerance:
        row.notes.append(
            f"{moved.why(k, unit)}; better, so not a failure (the gate fails drops): if the change is meant, make a "
            "new baseline"
        )


def _machines(row: Row, base: dict[int, Record], cand: dict[int, Record], get, margin: float) -> None:
    """The paired seeds' machine classes (``row.machine``, ``row.classes``), and what the records show: a cell whose
    same key and seed gave another number on another (or an unrecorded) machine class is machine-sensitive; on one
    class, another number at all means the cell is not deterministic there."""
    paired = sorted(s for s in set(base) & set(cand) if get(base[s]) is not None and get(cand[s]) is not None)
    if not paired:
        return
    relations = {s: machine_relation(base[s], cand[s]) for s in paired}
    row.machine = UNKNOWN if UNKNOWN in relations.values() else OTHER if OTHER in relations.values() else SAME
    odd = next((s for s in paired if relations[s] != SAME), None)
    if odd is not None:
        row.classes = (machine_class(base[odd]) or "unknown", machine_class(cand[odd]) or "unknown")
    for s in paired:
        x, y = get(base[s]), get(cand[s])
        if base[s].key != cand[s].key or x == y:
            continue
        if relations[s] != SAME and abs(y - x) > margin:
            row.sensitive = row.sensitive or f"{_num(x)} -> {_num(y)} at seed {s}"
            known = "another machine class" if relations[s] == OTHER else "a machine whose class is not recorded"
            row.notes.append(
                f"machine-sensitive: the same key and seed {s} gave {_num(x)} on the baseline's machine and {_num(y)} "
                f"on {known} (same code and settings; float differences the run amplifies)"
            )
        elif relations[s] == SAME and abs(y - x) <= margin:
            row.notes.append(
                f"the same key, seed {s} and machine class gave {x!r} and {y!r}: not bit-for-bit deterministic on "
                "this machine class (within the margin)"
            )


def _check_status(row: Row) -> None:
    statuses = sorted({r.status for r in row.base.values()})
    for s, r in sorted(row.cand.items()):
        if s in row.base and r.status != row.base[s].status:
            last = (r.error or "").strip().splitlines()[-1:] if not r.ok else []
            reason = f": {last[0][:160]}" if last else ""
            row.failures.append(Check(STATUS, f"{row.base[s].status} -> {r.status} (seed {s}){reason}"))
        elif s not in row.base and r.status not in statuses:
            row.failures.append(
                Check(STATUS, f"{r.status} at seed {s}; the baseline's seeds were {', '.join(statuses)}")
            )


def _notes(row: Row, base: dict[int, Record], cand: dict[int, Record]) -> None:
    """What else differs: resolved settings and versions (same cell, another key), new flags, a one-seed baseline."""
    for s, r in sorted(cand.items()):
        b = base.get(s) or next(iter(base.values()))
        diffs = _setting_diffs(b, r) if b.key != r.key else []
        if diffs:
            more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
            row.notes.append(f"resolved settings differ from the baseline's: {'; '.join(diffs[:4])}{more}")
            break
    for flag in sorted({f for r in cand.values() for f in r.flags} - {f for r in base.values() for f in r.flags}):
        seeds = ",".join(str(s) for s, r in sorted(cand.items()) if flag in r.flags)
        row.notes.append(f"flagged {flag} at seed {seeds}; no baseline seed was")
    if len(base) == 1:
        row.notes.append("one baseline seed: no seed spread, so the tolerances are the measurement floors alone")


def _setting_diffs(a: Record, b: Record) -> list[str]:
    def flat(r: Record) -> dict[str, Any]:
        out = {"backbone": r.backbone, "task version": r.task_version, "method version": r.method_version}
        for section, values in r.hparams.items():
            out.update({f"{section}.{name}": v for name, v in (values or {}).items()})
        return out

    left, right = flat(a), flat(b)
    keys = sorted(set(left) | set(right))
    return [f"{key} {left.get(key, '-')} -> {right.get(key, '-')}" for key in keys if left.get(key) != right.get(key)]


def _labels(idents: list[Ident]) -> dict[Ident, str]:
    """``task x method @budget``, plus the settings that tell apart cells which share those three."""
    groups: dict[tuple, list[Ident]] = {}
    for i in idents:
        groups.setdefault(i[:3], []).append(i)
    out = {}
    for (task, method, budget), members in groups.items():
        sets = [json.loads(i[3]) for i in members]
        keys = sorted({key for s in sets for key in s if any(s.get(key) != t.get(key) for t in sets)})
        for i, s in zip(members, sets, strict=True):
            out[i] = " ".join([f"{task} x {method} @{budget or 'all'}", *(f"{key}={s.get(key, '-')}" for key in keys)])
    return out


# ------------------------------------------------------------------------------------------ folders
def load_run(folder: str | Path, suite: str | None, role: str, hint: str) -> tuple[Path, list[Record], list[str]]:
    """(suite folder, its records, warnings about unreadable record files) of one run: ``folder`` is a results
    folder (``<folder>/<suite>/*.json``) or a suite folder itself. ``suite`` None: the one suite it holds.
    ``hint`` (with ``{suite}`` and ``{folder}``) says how to make the missing records."""
    path = Path(folder)
    if not path.is_dir():
        what = "a file, not a folder" if path.exists() else "does not exist"
        raise ValueError(f"{role} folder {path} {what}; " + hint.format(suite=suite or "<suite>", folder=path))
    if any(path.glob("*.json")) and not (suite and (path / suite).is_dir()):
        store, name = Store(path.parent), path.name  # a suite folder (results/baselines/proxy-cpu/proxy)
        if suite and suite != name:
            raise ValueError(f"{role} folder {path} holds suite {name}'s records, not {suite}'s; name its parent")
    else:
        store = Store(path)
        found = store.suites()
        if suite is None and len(found) > 1:
            raise ValueError(f"{role} folder {path} holds several suites ({', '.join(found)}): name one with --suite")
        name = suite or (found[0] if found else "")
    records = store.records(name) if name else []
    if not records:
        where = store.suite_dir(name) if name else path
        others = f" (suites with records there: {', '.join(store.suites())})" if store.suites() else ""
        raise ValueError(
            f"no {role} records under {where}{others}; " + hint.format(suite=name or "<suite>", folder=path)
        )
    return store.suite_dir(name), records, store.warnings()


def check_same_suite(baseline: Sequence[Record], candidate: Sequence[Record]) -> None:
    """Two runs of one suite, or a clear error."""
    a, b = sorted({r.suite for r in baseline}), sorted({r.suite for r in candidate})
    if a != b:
        raise ValueError(
            f"the baseline's records are of suite {', '.join(a)} and the candidate's of {', '.join(b)}: compare two "
            "runs of one suite (--suite names the folder on both sides)"
        )


def class_id(machine_class: str) -> str:
    """A machine class's short name: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(machine_class.encode()).hexdigest()[:8]


def machines(records: Sequence[Record]) -> str:
    """Where a run was measured: device, CPU (or GPU), torch, threads and the machine class, as the records say."""

    def where(r: Record) -> str:
        env = r.env
        cls = machine_class(r)
        named = f"machine class {class_id(cls)}" if env.machine_class and cls else "machine class not recorded"
        return (
            f"{r.cost.device if r.cost else '?'} {env.gpu_name or env.cpu_model or env.cpu}, torch {env.torch}, "
            f"{env.threads} threads, {named}"
        )

    seen = sorted({where(r) for r in records if r.ok and r.env is not None})
    return "; ".join(seen[:3]) + (f" (and {len(seen) - 3} more)" if len(seen) > 3 else "") or "unknown"
