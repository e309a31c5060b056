"""Plain text: ``adaptbench summary`` (the decision map, the sweeps and the per-task tables of a suite's records) and
one record as ``adaptbench run`` prints it (``format_record``).

The summary renders what the report renders: the decision map of ``bench.analysis.decision_map`` and the rows of
``bench.analysis.tables`` (flags explained by ``bench.analysis.flags``), so the two cannot disagree. A mean with one
seed is printed with "(one seed)", never as a bare number; a ranking is printed only when the seed rule allows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench import catalog
from bench.analysis import baselines as bl
from bench.analysis import cells as cl
from bench.analysis.decision_map import FAMILY, Decision, decisions
from bench.analysis.flags import legend
from bench.analysis.overview import budget_text, method_rank
from bench.analysis.pairing import CachedPredictions
from bench.analysis.rules import FAMILY as RULES_FAMILY
from bench.analysis.rules import RuleResult, evaluate
from bench.analysis.stats import MIN_SEEDS, NOT_ENOUGH_SEEDS, seed_exceptions
from bench.analysis.sweeps import sweep_rows, tuning_rows
from bench.analysis.tables import Row, tables
from bench.core.record import TEST, Record, metric_key
from bench.core.store import Store

SUMMARY_FLAGS = (
    "did-not-learn",
    "degenerate",
    "few-seeds",
    "negative-transfer",
    "still-improving k/n",
    "grid-edge k/n",
)


def rule_text() -> str:
    exceptions = ", ".join(seed_exceptions())
    return (
        "The choice is the best mean validation score; the test set then compares it with every other method by a "
        "seed-aware t-test (seeds and test items both counted: bench.analysis.contrast), at least "
        f"{MIN_SEEDS} seeds per method ({exceptions}); {FAMILY}. Each comparison ends worse, equivalent (two "
        "one-sided tests within the metric's margin), better (test reverses the choice) or undecided (with the "
        "seeds a decision would take)."
    )


def _undecided(d: Decision) -> str:
    parts = []
    for m in d.undecided:
        more = d.diffs[m].more_seeds()
        parts.append(f"{m} ({'more test items' if more is None else f'~{more} more seeds'})")
    return ", ".join(parts)


def decision_text(d: Decision) -> str:
    """One decision in words: the choice, then the test set's verdict on each other method."""
    if d.best is None:
        return d.note
    text = f"{d.best} (chosen on validation, {d.validation[d.best]:.3f})"
    for label, methods in (
        ("better on test", ", ".join(d.better)),
        ("equivalent", ", ".join(d.equivalent)),
        ("worse", ", ".join(d.worse)),
        ("undecided", _undecided(d)),
    ):
        if methods:
            text += f"; {label}: {methods}"
    return text + (f"; {d.note}" if d.note else "")


def decision_lines(decisions: Sequence[Decision]) -> list[str]:
    lines = [f"  {'task':32s} {'budget':>6s}  decision"]
    for d in decisions:
        lines.append(f"  {d.task:32s} {budget_text(d.budget):>6s}  {decision_text(d)}")
        left_out = sorted(d.excluded, key=method_rank)
        if left_out and all(d.excluded[m].startswith(NOT_ENOUGH_SEEDS) for m in left_out) and d.best is None:
            why = "seeds: " + ", ".join(f"{m} {d.seeds.get(m, 0)}" for m in left_out)
        else:
            why = "left out: " + "; ".join(f"{m}: {d.excluded[m]}" for m in left_out)
        if left_out:
            lines.append(f"  {'':32s} {'':6s}    ({why})")
    return lines


def rule_lines(rules: Sequence[RuleResult]) -> list[str]:
    lines = [f"  {'task':20s} {'budget':>6s}  {'verdict':12s} rule: estimate"]
    for r in rules:
        lines.append(f"  {r.task:20s} {budget_text(r.budget):>6s}  {r.verdict:12s} {r.claim}: {r.estimate}")
    return lines


def task_lines(task: str, rows: Sequence[Row], base: bl.Baselines | None) -> list[str]:
    """The table of one task: mean [interval] per method and budget, seeds, gain over scratch, flags."""
    spec = catalog.spec(task)
    primary = metric_key(TEST, spec.primary_metric)
    head = f"{task}: {primary} ({spec.direction})"
    if base is not None:
        majority = "n/a (regression)" if math.isnan(base.majority) else f"{base.majority:.3f}"
        head += f"; majority {majority}, chance {base.chance:.3f} on {base.n_items} test items"
    else:
        head += "; baselines unknown (no stored predictions and the data could not be read)"
    columns = f"{'method':12s} {'budget':>6s}  {primary + ' [95% interval]':34s} {'seeds':>5s}  "
    lines = [head, f"  {columns}{'gain over scratch [95%]':30s} flags"]
    curves: dict[str, dict[int, dict[int, float]]] = {}
    by_budget: dict[int, dict[str, cl.MethodCell]] = {}
    for row in sorted(rows, key=lambda r: (r.budget, method_rank(r.method))):
        c = row.cell
        by_budget.setdefault(row.budget, {})[row.method] = c
        gain = ""
        if row.gain is not None:
            gain = row.gain.describe() + (" (not enough seeds)" if row.gain.outcome == NOT_ENOUGH_SEEDS else "")
        lines.append(
            f"  {row.method:12s} {budget_text(row.budget):>6s}  {c.primary.describe():34s} {c.primary.n:>5d}  "
            f"{gain:30s} {', '.join(row.flags)}".rstrip()
        )
        for r in c.records:
            eff = cl.effective_budget(r)
            if eff is not None:
                curves.setdefault(row.method, {}).setdefault(r.seed, {})[eff] = r.test_metric(spec.primary_metric)
    areas = {m: cl.sample_efficiency_auc(cv) for m, cv in curves.items()}
    areas = {m: a for m, a in areas.items() if a.n > 0}
    if areas:
        lines.append(
            "  sample-efficiency area (mean height over log budget): "
            + "; ".join(f"{m} {areas[m].describe()}" for m in sorted(areas, key=method_rank))
        )
    for budget in sorted(by_budget):
        fronts = cl.pareto_fronts(by_budget[budget], spec.higher_is_better)
        parts = [f"vs {axis}: {', '.join(sorted(ms, key=method_rank)) or '–'}" for axis, ms in fronts.items()]
        lines.append(
            f"  Pareto front at budget {budget_text(budget)} ({spec.primary_metric} vs cost): " + "; ".join(parts)
        )
    return lines


def look_lines(records: Sequence[Record]) -> list[str]:
    """One line per (task, method, budget) that a later look of an adaptive suite grew: its seeds and why."""
    grown: dict[tuple[str, str, int], list[Record]] = {}
    for r in records:
        if r.allocation and r.allocation.get("look", 1) > 1:
            grown.setdefault((r.task, r.method, r.budget), []).append(r)
    out = []
    for (task, method, budget), rs in sorted(grown.items()):
        seeds = ",".join(str(r.seed) for r in sorted(rs, key=lambda r: r.seed))
        why = rs[0].allocation.get("why", "")
        out.append(f"  {task} x {method} @ {budget}: seeds {seeds} (look {rs[0].allocation['look']}); {why}")
    return out


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
    known = [r for r in ok if catalog.known(r.task)]
    unknown = sorted({r.task for r in ok} - {r.task for r in known})
    cells = cl.method_cells(known)
    cap = f", methods over {memory_cap_bytes / 2**30:g} GiB peak memory left out" if memory_cap_bytes else ""
    lines = [
        f"suite {suite}: {len(ok)} ok records of {len({r.task for r in ok})} tasks ({len(records) - len(ok)} not ok)"
        f"{cap}",
        rule_text(),
    ]
    if unknown:
        lines.append(f"tasks not in the registry (left out): {', '.join(unknown)}")
    found = decisions(store, cells, catalog.spec, memory_cap_bytes)
    lines += ["", "Decision map (chosen on validation, then the test set's verdict on every other method):"]
    lines += decision_lines(found)
    sweeps = sweep_rows(known)
    if sweeps:
        lines += ["", "Hyperparameter sweeps (chosen on validation at one budget, reused for every budget and seed):"]
        lines += [f"  {row.describe()}" for row in sweeps]
    added = look_lines(known)
    if added:
        lines += ["", "Adaptive seeds (added where a comparison was still open; tests Bonferroni over the looks):"]
        lines += added
    tuned = tuning_rows(known)
    if tuned:
        lines += ["", "Nested tuning (each seed chose on its own validation data; values per seed):"]
        lines += [f"  {row.describe()}" for row in tuned]
    rows = tables(store, known, labels_from_data, registered_only=True)
    chance = {t: r[0].base.chance for t, r in rows.items() if r and r[0].base is not None}
    rules = evaluate(store, cells, found, catalog.spec, chance)
    if rules:
        lines += ["", f"Rules of thumb (DOMAIN.md) as estimands; {RULES_FAMILY}:"]
        lines += rule_lines(rules)
    for task in sorted(rows):
        lines += ["", *task_lines(task, rows[task], rows[task][0].base)]
    lines += ["", f"flags: {legend(SUMMARY_FLAGS)}."]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ records
STATUS_HELP = {
    "killed": "the cell's process was ended by a signal",
    "oom": "out of memory (an allocation failed), after one retry with half the micro-batch",
    "diverged": "the training loss became NaN or infinite",
    "timeout": "the cell ran past the suite's timeout_s",
}


def format_record(r: Record) -> str:
    lines = [
        f"{r.task} x {r.method} @ budget {r.budget or 'all'}, seed {r.seed}: {r.status.upper()}",
        f"  key      {r.key}  (suite {r.suite}, backbone {r.backbone})",
    ]
    if r.retry:
        lines.append(
            f"  retry    after {r.retry.reason}: micro-batch {r.retry.micro_batch} x {r.retry.grad_accum} "
            "accumulation (same effective batch)"
        )
    if not r.ok:
        if r.status in STATUS_HELP:
            lines.append(f"  status   {r.status}: {STATUS_HELP[r.status]}")
        lines.append("  error    " + (r.error or "").strip().replace("\n", "\n           ")[-1500:])
        return "\n".join(lines)
    for flag in r.flags:
        lines.append(f"  FLAG     {flag}: {r.flag_notes.get(flag, '')}")
    c, p, f = r.cost, r.params, r.forgetting
    lines.append("  metrics  " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(r.metrics.items())))
    lines.append(
        f"  params   trainable {p.trainable:,} of {p.total:,} ({100 * p.trainable_share:.2f}%), without head "
        f"{p.trainable_no_head:,}, saved {p.adapter_bytes / 2**20:.2f} MiB"
    )
    if f.after is not None:
        lines.append(f"  forget   {f.probe}: {f.before:.4f} -> {f.after:.4f} (drop {f.drop:+.4f})")
    else:
        lines.append(f"  forget   {f.probe}: {f.note or 'n/a'}")
    for extra in r.forgetting_extra.values():
        if extra.after is not None:
            lines.append(f"           {extra.probe}: {extra.before:.4f} -> {extra.after:.4f} (drop {extra.drop:+.4f})")
    rate = c.train_samples_per_s
    lines.append(
        f"  cost     {c.device} peak mem {c.peak_mem_bytes / 2**20:.0f} MiB "
        f"(+{c.peak_mem_delta_bytes / 2**20:.0f} MiB in cell), train "
        f"{'n/a' if rate is None else f'{rate:.1f}'} ex/s, eval {c.eval_samples_per_s:.1f} ex/s"
    )
    lines.append(
        f"  time     train {c.train_time_s:.1f} s ({c.steps} steps, {c.epochs:.1f} epochs), "
        f"cell {c.wall_time_s:.1f} s; threads {r.env.threads}"
    )
    if c.feature_cache is not None:
        rate = f"{c.feature_samples_per_s:.1f} ex/s" if c.feature_samples_per_s else "all cached"
        head = f", head {c.head_train_time_s:.1f} s" if c.head_train_time_s is not None else ""
        lines.append(
            f"  features backbone pass {c.feature_time_s or 0.0:.1f} s ({rate}){head}; cache "
            f"{c.feature_cache['hits']} hits, {c.feature_cache['computed']} computed"
        )
    if c.fwd_flops_per_example:
        lines.append(f"  flops    {c.fwd_flops_per_example / 1e9:.3f} GFLOPs per example (forward)")
    sel = r.selection
    how = [f"validation {sel.validation}"] if sel.validation else []
    if sel.stopped_by:
        how.append(f"stopped by {sel.stopped_by} at step {sel.stopped_at}")
    if sel.refit:
        how.append(f"refit on {sel.refit['train']} examples for {sel.refit['steps']} steps")
    if r.tuned_from and "selected" in r.tuned_from:
        chosen = ", ".join(f"{k}={v}" for k, v in r.tuned_from["selected"].items())
        how.append(f"{chosen} chosen by the sweep of {r.tuned_from['sweep']}")
    detail = f" ({'; '.join(how)})" if how else ""
    lines.append(f"  select   best {sel.on} at step {sel.best_step} of {c.steps}{detail}")
    return "\n".join(lines)
