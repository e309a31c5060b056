"""``adaptbench plan``: a suite's estimated wall time and peak memory, per cell and in total, before it runs; with
``--against DIR`` the same plan held against the records of a run that happened (how good the estimate was). The
model is ``bench.run.plan``; this module is its command line and the estimate ``grid --dry-run`` adds to its list.

How good the estimate is, on the default suite's two committed replicates (replicate B planned without any of B's
records; each line prints the total and per-cell ratios plan/actual)::

    R=results/baselines; S="--suite $R/default-B-cpu/default.toml --replicate B --jobs 2 --against $R/default-B-cpu"
    adaptbench plan $S --results $R/default-A-cpu                   # A's records: lookups of the same cells
    adaptbench plan $S --results $R/default-A-cpu --model fitted    # A's records, the fitted model only
    adaptbench plan $S --results $R/proxy-cpu --results $R/anchors-cpu  # no default-suite record at all
    adaptbench plan $S --model flops                                # no record: FLOPs at assumed utilisation
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import Record
from bench.core.store import RESULTS_ROOT, Store
from bench.run import plan as plan_model
from bench.run.grid import check_filter
from bench.run.plan import (
    GPU_MFU,
    GPU_OVERHEAD_S,
    GPU_STEP_FLOOR_S,
    GPUS,
    CostModel,
    Estimate,
    MiB,
    Plan,
    load_records,
    make_plan,
    makespan,
    quantile,
    total,
    within_minutes,
)
from bench.suite import Suite, load_suite

JOBS_NOTE = (
    "with --jobs N: the grid's order on N slots (each cell to the slot that frees first), sweeps, cells and each "
    "later look one after another; it assumes N cells at once run as fast as the records' cells did (the default "
    "suite's ran 2 at once on 2 cores, 1 thread each)"
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", required=True, help="a name from `adaptbench ls` or a path to a .toml file")
    p.add_argument(
        "--results",
        action="append",
        metavar="DIR",
        help="records to learn from (repeatable; searched recursively; default: results/, baselines included)",
    )
    p.add_argument("--replicate", default=None, help="which of the suite's [replicates] (default: the first)")
    p.add_argument("--filter", default=None, help="glob or substring over task/method/budget/seed")
    p.add_argument("--jobs", type=int, default=1, help="cells at once, as `grid --jobs` (default 1)")
    p.add_argument("--gpu", choices=sorted(GPUS), default=None, help="also estimate on this GPU (FLOPs-based)")
    p.add_argument(
        "--gpu-mfu", type=float, default=GPU_MFU, help=f"assumed share of the GPU's peak (default {GPU_MFU})"
    )
    p.add_argument("--per-cell", action="store_true", help="one row per cell (default: seeds grouped)")
    p.add_argument(
        "--model",
        choices=["auto", "fitted", "flops"],
        default="auto",
        help="auto: a cell's own records when given, else the fitted model, else FLOPs; fitted: never a cell's own "
        "records; flops: no records at all (FLOPs at an assumed utilisation)",
    )
    p.add_argument(
        "--against",
        default=None,
        metavar="DIR",
        help="records of a run of this suite (e.g. results/baselines/default-B-cpu): plan vs actual, per cell and in "
        "total; its records are never learnt from, and its machine (peak probe, env.machine) is the target",
    )
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    p.set_defaults(data_root=None)


# ------------------------------------------------------------------------------------------------- helpers
def duration(seconds: float) -> str:
    if seconds is None or math.isnan(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.1f} min"
    return f"{int(minutes // 60)} h {minutes % 60:02.0f} min"


def _mib(value: float | None) -> str:
    return "?" if value is None else f"{value / MiB:,.0f}"


def _seeds(cells: list[Cell]) -> str:
    seeds = sorted(c.seed for c in cells)
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def _phase_name(phase: int) -> str:
    return {0: "sweep", 1: "cell"}.get(phase, f"look {phase}")


def _target(against: list[Record]) -> tuple[Callable[[int], float], Callable[[int], str | None], str]:
    """The machine the ``against`` records ran on, as a plan made there would have seen it before running: the peak
    its probe measured (the records' ``machine_peak_flops_per_s``, per thread count) and its ``env.machine``."""
    peaks: dict[int, list[float]] = {}
    machines: dict[int, Counter] = {}
    for r in against:
        threads = int((r.hparams or {}).get("train", {}).get("threads", 2))
        if r.cost is not None and r.cost.machine_peak_flops_per_s:
            peaks.setdefault(threads, []).append(r.cost.machine_peak_flops_per_s)
        if r.env is not None and r.env.machine:
            machines.setdefault(threads, Counter())[r.env.machine] += 1

    def peak(threads: int) -> float:
        values = peaks.get(threads)
        return statistics.median(values) if values else plan_model.measured_peak(threads)

    def machine(threads: int) -> str | None:
        found = machines.get(threads)
        return found.most_common(1)[0][0] if found else None

    said = ", ".join(f"{statistics.median(v) / 1e9:.0f} GFLOP/s at {t} thread(s)" for t, v in sorted(peaks.items()))
    return peak, machine, said or "no peak recorded: this machine's"


# ---------------------------------------------------------------------------------------------- the command
def run_plan(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite, replicate=args.replicate)
    check_filter(suite, args.filter)
    if args.jobs < 1:
        raise ValueError("--jobs must be 1 or more")
    folders = [Path(f) for f in (args.results or [RESULTS_ROOT])]
    against = against_records = None
    if args.against:
        against = Path(args.against)
        against_records = [r for r in load_records([against]) if r.ok and r.cost and r.cost.wall_time_s]
        if not against_records:
            raise ValueError(f"no ok records with a wall time under {against}")
    records = [] if args.model == "flops" else load_records(folders)
    if against is not None:  # never learn from the run the plan is held against
        inside = {p.resolve() for p in against.rglob("*.json")} if against.is_dir() else {against.resolve()}
        records = [r for r in records if r.source is None or Path(r.source).resolve() not in inside]
    peak, machine, target = (None, None, "") if against is None else _target(against_records)
    model = CostModel(records, peak=peak, lookup=args.model == "auto", gpu=args.gpu, gpu_mfu=args.gpu_mfu,
                      machine=machine)  # fmt: skip
    plan = make_plan(suite, model, args.filter)
    where = ", ".join(str(f) for f in folders) if args.model != "flops" else "none (--model flops)"
    rep = f" (replicate {suite.replicate})" if suite.replicate else ""
    print(f"suite {suite.name}{rep}: learning from {len(model.obs)} ok records under {where}")
    if against is None:
        threads = sorted({_threads(e) for e in plan.estimates})
        peaks = ", ".join(f"{model.peak(t) / 1e9:.0f} GFLOP/s at {t} thread(s)" for t in threads)
        print(f"this machine: measured fp32 GEMM peak {peaks} (bench.run.machine)")
    else:
        print(f"target machine: the one that ran {against} (its peak probe: {target})")
    if model.steps_ratio:
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in sorted(model.steps_ratio.items()))
        print(f"optimizer steps: expected by the tuner's plan x the records' actual/expected ratio ({ratios})")
    print()
    _table(plan, args)
    print()
    _totals(plan, args.jobs, args.gpu, args.gpu_mfu)
    if against_records is not None:
        print()
        _compare(plan, against_records, args.jobs, against, args.per_cell)
    return 0


def _threads(e: Estimate) -> int:
    return int(resolve(e.cell).train.threads)


def _table(plan: Plan, args: argparse.Namespace) -> None:
    gpu = args.gpu is not None
    head = f"  {'phase':7s} {'task':30s} {'method':9s} {'budget':>6s} {'seeds':11s} {'s/cell':>7s} {'basis':11s}"
    head += f" {'peak MiB':>9s}" + (f" {args.gpu + ' s':>9s} {'GPU MiB':>8s}" if gpu else "")
    print(head)
    rows: dict[tuple, list[Estimate]] = {}
    for e in plan.estimates:
        key = (e.phase, e.cell.task, e.cell.method, e.cell.budget, e.basis)
        rows.setdefault((*key, e.key) if args.per_cell else key, []).append(e)
    for (phase, task, method, budget, basis, *_), group in rows.items():
        secs = statistics.mean(e.seconds for e in group) if basis not in ("unknown",) else math.nan
        mem = max((e.peak_mem_bytes for e in group if e.peak_mem_bytes), default=None)
        seeds = _seeds([e.cell for e in group])
        line = f"  {_phase_name(phase):7s} {task:30s} {method:9s} {budget or 'all':>6} {seeds:11s}"
        line += f" {secs:7.0f} {basis:11s} {_mib(mem):>9s}"
        if gpu:
            g = [e.gpu_seconds for e in group if e.gpu_seconds is not None]
            gm = max((e.gpu_mem_bytes for e in group if e.gpu_mem_bytes), default=None)
            line += f" {statistics.mean(g) if g else math.nan:9.0f} {_mib(gm):>8s}"
        print(line)
        if args.per_cell and group[0].note:
            print(f"      {group[0].note}")


def _totals(plan: Plan, jobs: int, gpu: str | None, gpu_mfu: float) -> None:
    first = plan.phase(first_look_only=True)
    every = plan.estimates
    runs = [e for e in every if e.basis != "unsupported"]
    print("totals on this machine (serial = the sum of the cells' estimates):")
    for label, cells in (("first look", first), ("every look", every)):
        if label == "every look" and len(cells) == len(first):
            continue
        print(
            f"  {label + ':':12s} {len(cells):4d} cells, serial {duration(total(cells)):>12s}, "
            f"with --jobs {jobs}: {duration(makespan(cells, jobs)):>12s}"
        )
    if plan.suite.adaptive is not None and len(every) != len(first):
        capped = within_minutes(every, jobs, plan.suite.adaptive.minutes)
        print(
            f"  {'at most:':12s} {len(capped):4d} cells, serial {duration(total(capped)):>12s}, with --jobs {jobs}: "
            f"{duration(makespan(capped, jobs)):>12s} (every look the suite's {plan.suite.adaptive.minutes:g} minutes "
            "let the grid start, by its own rule)"
        )
    bases = Counter(e.basis for e in every)
    print("  basis: " + ", ".join(f"{n} {b}" for b, n in bases.most_common()))
    unknown = [e for e in every if e.basis == "unknown"]
    if unknown:
        print(f"  {len(unknown)} cells have no estimate (left out of the totals): {unknown[0].note}")
    biggest = max((e for e in runs if e.peak_mem_bytes), key=lambda e: e.peak_mem_bytes, default=None)
    if biggest is not None:
        top = sorted((e.peak_mem_bytes for e in runs if e.peak_mem_bytes), reverse=True)[:jobs]
        print(
            f"  peak memory: largest cell {_mib(biggest.peak_mem_bytes)} MiB ({biggest.cell.task} x "
            f"{biggest.cell.method} @ {biggest.cell.budget}, {biggest.mem_basis}); with --jobs {jobs} at most "
            f"{_mib(sum(top))} MiB at once"
        )
    print(f"  ({JOBS_NOTE})")
    for note in plan.notes:
        print(f"  note: {note}")
    if gpu:
        g = GPUS[gpu]
        print(
            f"on {g.name} (FLOPs-based, never measured here: FLOPs / ({gpu_mfu:.0%} of its dense peak, "
            f"{g.bf16 / 1e12:.0f} TFLOP/s bf16 or {g.tf32 / 1e12:.0f} TF32 for fp32 cells) + "
            f"{GPU_STEP_FLOOR_S * 1e3:g} ms per optimizer step + {GPU_OVERHEAD_S:g} s per cell; {g.source}):"
        )
        for label, cells in (("first look", first), ("every look", every)):
            print(
                f"  {label + ':':12s} serial {duration(total(cells, gpu=True)):>12s}, with --jobs {jobs}: "
                f"{duration(makespan(cells, jobs, gpu=True)):>12s}"
            )
        mem = max((e.gpu_mem_bytes for e in runs if e.gpu_mem_bytes), default=None)
        if mem is not None:
            fits = "fits" if mem <= g.memory_bytes else "does NOT fit"
            print(
                f"  GPU memory: largest cell ~{_mib(mem)} MiB (what the CPU records' cells allocated themselves + "
                f"{512} MiB CUDA context), {fits} in {g.memory_bytes / 1e9:.0f} GB"
            )


# -------------------------------------------------------------------------------------------- plan vs actual
def _elapsed(records: list[Record]) -> float | None:
    """Seconds from the first record's start (its created_at less its wall time) to the last one's end."""
    spans = []
    for r in records:
        try:
            end = datetime.fromisoformat(r.created_at.replace("Z", "+00:00")).timestamp()
        except (ValueError, AttributeError):
            return None
        spans.append((end - r.cost.wall_time_s, end))
    return max(e for _, e in spans) - min(s for s, _ in spans) if spans else None


def _ratios_line(label: str, pairs: list[tuple[Estimate, Record]]) -> str:
    ratios = [e.seconds / r.cost.wall_time_s for e, r in pairs if e.seconds == e.seconds]
    if not ratios:
        return f"  {label}: no cell"
    planned = sum(e.seconds for e, _ in pairs if e.seconds == e.seconds)
    actual = sum(r.cost.wall_time_s for e, r in pairs if e.seconds == e.seconds)
    within = sum(1 / 1.5 <= x <= 1.5 for x in ratios)
    return (
        f"  {label}: {len(ratios)} cells, total plan {duration(planned)} vs actual {duration(actual)} "
        f"(ratio {planned / actual:.2f}); per cell plan/actual median {quantile(ratios, 0.5):.2f}, "
        f"10th pct {quantile(ratios, 0.1):.2f}, 90th pct {quantile(ratios, 0.9):.2f}; within 1.5x: {within}"
    )


def _compare(plan: Plan, actual: list[Record], jobs: int, where: Path, per_cell: bool) -> None:
    by_key = {e.key: e for e in plan.estimates}
    pairs = [(by_key[r.key], r) for r in actual if r.key in by_key]
    unmatched = [r for r in actual if r.key not in by_key]
    print(f"plan vs actual ({where}): {len(pairs)} of its {len(actual)} ok records are cells of this plan")
    if unmatched:
        print(f"  not in the plan (another definition or replicate?): {len(unmatched)}, e.g. {unmatched[0].key}")
    if not pairs:
        return
    first = [(e, r) for e, r in pairs if e.phase <= 1]
    print(_ratios_line("cells that ran", pairs))
    if len(first) != len(pairs):
        print(_ratios_line("first look   ", first))
    for basis in sorted({e.basis for e, _ in pairs}):
        print(_ratios_line(f"basis {basis:8s}", [(e, r) for e, r in pairs if e.basis == basis]))
    ran = [e for e, _ in pairs]
    elapsed = _elapsed([r for _, r in pairs])
    if elapsed:
        print(
            f"  with --jobs {jobs}: plan {duration(makespan(ran, jobs))} vs actual {duration(elapsed)} (first "
            f"record's start to last record's end, from created_at: includes any pause)"
        )
    mem = [(e.peak_mem_bytes / r.cost.peak_mem_bytes) for e, r in pairs if e.peak_mem_bytes and r.cost.peak_mem_bytes]
    if mem:
        print(
            f"  peak memory per cell, plan/actual: median {quantile(mem, 0.5):.2f}, 10th pct {quantile(mem, 0.1):.2f}, "
            f"90th pct {quantile(mem, 0.9):.2f} (each plan: the largest peak of the records it draws on)"
        )
    worst = sorted(pairs, key=lambda p: abs(math.log(max(p[0].seconds, 1e-9) / p[1].cost.wall_time_s)), reverse=True)
    shown = worst if per_cell else worst[:5]
    print("  per cell (largest misses first):" if not per_cell else "  per cell:")
    for e, r in shown:
        print(
            f"    {r.task}/{r.method}/{r.budget}/{r.seed}: plan {e.seconds:.0f} s ({e.basis}) vs actual "
            f"{r.cost.wall_time_s:.0f} s, ratio {e.seconds / r.cost.wall_time_s:.2f}"
        )


# ------------------------------------------------------------------------------------------------ dry run
class DryRunEstimates:
    """``grid --dry-run``'s estimates: ``note(cell)`` for each listed line, ``summary()`` for its header. Learns from
    results/ (baselines included) and the grid's own results folder; measures this machine's peak once."""

    def __init__(self, suite: Suite, store: Store, jobs: int | None = None) -> None:
        folders = [RESULTS_ROOT] + ([store.root] if Path(store.root).resolve() != RESULTS_ROOT.resolve() else [])
        self.model = CostModel(load_records(folders))
        self.suite, self.store, self.jobs = suite, store, jobs or 1
        self.seen: dict[str, tuple[Estimate, bool]] = {}

    def note(self, cell: Cell) -> str:
        e = self.model.estimate(cell)
        done = self.store.has_ok(self.suite.name, e.key)
        self.seen.setdefault(e.key, (e, done))
        if e.basis == "unsupported":
            return "  [unsupported: recorded at once]"
        if e.basis == "unknown":
            return "  [no estimate]"
        return f"  [~{duration(e.seconds)}, {e.basis}, {_mib(e.peak_mem_bytes)} MiB]"

    def summary(self) -> str:
        todo = [e for e, done in self.seen.values() if not done]
        text = (
            f"estimate for the {len(todo)} cells to run: {duration(total(todo))} serial, "
            f"{duration(makespan(todo, self.jobs))} with --jobs {self.jobs} on this machine"
        )
        if self.suite.adaptive is not None:
            later = [e for e in make_plan(self.suite, self.model).estimates if e.phase >= 2]
            text += f" (+{duration(total(later))} serial if every later look runs)"
        rep = f" --replicate {self.suite.replicate}" if self.suite.replicate else ""
        return text + f"; `adaptbench plan --suite {self.suite.name}{rep}` explains it"


def dry_run_estimates(suite: Suite, store: Store, jobs: int | None = None) -> DryRunEstimates:
    return DryRunEstimates(suite, store, jobs)
