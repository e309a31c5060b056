"""Across (task, budget) rows: the performance profile and the mean ranks over common rows (bench.analysis.profile),
and their section of the report (bench.report.profile_section).
Run: `.venv/bin/python -m pytest tests/test_profile.py -q`."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest

from bench.analysis.profile import ProfileRow, common_rows, performance_profile, profile_rows, rank_view
from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import new_record
from bench.report import profile_section as prof
from bench.report.sections import SECTIONS, rules_markdown


def _row(task: str, scores: dict[str, tuple[float, ...]], higher: bool = True, budget: int = 64) -> ProfileRow:
    return ProfileRow(task, budget, "accuracy", higher, scores)


# A and B ran in all four rows (A usually best); C ran in row 0 only and won it; D ran in two rows and tied the best
ROWS = [
    _row("t0", {"A": (0.80, 0.82), "B": (0.70, 0.72), "C": (0.95, 0.95), "D": (0.95, 0.95)}),
    _row("t1", {"A": (0.90, 0.90), "B": (0.85, 0.87)}),
    _row("t2", {"A": (0.60, 0.62), "B": (0.66, 0.66), "D": (0.66, 0.66)}),
    _row("t3", {"A": (0.75, 0.75), "B": (0.70, 0.70)}),
]


def test_a_method_that_ran_in_one_row_and_won_it_does_not_come_out_on_top():
    p = performance_profile(ROWS)
    assert p.share("C", 0.0) == 0.25 and p.share("C", 1.0) == 0.25, "best in its one row: 1 of 4, for every tau"
    assert p.methods[0] == "A" and p.methods.index("C") > p.methods.index("A")
    assert p.area("C") < p.area("A") and p.area("C") < p.area("B")
    view = rank_view(ROWS, n_boot=200)
    assert "C" not in view.methods and view.left_out["C"] == 1, "one row is not a ranking"
    assert view.methods[0] == "A"


def test_the_profile_at_zero_is_the_share_of_rows_a_method_is_best_in():
    p = performance_profile(ROWS)
    for m in p.methods:
        best_in = sum(m in r.seeds and math.isclose(r.mean(m), r.best) for r in ROWS)
        assert p.share(m, 0.0) == best_in / len(ROWS), m
    assert (p.share("A", 0), p.share("B", 0), p.share("D", 0)) == (0.5, 0.25, 0.5), "ties count for each"


def test_a_row_not_run_is_not_within_any_tau():
    p = performance_profile(ROWS)
    assert p.gaps["D"][1] == math.inf and p.gaps["D"][3] == math.inf
    assert p.share("D", 100.0) == 0.5, "D is best where it ran, and never within tau where it did not"
    assert p.share("A", p.tau_max) == 1.0 and p.share("B", p.tau_max) == 1.0
    assert p.ran("D") == 2 and p.ran("C") == 1
    xs, ys = p.steps("A")
    assert xs[0] == 0 and ys[0] == 0.5 and ys[-1] == 1.0 and xs[-1] == p.tau_max
    assert all(a <= b for a, b in itertools.pairwise(ys)), "a profile never falls"


def test_the_gap_reads_the_metric_direction():
    lower = _row("loss", {"A": (0.1,), "B": (0.3,)}, higher=False)
    assert lower.best == pytest.approx(0.1) and lower.gap("A") == 0 and lower.gap("B") == pytest.approx(0.2)
    higher = _row("acc", {"A": (0.1,), "B": (0.3,)})
    assert higher.gap("A") == pytest.approx(0.2) and higher.gap("B") == 0


def test_common_rows_compare_the_most_method_row_pairs():
    # two methods in six rows (12 pairs) against five methods in three rows (15 pairs): the five win
    two = [_row(f"a{i}", {"A": (0.5,), "B": (0.6,)}) for i in range(3)]
    five = [_row(f"b{i}", {m: (0.1 * j,) for j, m in enumerate("ABCDE")}) for i in range(3)]
    methods, used = common_rows(two + five)
    assert methods == ["A", "B", "C", "D", "E"] and used == [3, 4, 5]
    methods, used = common_rows([*two, *two, five[0]])  # 2 x 7 = 14 pairs against 5 x 1 (one row: not enough)
    assert methods == ["A", "B"] and len(used) == 7
    assert common_rows([_row("x", {"A": (0.5,), "B": (0.6,)})]) == ([], []), "one row: nothing to rank"
    assert rank_view([_row("x", {"A": (0.5,)}), _row("y", {"B": (0.5,)})]) is None


def test_mean_ranks_with_a_two_level_bootstrap_interval():
    view = rank_view(ROWS, n_boot=500, seed=1)
    assert view.methods == ("A", "B") and len(view.rows) == 4
    assert view.mean_rank == {"A": 1.25, "B": 1.75}, "A best in three rows of four"
    for m in view.methods:
        assert view.low[m] <= view.mean_rank[m] <= view.high[m] and view.low[m] >= 1 and view.high[m] <= 2
    assert view.high["A"] > view.low["A"], "the rows vary: the interval is not a point"
    assert rank_view(ROWS, n_boot=500, seed=1) == view, "seeded: the same report twice"
    # one method best by far in every row, each row's seeds tight: its rank is 1 in every replicate
    clear = [_row(f"t{i}", {"A": (0.9, 0.91, 0.9), "B": (0.5, 0.52, 0.51), "C": (0.3, 0.3, 0.31)}) for i in range(3)]
    v = rank_view(clear, n_boot=300)
    assert (v.low["A"], v.high["A"], v.mean_rank["C"]) == (1.0, 1.0, 3.0)
    # seeds that overlap within each row widen the interval even where the means rank the same way in every row
    noisy = [_row(f"t{i}", {"A": (0.6, 0.4, 0.62), "B": (0.5, 0.52, 0.51)}) for i in range(3)]
    v = rank_view(noisy, n_boot=300)
    assert v.mean_rank["B"] == 2.0 and v.low["B"] < 2.0, "the seed resampling is part of the interval"


def test_profile_rows_from_records_use_the_primary_metric_and_leave_unscored_seeds_out():
    records = []
    for method, budget, values in (("lora", 64, [0.9, 0.92]), ("full", 64, [0.85, math.nan]), ("lora", 256, [0.95])):
        for seed, v in enumerate(values):
            r = new_record(resolve(Cell("pneumonia-mnist", method, budget, seed, suite="s")), "ok")
            r.metrics = {"test/auroc": v, "test/accuracy": 0.5}
            records.append(r)
    failed = new_record(resolve(Cell("pneumonia-mnist", "frozen", 64, 0, suite="s")), "failed")
    rows = profile_rows([*records, failed])
    assert [(r.task, r.budget, r.metric) for r in rows] == [
        ("pneumonia-mnist", 64, "auroc"),
        ("pneumonia-mnist", 256, "auroc"),
    ]
    assert rows[0].seeds == {"lora": (0.9, 0.92), "full": (0.85,)} and rows[1].seeds == {"lora": (0.95,)}


# ------------------------------------------------------------------------------------------------ section
def _data(rows):
    p = performance_profile(rows)
    return SimpleNamespace(profile=p, rank_view=rank_view(rows, n_boot=200))


def test_the_section_follows_the_rules_and_shows_only_with_two_rows_and_two_methods():
    mine = [i for i, s in enumerate(SECTIONS) if s.markdown is prof.profile_markdown]
    rules = [i for i, s in enumerate(SECTIONS) if s.markdown is rules_markdown]
    assert len(mine) == 1 and mine[0] == rules[0] + 1
    assert SECTIONS[mine[0]].entries(_data(ROWS)) == [("across-rows", "Across (task, budget) rows")]
    assert SECTIONS[mine[0]].entries(_data(ROWS[:1])) == [], "one row: nothing across rows"
    assert not prof.shown(_data([_row("a", {"A": (0.5,)}), _row("b", {"A": (0.6,)})])), "one method"


def test_the_table_counts_rows_within_tau_and_marks_methods_not_ranked():
    lines = prof.profile_markdown(_data(ROWS))
    table = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in lines if line.startswith("| ")}
    header = table["method"]
    assert header[1:4] == ["rows run (of 4)", "best in", "within 0.01"]
    assert table["A"][1:4] == ["4", "2/4", "2/4"] and table["C"][1:3] == ["1", "1/4"]
    assert table["C"][-1].strip(" |") == "not ranked" and table["A"][-1].startswith("1.25 [")
    assert [k for k in table if k not in ("method", "---")] == list(performance_profile(ROWS).methods)
    text = "\n".join(lines)
    assert "not within τ for every τ" in text and "at most 1/4" in text and "two-level bootstrap" in text
    assert "C (1 of 4); D (2 of 4)" in text, "the methods not ranked, with the rows they ran in"


def test_the_figure_draws_every_profile_and_rank_legibly_in_both_layouts():
    p, v = performance_profile(ROWS), rank_view(ROWS, n_boot=200)
    for narrow, width in ((False, 1200), (True, 740)):
        fig = prof.profile_figure(p, v, narrow=narrow)
        assert round(fig.get_figwidth() * fig.dpi) == width and fig.dpi == 100
        lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines() if line.get_gid()}
        for m in p.methods:
            xs, ys = p.steps(m)
            assert np.allclose(lines[f"profile:{m}"].get_ydata(), ys) and np.allclose(
                lines[f"profile:{m}"].get_xdata(), xs
            )
        assert {g for g in lines if g.startswith("rank:")} == {"rank:A", "rank:B"}
        fig.canvas.draw()
        sizes = {t.get_fontsize() for t in fig.findobj(lambda a: hasattr(a, "get_fontsize")) if t.get_text()}
        assert sizes and min(sizes) >= 8 and max(sizes) <= 10, sizes
    plot = prof.profile_plot(p, v)
    assert plot.png and plot.narrow and "not within τ" in plot.caption and "mean ranks" in plot.alt
