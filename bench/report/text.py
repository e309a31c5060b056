"""``adaptbench summary``: the decision map and per-task tables as plain text, from a suite's records.

Numbers come from ``bench.analysis.derived`` and ``bench.analysis.stats`` only, so the summary and the HTML report
agree. A mean with one seed is printed with "(one seed)", never as a bare number; a ranking is printed only when the
seed rule allows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.analysis import derived
from bench.analysis.decision_map import Decision, decision
from bench.analysis.overview import METHOD_ORDER
from bench.analysis.stats import MIN_SEEDS, MIN_SEEDS_FOR, NOT_ENOUGH_SEEDS, SEEDLESS, CachedPredictions, enough_seeds
from bench.analysis.sweeps import sweep_rows

if TYPE_CHECKING:
    import numpy as np

    from bench.core.api import TaskSpec
    from bench.core.record import Record
    from bench.core.store import Store


def _rank(name: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER), name)


def _budget(b: int) -> str:
    return "all" if b == 0 else str(b)


def rule_text() -> str:
    exceptions = ", ".join([*(f"{n} for {m}" for m, n in MIN_SEEDS_FOR.items()), *(f"1 for {m}" for m in SEEDLESS)])
    return (
        f'"A beats B" needs a paired 95% bootstrap interval of A - B that excludes 0 and at least {MIN_SEEDS} '
        f"seeds per method ({exceptions}); otherwise: not enough seeds. Test items are always paired; seeds are "
        "paired too, unless the seeds two methods share are too few and each has enough of its own (then 'N vs M "
        "seeds, unpaired')."
    )


def decision_lines(decisions: Sequence[Decision]) -> list[str]:
    lines = [f"  {'task':32s} {'budget':>6s}  decision"]
    for d in decisions:
        if d.best is None:
            text = f"{d.note}"
        else:
            text = d.best
            if d.not_worse:
                text += f"; not significantly worse: {', '.join(d.not_worse)}"
            if d.worse:
                text += f"; worse: {', '.join(d.worse)}"
            if d.note:
                text += f"; {d.note}"
        lines.append(f"  {d.task:32s} {_budget(d.budget):>6s}  {text}")
        left_out = sorted(d.excluded, key=_rank)
        if left_out and all(d.excluded[m].startswith(NOT_ENOUGH_SEEDS) for m in left_out) and d.best is None:
            why = "seeds: " + ", ".join(f"{m} {d.seeds.get(m, 0)}" for m in left_out)
        else:
            why = "left out: " + "; ".join(f"{m}: {d.excluded[m]}" for m in left_out)
        if left_out:
            lines.append(f"  {'':32s} {'':6s}    ({why})")
    return lines


def cell_flags(
    store: Store,
    cell: derived.MethodCell,
    spec: TaskSpec,
    base: derived.Baselines | None,
    scratch: derived.MethodCell | None,
) -> tuple[list[str], derived.Gain | None]:
    """The flags of one method at one budget (did-not-learn against ``base``, degenerate, few-seeds, still-improving,
    negative-transfer against ``scratch``) and its gain over scratch (None: no scratch, or it is scratch)."""
    flags = []
    if base is not None:
        noise = (
            derived.noise_vs_majority(store, cell.records[0], spec)
            if cell.primary.n == 1 and cell.has_predictions
            else None
        )
        if derived.did_not_learn(spec, base.reference, cell.primary, noise):
            flags.append("did-not-learn")
    if "degenerate" in cell.flags:
        flags.append("degenerate")
    if not enough_seeds(cell.method, cell.primary.n):
        flags.append("few-seeds")
    improving = sum(derived.still_improving(r) for r in cell.records)
    if improving:
        flags.append(f"still-improving {improving}/{len(cell.records)}")
    gain = None
    if scratch is not None and cell.method != derived.SCRATCH:
        gain = derived.gain_over_scratch(store, cell, scratch, spec)
        if gain.negative_transfer:
            flags.append("negative-transfer")
    return flags, gain


def task_lines(
    store: Store,
    task: str,
    cells_by_budget: dict[int, dict[str, derived.MethodCell]],
    spec: TaskSpec,
    labels: np.ndarray | None,
) -> list[str]:
    """The table of one task: mean [interval] per method and budget, seeds, gain over scratch, flags."""
    primary = f"test/{spec.primary_metric}"
    base = derived.baselines(spec, labels) if labels is not None else None
    head = f"{task}: {primary} ({'higher' if spec.higher_is_better else 'lower'} is better)"
    if base is not None:
        majority = "n/a (regression)" if math.isnan(base.majority) else f"{base.majority:.3f}"
        head += f"; majority {majority}, chance {base.chance:.3f} on {base.n_items} test items"
    else:
        head += "; baselines unknown (no stored predictions and the data could not be read)"
    columns = f"{'method':12s} {'budget':>6s}  {primary + ' [95% interval]':34s} {'seeds':>5s}  "
    lines = [head, f"  {columns}{'gain over scratch [95%]':30s} flags"]
    curves: dict[str, dict[int, dict[int, float]]] = {}
    for budget in sorted(cells_by_budget):
        cells = cells_by_budget[budget]
        scratch = cells.get(derived.SCRATCH)
        for method in sorted(cells, key=_rank):
            c = cells[method]
            flags, g = cell_flags(store, c, spec, base, scratch)
            gain = ""
            if g is not None:
                gain = g.describe() + (" (not enough seeds)" if g.verdict == NOT_ENOUGH_SEEDS else "")
            lines.append(
                f"  {method:12s} {_budget(budget):>6s}  {c.primary.describe():34s} {c.primary.n:>5d}  "
                f"{gain:30s} {', '.join(flags)}".rstrip()
            )
            for r in c.records:
                eff = derived.effective_budget(r)
                if eff is not None:
                    curves.setdefault(method, {}).setdefault(r.seed, {})[eff] = r.test_metric(spec.primary_metric)
    areas = {m: derived.sample_efficiency_auc(cv) for m, cv in curves.items()}
    areas = {m: a for m, a in areas.items() if a.n > 0}
    if areas:
        lines.append(
            "  sample-efficiency area (mean height over log budget): "
            + "; ".join(f"{m} {areas[m].describe()}" for m in sorted(areas, key=_rank))
        )
    for budget in sorted(cells_by_budget):
        fronts = derived.pareto_fronts(cells_by_budget[budget], spec.higher_is_better)
        parts = [f"vs {axis}: {', '.join(sorted(ms, key=_rank)) or '–'}" for axis, ms in fronts.items()]
        lines.append(f"  Pareto front at budget {_budget(budget)} ({spec.primary_metric} vs cost): " + "; ".join(parts))
    return lines


def summary_text(
    store: Store,
    suite: str,
    records: Sequence[Record],
    memory_cap_bytes: float | None = None,
    labels_from_data: bool = True,
) -> str:
    """The whole summary of one suite's records."""
    store = CachedPredictions(store)
    ok = [r for r in records if r.ok]
    registered = _tasks()
    known = [r for r in ok if r.task in registered]
    unknown = sorted({r.task for r in ok} - {r.task for r in known})
    cells = derived.method_cells(known)
    cap = f", methods over {memory_cap_bytes / 2**30:g} GiB peak memory left out" if memory_cap_bytes else ""
    lines = [
        f"suite {suite}: {len(ok)} ok records of {len({r.task for r in ok})} tasks ({len(records) - len(ok)} not ok)"
        f"{cap}",
        rule_text(),
    ]
    if unknown:
        lines.append(f"tasks not in the registry (left out): {', '.join(unknown)}")
    decisions = [decision(store, c, derived.registry_spec(task), memory_cap_bytes) for (task, _b), c in cells.items()]
    lines += ["", "Decision map (best by mean primary test metric, then a paired test against it):"]
    lines += decision_lines(decisions)
    sweeps = sweep_rows(known)
    if sweeps:
        lines += ["", "Hyperparameter sweeps (chosen on validation at one budget, reused for every budget and seed):"]
        lines += [f"  {row.describe()}" for row in sweeps]
    by_task: dict[str, dict[int, dict[str, derived.MethodCell]]] = {}
    for (task, budget), c in cells.items():
        by_task.setdefault(task, {})[budget] = c
    for task, cells_by_budget in by_task.items():
        spec = derived.registry_spec(task)
        task_records = [r for r in known if r.task == task]
        labels = derived.stored_test_labels(store, task_records)
        if labels is None and labels_from_data:
            labels = derived.data_test_labels(task_records[0])
        lines += ["", *task_lines(store, task, cells_by_budget, spec, labels)]
    lines += [
        "",
        "flags: did-not-learn = the interval reaches the majority-class baseline (one seed: the paired bootstrap "
        "against the majority predictor); degenerate = a seed predicted one class for every item; few-seeds = "
        "fewer seeds than a ranking needs; negative-transfer = significantly below scratch; still-improving k/n = "
        "in k of n seeds the best validation pass was the run's last (it ended by its step cap or schedule, not by "
        "patience): a longer run may score higher.",
    ]
    return "\n".join(lines)


def _tasks() -> set[str]:
    from bench.core.registry import TASKS, load_all

    load_all()
    return set(TASKS.names())
