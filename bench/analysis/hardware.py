"""What each method costs on the hardware its records came from: training and test throughput, LoRA with its
adapters merged or not, peak memory, saved bytes, FLOPs, MFU and times, per (machine, task, method, budget) as the
median and range over seeds (``CostRow``); and the short answers a newcomer asks for at each (machine, task, budget)
(``Answers``): which method trains in the least time, serves the most test examples per second, needs the least peak
memory and saves the fewest bytes.

Serving speed is ranked on test ex/s, the one measure every method has (the whole test set, as evaluated; LoRA
unmerged). The merged and unmerged speeds of mergeable methods are timed on the first 256 test examples only, a
different measurement (the same unmerged LoRA model's speed there is not its test ex/s), so they are not ranked
against other methods' test ex/s: the answer names what merging buys instead (merged / unmerged, same examples).

Why medians and ranges, not means and intervals: costs are skewed (one cell that found its features in the cache,
or shared the machine, is 1000x off) and the question is "what will it cost here", not a test.

Two rules keep the numbers honest:
- Records of different machines are never pooled: a machine is the device plus the CPU model (device cpu) or GPU
  name (device cuda) plus the torch thread count (``Machine``). Rows and answers are per machine.
- Cached-feature methods (``frozen``) and predictors on backbone features (``fewshot`` on images) read features from
  a cache shared across cells (``Cost.feature_cache``: examples served vs computed). A cell that was served features
  did not pay for the backbone pass, so its test speed, times and memory are not what serving or training costs: the
  cache-dependent measures (``CACHE_DEPENDENT``) of such seeds ("warm") are kept apart from those of seeds that
  computed everything in the cell ("cold"), and the answers use cold seeds only, naming the methods that had none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.analysis.overview import method_rank, task_rank
from bench.analysis.tables import Spread
from bench.core.record import Record

# the per-seed states of the feature cache (``cache_state``)
COLD = "computed in the cell"  # every feature the cell used was computed in it
WARM = "served from the cache"  # every feature came from the cache
PARTLY = "partly served from the cache"  # some of each
UNUSED = "cache not read"  # the method has the cache but read no backbone features through it (e.g. prompting)
CACHE_STATES = (COLD, PARTLY, WARM, UNUSED)


@dataclass(frozen=True, order=True)
class Machine:
    """Where a record ran: ``device`` (cpu, cuda), ``name`` (the CPU model on cpu, the GPU name on cuda) and the
    torch thread count. Records of two machines are never compared."""

    device: str
    name: str
    threads: int | None

    @property
    def is_gpu(self) -> bool:
        return self.device == "cuda"

    def label(self) -> str:
        """E.g. "CPU AMD EPYC, 1 thread (device cpu)"."""
        kind = "GPU" if self.is_gpu else "CPU" if self.device == "cpu" else self.device
        threads = (
            "threads not recorded" if self.threads is None else f"{self.threads} thread{'s' * (self.threads != 1)}"
        )
        return f"{kind} {self.name}, {threads} (device {self.device})"


def machine_of(record: Record) -> Machine:
    env, cost = record.env, record.cost
    device = (cost.device if cost else None) or "unknown"
    if device == "cuda":
        name = (env.gpu_name if env else None) or "GPU not recorded"
    else:
        name = (env.cpu_model or (f"{env.cpu} (model not recorded)" if env.cpu else None) if env else None) or "?"
    return Machine(device, name, env.threads if env else None)


def spread(values: Sequence[float | None]) -> Spread | None:
    """Median and range of the values that were measured (None and NaN left out); None when none was."""
    s = Spread.of(values)
    return s if s.n else None


def cache_state(record: Record) -> str | None:
    """One of ``CACHE_STATES`` from ``Cost.feature_cache`` ({hits, computed}); None: the method has no cache."""
    fc = record.cost.feature_cache if record.cost else None
    if fc is None:
        return None
    hits, computed = int(fc.get("hits") or 0), int(fc.get("computed") or 0)
    if not hits:
        return COLD if computed else UNUSED
    return WARM if not computed else PARTLY


def is_warm(record: Record) -> bool:
    """The cell was served features from the cache: its cache-dependent costs are not a cold cell's."""
    return cache_state(record) in (WARM, PARTLY)


@dataclass(frozen=True)
class Measured:
    """A cache-dependent measure: ``value`` over the seeds that paid for everything they used (every seed, for a
    method without a feature cache), ``warm`` over the seeds served from the cache (kept apart; None: none was)."""

    value: Spread | None
    warm: Spread | None = None


@dataclass(frozen=True)
class CacheSeed:
    seed: int
    state: str
    hits: int
    computed: int


@dataclass(frozen=True)
class CostRow:
    """One method at one budget of one task on one machine, over its seeds."""

    machine: Machine
    task: str
    method: str
    budget: int
    seeds: int
    trains: bool  # the method takes training steps (False: few-/zero-shot predictors, built without training)
    train_ex_s: Measured  # training examples per second (warm-up steps excluded)
    test_ex_s: Measured  # test examples per second as evaluated (cached methods: the backbone pass included)
    merged_ex_s: Measured  # mergeable methods (LoRA): on the first 256 test examples, adapters folded in ...
    unmerged_ex_s: Measured  # ... and kept separate, back to back
    merge_max_abs_diff: float | None  # the largest output difference merged vs unmerged, over seeds
    merge_speedup: Spread | None  # merged / unmerged speed per cold seed: what merging buys at serving time
    merge_errors: tuple[str, ...]  # why merging failed, where it did
    peak_mem: Measured
    peak_mem_delta: Measured  # the cell's own increase over the memory it started with
    peak_mem_kind: str | None  # process_peak_rss | cuda_max_allocated (several: joined by ", ")
    saved_bytes: Spread | None  # Params.adapter_bytes: backbone tensors changed or added (the head not counted)
    head_params: Spread | None  # trainable parameters outside the backbone (the task head)
    fwd_flops: Spread | None  # per example
    train_flops: Spread | None  # per training example seen
    flops_notes: tuple[str, ...]
    mfu: Spread | None  # a fraction (1 = the basis' peak)
    mfu_basis: tuple[str, ...]
    mfu_missing: str | None  # why there is no MFU (None: there is one)
    train_s: Measured  # the run that produced the tested model (its refit included)
    tuning_s: Measured  # nested tuning: every candidate's and fold's training time (the selected run's included)
    time_to_train: Measured  # tuning_s where the cell tuned, else train_s: the training time the cell spent
    wall_s: Measured  # the whole cell: loading, probes, tuning, training, test
    cache: tuple[CacheSeed, ...]  # one per seed, for methods with the feature cache (empty: none)

    @property
    def cold_seeds(self) -> int:
        return self.seeds - sum(c.state in (WARM, PARTLY) for c in self.cache)


CACHE_DEPENDENT = "test/merged/unmerged ex/s, peak memory and its delta, train, tuning and wall time"


def _measured(records: Sequence[Record], get: Callable[[Record], float | None]) -> Measured:
    cold = [get(r) for r in records if not is_warm(r)]
    warm = [get(r) for r in records if is_warm(r)]
    return Measured(spread(cold), spread(warm))


def _cost(name: str) -> Callable[[Record], float | None]:
    return lambda r: getattr(r.cost, name) if r.cost else None


def _mfu_missing(records: Sequence[Record]) -> str | None:
    if any(r.cost and r.cost.mfu is not None for r in records):
        return None
    costs = [r.cost for r in records if r.cost]
    if not any(c.train_samples_per_s for c in costs):
        return "no timed training steps through the backbone (nothing to divide achieved FLOP/s by)"
    notes = sorted({c.flops_note for c in costs if c.train_flops_per_example is None and c.flops_note})
    if notes:
        return "training FLOPs not counted: " + "; ".join(notes)
    return "no peak FLOP/s recorded for this machine"


def cost_row(machine: Machine, task: str, method: str, budget: int, records: Sequence[Record]) -> CostRow:
    costs = [r.cost for r in records if r.cost]
    params = [r.params for r in records if r.params]
    train_s, tuning_s = _cost("train_time_s"), _cost("tuning_time_s")
    return CostRow(
        machine=machine,
        task=task,
        method=method,
        budget=budget,
        seeds=len(records),
        trains=any(c.steps or c.train_samples_per_s for c in costs),
        train_ex_s=_measured(records, _cost("train_samples_per_s")),
        test_ex_s=_measured(records, _cost("eval_samples_per_s")),
        merged_ex_s=_measured(records, _cost("eval_samples_per_s_merged")),
        unmerged_ex_s=_measured(records, _cost("eval_samples_per_s_unmerged")),
        merge_speedup=spread(
            [
                c.eval_samples_per_s_merged / c.eval_samples_per_s_unmerged
                for r in records
                if not is_warm(r) and (c := r.cost) and c.eval_samples_per_s_merged and c.eval_samples_per_s_unmerged
            ]
        ),
        merge_max_abs_diff=max((c.merge_max_abs_diff for c in costs if c.merge_max_abs_diff is not None), default=None),
        merge_errors=tuple(sorted({c.merge_error for c in costs if c.merge_error})),
        peak_mem=_measured(records, _cost("peak_mem_bytes")),
        peak_mem_delta=_measured(records, _cost("peak_mem_delta_bytes")),
        peak_mem_kind=", ".join(sorted({c.peak_mem_kind for c in costs if c.peak_mem_kind})) or None,
        saved_bytes=spread([p.adapter_bytes for p in params]),
        head_params=spread([p.trainable - p.trainable_no_head for p in params]),
        fwd_flops=spread([c.fwd_flops_per_example for c in costs]),
        train_flops=spread([c.train_flops_per_example for c in costs]),
        flops_notes=tuple(sorted({c.flops_note for c in costs if c.flops_note})),
        mfu=spread([c.mfu for c in costs]),
        mfu_basis=tuple(sorted({c.mfu_basis for c in costs if c.mfu_basis})),
        mfu_missing=_mfu_missing(records),
        train_s=_measured(records, train_s),
        tuning_s=_measured(records, tuning_s),
        time_to_train=_measured(records, lambda r: tuning_s(r) if tuning_s(r) is not None else train_s(r)),
        wall_s=_measured(records, _cost("wall_time_s")),
        cache=tuple(
            CacheSeed(
                r.seed,
                state,
                int(r.cost.feature_cache.get("hits") or 0),
                int(r.cost.feature_cache.get("computed") or 0),
            )
            for r in records
            if (state := cache_state(r)) is not None
        ),
    )


def cost_rows(records: Sequence[Record]) -> list[CostRow]:
    """A row per (machine, task, method, budget) of the ok records: machines in order (CPUs first), then tasks,
    budgets (the whole pool last) and methods in the report's usual order."""
    groups: dict[tuple[Machine, str, int, str], list[Record]] = {}
    for r in records:
        if r.ok:
            groups.setdefault((machine_of(r), r.task, r.budget, r.method), []).append(r)
    keys = sorted(groups, key=lambda k: (k[0].is_gpu, k[0], task_rank(k[1]), k[2] == 0, k[2], method_rank(k[3])))
    return [cost_row(m, t, meth, b, sorted(groups[(m, t, b, meth)], key=lambda r: r.seed)) for m, t, b, meth in keys]


# ------------------------------------------------------------------------------------------------- answers
@dataclass(frozen=True)
class Left:
    """A method an answer leaves out, and why: "no training" (built without training steps; ``value`` its test
    examples per second, where it pays instead) or "warm only" (every seed was served features from the cache;
    ``value`` the warm measurement, not comparable); ``value`` None: not measured."""

    method: str
    why: str
    value: float | None


NO_TRAINING, WARM_ONLY = "no training", "warm only"


@dataclass(frozen=True)
class Answer:
    """The best method(s) by the median over seeds (ties: all of them), the runner-up (the best of the rest), the
    methods left out and why. ``overlap``: the best's range over seeds overlaps the runner-up's (seeds do not
    separate them)."""

    best: tuple[str, ...]
    value: Spread | None
    runner_up: str | None = None
    runner_value: Spread | None = None
    left: tuple[Left, ...] = ()
    # fastest to serve: the mergeable methods' median speed-up from merging (merged / unmerged on the same 256 test
    # examples); their test ex/s, the one measure every method has, is unmerged
    speedups: tuple[tuple[str, float], ...] = ()
    best_of: int = 0  # seeds of the best's row (its value may rest on fewer: its cold seeds)
    runner_of: int = 0

    @property
    def overlap(self) -> bool:
        return self.value is not None and self.runner_value is not None and self.value.overlaps(self.runner_value)


def _answer(
    rows: Sequence[CostRow],
    get: Callable[[CostRow], Measured | Spread | None],
    lower: bool,
    skip: Callable[[CostRow], Left | None] = lambda row: None,
) -> Answer:
    """Rank the rows by the median of ``get`` over cold seeds (``lower``: least is best)."""
    ranked, left = [], []
    for row in rows:
        why = skip(row)
        m = get(row)
        value = m.value if isinstance(m, Measured) else m
        if why is not None:
            left.append(why)
        elif value is not None:
            ranked.append((value, row.method, row.seeds))
        elif isinstance(m, Measured) and m.warm is not None:
            left.append(Left(row.method, WARM_ONLY, m.warm.median))
    if not ranked:
        return Answer((), None, left=tuple(left))
    ranked.sort(key=lambda vm: (vm[0].median if lower else -vm[0].median, method_rank(vm[1])))
    top = ranked[0][0].median
    best = tuple(m for v, m, _ in ranked if v.median == top)
    rest = [x for x in ranked if x[0].median != top]
    runner = rest[0] if rest else (None, None, 0)
    return Answer(best, ranked[0][0], runner[1], runner[0], tuple(left), best_of=ranked[0][2], runner_of=runner[2])


@dataclass(frozen=True)
class Answers:
    """At one (machine, task, budget): least training time, most test examples per second, least peak memory, fewest
    saved bytes."""

    machine: Machine
    task: str
    budget: int
    train: Answer
    serve: Answer
    memory: Answer
    store: Answer


def answers(rows: Sequence[CostRow]) -> list[Answers]:
    """One ``Answers`` per (machine, task, budget) of ``rows`` (``cost_rows``), in their order."""
    groups: dict[tuple[Machine, str, int], list[CostRow]] = {}
    for row in rows:
        groups.setdefault((row.machine, row.task, row.budget), []).append(row)

    def no_training(row: CostRow) -> Left | None:
        serve = row.test_ex_s.value  # where it pays instead: at test time (cold seeds only)
        return None if row.trains else Left(row.method, NO_TRAINING, serve.median if serve else None)

    out = []
    for (machine, task, budget), mine in groups.items():
        serve = _answer(mine, lambda r: r.test_ex_s, lower=False)
        speedups = tuple((r.method, r.merge_speedup.median) for r in mine if r.merge_speedup)
        out.append(
            Answers(
                machine,
                task,
                budget,
                train=_answer(mine, lambda r: r.time_to_train, lower=True, skip=no_training),
                serve=dataclasses.replace(serve, speedups=speedups),
                memory=_answer(mine, lambda r: r.peak_mem, lower=True),
                store=_answer(mine, lambda r: r.saved_bytes, lower=True),
            )
        )
    return out


@dataclass(frozen=True)
class HardwareReport:
    """The section's numbers: the rows and the answers, over every machine the records came from."""

    rows: list[CostRow]
    answers: list[Answers]

    @property
    def machines(self) -> list[Machine]:
        return list(dict.fromkeys(row.machine for row in self.rows))


def hardware_report(records: Sequence[Record]) -> HardwareReport:
    rows = cost_rows(records)
    return HardwareReport(rows, answers(rows))
