"""The report's numbers, computed once from the records (``ReportData``, ``build_report``): the overview, the decision
map, the per-task tables (``bench.analysis.tables``), the table at a glance, the sweeps and the figures. The page's
sections and summary.md (``bench.report.sections``) only render them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bench import catalog
from bench.analysis.cells import method_cells
from bench.analysis.decision_map import Decision, decisions
from bench.analysis.hardware import HardwareReport, hardware_report
from bench.analysis.overview import Overview, build_overview, task_rank
from bench.analysis.pairing import CachedPredictions
from bench.analysis.profile import Profile, RankView, performance_profile, profile_rows, rank_view
from bench.analysis.references import Comparison, Reference, compare, load_references
from bench.analysis.rules import RuleResult, evaluate
from bench.analysis.sweeps import SweepRow, TuningRow, sweep_rows, tuning_rows
from bench.analysis.tables import Row, tables
from bench.core.record import Record
from bench.core.store import Store
from bench.report.heatmap import Heatmap, build_heatmap
from bench.report.plots import Plot, cross_task_figures

METHODOLOGY = (
    "Test metrics are from the checkpoint selected on validation (test is evaluated once per cell). Every interval is "
    "95%, of one of three kinds. A method's score (leaderboards, the table at a glance, summary.md): the mean over "
    "seeds, with an interval that counts both sources of noise, the seeds and the sampling of the test items (every "
    "seed is scored on the same test items, so the item error they share never shows in the seeds' spread; a method "
    "whose seeds all agree still has it); with one seed it counts the test items only (marked 'one seed', \u2020 in "
    "the table at a glance), so a seeded method's seed-to-seed spread is missing from it; a cell without stored "
    "predictions (\u2021) has the t-interval over seeds. The decision map: the difference between two methods, paired "
    "by test item (and by seed where both ran it), its p-value Holm-adjusted over the map's comparisons of every task "
    "and budget. Gain over scratch: the same paired test of a method minus scratch, Holm-adjusted in its own family "
    "(every gain on the page). Two methods' score intervals can overlap while their paired difference is significant: "
    "both are scored on the same test items, and the item noise they share widens each score's interval but cancels "
    "in their difference. Forgetting drops: t-intervals over seeds. Forgetting drop = probe on the untouched "
    "pretrained backbone minus probe on the adapted backbone (positive = forgot). Peak memory: process peak RSS on "
    "the CPU, CUDA max allocated on a GPU. Throughput excludes warm-up steps; for cached-feature methods it includes "
    "the one backbone pass."
)


@dataclass
class ReportData:
    """Everything the page and summary.md show, computed once from the records."""

    suite: str
    records: list[Record]
    notes: list[str]
    warnings: list[str]
    overview: Overview
    tables: dict[str, list[Row]]  # every task with ok records -> its rows (bench.analysis.tables), in task order
    decisions: list[Decision]  # empty without a store (no stored predictions to pair)
    heatmap: Heatmap
    rules: list[RuleResult]  # the rules of thumb as estimands (empty without a store)
    store: Store | None = None  # where the records came from (the figures read stored predictions)

    @property
    def ok(self) -> list[Record]:
        return [r for r in self.records if r.ok]

    @property
    def not_ok(self) -> list[Record]:
        return [r for r in self.records if not r.ok]

    @cached_property
    def sweeps(self) -> list[SweepRow]:
        return sweep_rows(self.ok)

    @cached_property
    def tuning(self) -> list[TuningRow]:
        return tuning_rows(self.ok)

    @cached_property
    def cross_figures(self) -> list[Plot]:
        return cross_task_figures(self.ok, self.store)

    @cached_property
    def hardware(self) -> HardwareReport:
        """Costs per machine, task, method and budget, and the cheapest method per question (analysis.hardware)."""
        return hardware_report(self.ok)

    @cached_property
    def published(self) -> list[Reference]:
        """The published references (``bench/published/*.toml``)."""
        return load_references()

    @cached_property
    def references(self) -> list[Comparison]:
        """The whole-training-set cells against the published references (``adaptbench references``' comparisons)."""
        return compare(self.ok, self.published)

    @cached_property
    def profile(self) -> Profile:
        """Every method's gap to each (task, budget) row's best (``bench.analysis.profile``)."""
        return performance_profile(profile_rows(self.ok))

    @cached_property
    def rank_view(self) -> RankView | None:
        """Mean ranks over the rows every compared method ran in, with their bootstrap interval."""
        return rank_view(self.profile.rows)


def build_report(
    suite: str,
    records: list[Record],
    notes: list[str] | None = None,
    source: str | Path | None = None,
    warnings: list[str] | None = None,
    store: Store | None = None,
    labels_from_data: bool = True,
    n_read: int | None = None,
) -> ReportData:
    """The report's numbers. With the ``store`` the records came from, the decision map (paired tests need the
    per-example predictions stored beside the records); ``labels_from_data``: read test labels from the data
    root for the did-not-learn baseline when no predictions are stored; ``n_read``: the records the folder held,
    when ``records`` are fewer (the suite's current cells)."""
    cached = CachedPredictions(store or Store())
    known = [r for r in records if r.ok and catalog.known(r.task)]
    cells = method_cells(known)
    order = sorted(cells, key=lambda tb: (task_rank(tb[0]), tb[1] == 0, tb[1]))
    found = decisions(cached, cells, catalog.spec, order=order) if store else []
    warnings = list(warnings or [])
    rows = tables(cached, records, labels_from_data)
    chance = {t: r[0].base.chance for t, r in rows.items() if r and r[0].base is not None}
    rules = evaluate(cached, cells, found, catalog.spec, chance) if store else []
    return ReportData(
        suite=suite,
        records=records,
        notes=list(notes or []),
        warnings=warnings,
        overview=build_overview(suite, records, source, unreadable=len(warnings), n_read=n_read),
        tables=rows,
        decisions=found,
        heatmap=build_heatmap(cells, catalog.spec, {(d.task, d.budget): d for d in found}, rows),
        rules=rules,
        store=store,
    )
