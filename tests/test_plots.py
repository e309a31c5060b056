"""The report's figures on synthetic records with stored predictions (no models, seconds): styles, what is drawn as
a trend, baselines, where the legend sits, the cross-task chart and the Pareto rings.
Run: `.venv/bin/python -m pytest tests/test_plots.py -q`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.analysis import baselines as bl
from bench.analysis import cells as cl
from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import Cost, Forgetting, Params, SplitSizes, new_record
from bench.core.store import Store
from bench.report import plots
from bench.report.plots import efficiency, style
from bench.report.plots import tradeoff as plots_scatter

TRAINABLE = {"lora": 10, "full": 1000, "frozen": 2, "fewshot": 0, "zeroshot": 0}


def _logits(rng: np.random.Generator, labels: np.ndarray, skill: float) -> np.ndarray:
    out = rng.normal(size=(len(labels), 2))
    out[np.arange(len(labels)), labels] += skill
    return out


def _write(store, task, method, budget, seed, skill, labels, rng, ood=None, suite="s"):
    """One ok record with per-example test predictions (so the test labels, and the baselines, are known)."""
    res = resolve(Cell(task, method, budget, seed, suite=suite))
    r = new_record(res, "ok")
    outputs = _logits(rng, labels, skill)
    r.metrics = {"test/accuracy": float((outputs.argmax(axis=1) == labels).mean())}
    if ood is not None:
        r.metrics["test_ood/accuracy"] = ood
    r.params = Params(total=1000, trainable=TRAINABLE.get(method, 100), trainable_no_head=0)
    r.cost = Cost(device="cpu", peak_mem_bytes=(1 + TRAINABLE.get(method, 100) / 100) * 2**30, train_time_s=10.0)
    drop = 0.001 * TRAINABLE.get(method, 100)
    r.forgetting = Forgetting("stsb-spearman", 0.8, 0.8 - drop, drop)
    r.splits = SplitSizes(train=budget or 5000, val=100, test=len(labels))
    r.arrays = {"test": {"ids": np.arange(len(labels)), "outputs": outputs, "labels": labels}}
    store.write(r)
    return store.get(suite, r.key)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """glue-sst2 at three budgets ("all" among them) with every kind of method; glue-rte at one budget."""
    store = Store(tmp_path_factory.mktemp("plots"))
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.7).astype(int)  # imbalanced: majority 0.7 (well, ~), chance 0.5
    for seed in range(3):
        for budget, skill in ((64, 0.8), (256, 1.4), (0, 2.0)):
            _write(store, "glue-sst2", "lora", budget, seed, skill, y, rng)
            _write(store, "glue-sst2", "full", budget, seed, skill - 0.5, y, rng)
            _write(store, "glue-sst2", "frozen", budget, seed, skill - 0.8, y, rng)
        for budget in (64, 256):
            _write(store, "glue-sst2", "fewshot", budget, seed, 1.5, y, rng)
        _write(store, "glue-sst2", "zeroshot", 64, seed, 0.5, y, rng)
        _write(store, "glue-rte", "lora", 256, seed, 1.0, y[:100], rng)
        _write(store, "glue-rte", "frozen", 256, seed, 0.5, y[:100], rng)
    _write(store, "glue-rte", "fewshot", 64, 0, 0.5, y[:100], rng)  # no training: the task stays single-budget
    return store, store.records("s")


def _gid(fig, gid):
    return [a for ax in fig.axes for a in [*ax.lines, *ax.collections] if a.get_gid() == gid]


def _sst2_figure(records, store):
    rs = [r for r in records if r.task == "glue-sst2"]
    base, _ = style.task_baselines("glue-sst2", rs, store)
    series = efficiency.efficiency_series(rs, "accuracy")
    return efficiency.efficiency_figure("glue-sst2", series, "accuracy", base, style.budget_labels(rs)), series, base


def test_every_method_gets_its_own_colour_and_marker_on_every_plot():
    from bench.catalog import METHODS

    styles = style.method_styles()
    assert set(METHODS.names()) <= set(styles) and len(styles) >= 16
    assert len(set(styles.values())) == len(styles), "two methods share a (colour, marker)"
    assert len({s.colour for s in styles.values()}) == len(styles), "the registered methods even differ in colour"
    assert style.method_order()[:4] == ["scratch", "frozen", "full", "lora"]
    odd = style.style_of("not-a-registered-method")
    assert odd == style.style_of("not-a-registered-method") and odd.colour in style.FALLBACK_COLOURS


def test_methods_that_do_not_train_are_not_drawn_as_trends(suite):
    store, records = suite
    fig, series, _ = _sst2_figure(records, store)
    kinds = {s.method: s.kind for s in series}
    assert kinds == {"frozen": "curve", "full": "curve", "lora": "curve", "fewshot": "points", "zeroshot": "reference"}
    (lora,) = _gid(fig, "curve:lora")
    assert lora.get_linestyle() == "-" and len(lora.get_xdata()) == 3
    (fewshot,) = _gid(fig, "points:fewshot")
    assert fewshot.get_linestyle() == "None" and len(fewshot.get_xdata()) == 2, "one marker per budget, not joined"
    (zeroshot,) = _gid(fig, "reference:zeroshot")
    assert len(set(zeroshot.get_ydata())) == 1 and list(zeroshot.get_xdata()) == [0, 1], "a line across the axes"
    assert not _gid(fig, "curve:zeroshot") and not _gid(fig, "curve:fewshot")


def test_budget_all_is_drawn_at_the_training_set_size(suite):
    store, records = suite
    fig, series, _ = _sst2_figure(records, store)
    lora = next(s for s in series if s.method == "lora")
    assert lora.x == (64, 256, 5000) and all(i.n == 3 and i.has_interval for i in lora.y)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "256", "all (5,000)"]


def test_majority_and_chance_lines_come_from_the_stored_test_labels(suite):
    store, records = suite
    fig, _, base = _sst2_figure(records, store)
    labels = bl.stored_test_labels(store, [r for r in records if r.task == "glue-sst2"])
    assert base.n_items == 300 and base.majority == pytest.approx(max(labels.mean(), 1 - labels.mean()))
    (majority,) = _gid(fig, "majority")
    (chance,) = _gid(fig, "chance")
    assert majority.get_ydata()[0] == pytest.approx(base.majority) and chance.get_ydata()[0] == 0.5
    low, high = fig.axes[0].get_ylim()
    assert low < 0.5 < base.majority < high, "the y range keeps the baselines in view"


def test_without_test_labels_the_lines_are_left_out_and_the_caption_says_so(suite, monkeypatch):
    _, records = suite
    monkeypatch.setattr(bl, "data_test_labels", lambda record: None)
    for module in (efficiency, plots_scatter):  # the captions are the point here, not the pictures
        monkeypatch.setattr(module, "png_base64", lambda fig: "")
    figures = plots.task_figures("glue-sst2", records, store=None)  # no store: no stored labels either
    assert figures and all("No majority-class or chance line" in f.caption for f in figures)
    with_store = plots.task_figures("glue-sst2", records, store=suite[0])
    assert "Black lines: majority class" in with_store[0].caption


def test_the_value_range_does_not_blow_up_a_tiny_difference():
    lo, hi = style.value_limits([0.800, 0.807], "accuracy")
    assert hi - lo >= style.MIN_SPAN - 1e-12 and lo < 0.8 and hi > 0.807
    lo, hi = style.value_limits([0.99, 0.995], "auroc")
    assert hi == 1.0 and hi - lo >= style.MIN_SPAN - 1e-12, "shifted inside the metric's bounds, not shrunk"
    lo, hi = style.value_limits([-0.02, 0.01], "mcc")
    assert lo >= -1.0 and hi - lo >= style.MIN_SPAN - 1e-12


def test_every_legend_sits_outside_the_axes(suite):
    store, records = suite
    sst2 = [r for r in records if r.task == "glue-sst2"]
    base, _ = style.task_baselines("glue-sst2", sst2, store)
    rte = efficiency.efficiency_series([r for r in records if r.task == "glue-rte"], "accuracy")
    figures = [
        _sst2_figure(records, store)[0],
        plots_scatter.dot_chart_figure([plots_scatter.DotRow("glue-rte", "accuracy", rte, base, 256)]),
        *(
            plots_scatter.tradeoff_figure(
                "glue-sst2", "accuracy", plots_scatter.tradeoff_cells(sst2), True, base, style.budget_labels(sst2), n
            )
            for n in (4, plots_scatter.NARROW_PER_ROW)
        ),
    ]
    for fig in figures:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_tightbbox(renderer)), "the legend covers a panel, its ticks or labels"


def test_single_budget_tasks_go_to_one_cross_task_chart(suite):
    store, records = suite
    assert plots.single_budget_tasks(records) == ["glue-rte"], "fewshot's extra budget does not make a curve"
    rte = plots.task_figures("glue-rte", records, store)
    assert not any("labelled training examples" in f.alt for f in rte), "no near-empty sample-efficiency plot"
    assert any("labelled training examples" in f.alt for f in plots.task_figures("glue-sst2", records, store))
    (dots,) = plots.cross_task_figures(records, store)  # no shift task here: the dot chart alone
    assert "glue-rte" in dots.alt and "glue-sst2" not in dots.alt and dots.png
    series = efficiency.efficiency_series([r for r in records if r.task == "glue-rte"], "accuracy")
    fig = plots_scatter.dot_chart_figure([plots_scatter.DotRow("glue-rte", "accuracy", series, None, 256)])
    drawn = {a.get_gid() for a in fig.axes[0].lines}
    assert drawn >= {"dot:glue-rte:lora", "dot:glue-rte:frozen", "dot:glue-rte:fewshot"}
    assert [t.get_text() for t in fig.axes[0].texts] == ["64"], "fewshot's other budget is written beside it"


def test_the_pareto_front_of_each_cost_is_ringed(suite):
    _, records = suite
    sst2 = [r for r in records if r.task == "glue-sst2"]
    cells = plots_scatter.tradeoff_cells(sst2)
    assert list(cells) == [64, 256, 0], "budgets with three or more methods, 'all' last"
    assert "zeroshot" in cells[256], "a method that reads no training example joins every budget"
    fig = plots_scatter.tradeoff_figure("glue-sst2", "accuracy", cells, True, None, style.budget_labels(sst2))
    for budget, group in cells.items():
        xs, _ = plots_scatter.cost_points(group, "peak memory", plots_scatter.main_probe(cells))
        front = cl.pareto_front({m: (group[m].primary.mean, x) for m, x in xs.items()}, (True, False))
        (ring,) = _gid(fig, f"pareto:{budget}:peak memory")
        ringed = sorted(map(tuple, ring.get_offsets().tolist()))
        assert ringed == sorted((xs[m], group[m].primary.mean) for m in front)
        assert "full" not in front, "lora is better and lighter: full is dominated"
        assert budget != 0 or "lora" in front, "with every example lora is the best"
    (params_ring,) = _gid(fig, "pareto:0:trainable params")
    assert len(params_ring.get_offsets()) == 3, "zeroshot (no parameters), frozen (2) and lora (10, the best)"


def test_the_trade_off_figure_has_a_narrow_layout_with_the_same_points(suite):
    _, records = suite
    sst2 = [r for r in records if r.task == "glue-sst2"]
    cells = plots_scatter.tradeoff_cells(sst2)
    wide, narrow = (
        plots_scatter.tradeoff_figure("glue-sst2", "accuracy", cells, True, None, style.budget_labels(sst2), n)
        for n in (4, plots_scatter.NARROW_PER_ROW)
    )
    gids = [{a.get_gid() for ax in fig.axes for a in [*ax.lines, *ax.collections]} - {None} for fig in (wide, narrow)]
    assert gids[0] == gids[1] and len(wide.axes) == len(narrow.axes) == 4 * len(cells)
    width = narrow.get_figwidth() * style.DPI
    assert width <= 800 < wide.get_figwidth() * style.DPI, "legible without shrinking in an 800 px window"
    for row in range(len(cells)):  # each budget's two rows of panels share its y range
        assert narrow.axes[4 * row].get_ylim() == narrow.axes[4 * row + 2].get_ylim()


def test_zero_trainable_parameters_sit_at_their_own_tick_on_the_log_axis(suite):
    _, records = suite
    cells = plots_scatter.tradeoff_cells([r for r in records if r.task == "glue-sst2"])
    fig = style.new_figure(4, 3)
    ax = fig.add_subplot()
    xs, _ = plots_scatter.cost_points(cells[64], "trainable params", None)
    drawn = plots_scatter.log_axis(ax, xs)
    assert xs["fewshot"] == 0 and drawn["fewshot"] > 0 and ax.get_xscale() == "log"
    assert ax.get_xticklabels()[0].get_text() == "0" and drawn["fewshot"] < min(x for x in xs.values() if x > 0)


def test_shift_tasks_get_in_domain_against_out_of_domain_with_the_diagonal(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    for seed in range(2):
        _write(store, "shift-sst2-to-kitchen", "full", 256, seed, 2.0, y, rng, ood=0.70 + 0.01 * seed)
        _write(store, "shift-sst2-to-kitchen", "frozen", 256, seed, 1.0, y, rng, ood=0.60)
    records = store.records("s")
    assert list(plots_scatter.shift_tasks(records)) == ["shift-sst2-to-kitchen"]
    fig = plots_scatter.shift_figure(plots_scatter.shift_tasks(records))
    (diagonal,) = _gid(fig, "identity")
    assert list(diagonal.get_xdata()) == list(diagonal.get_ydata())
    (full,) = _gid(fig, "shift:shift-sst2-to-kitchen:full")
    assert full.get_ydata()[0] == pytest.approx(0.705)
    in_domain = np.mean([r.test_metric("accuracy") for r in records if r.method == "full"])
    assert full.get_xdata()[0] == pytest.approx(in_domain)
    titles = [p.alt for p in plots.cross_task_figures(records, store)]
    assert any("out-of-domain" in t for t in titles)


def test_the_report_embeds_each_figure_with_alt_text_and_a_caption(suite, tmp_path):
    from bench.report.page import write_report

    store, _ = suite
    page = write_report("s", store, tmp_path / "out").read_text()
    assert "<h2>Across tasks</h2>" in page and page.count("<figure>") == page.count("<img") == page.count("<figcaption")
    assert page.count("<picture><source media='(max-width: ") == page.count("alt='glue-sst2: test accuracy against")
    assert "alt='glue-sst2: test accuracy vs labelled training examples" in page
    assert "data:image/png;base64," in page and "http" not in page
    assert not any(math.isnan(v) for v in style.value_limits([math.nan, 0.5], "accuracy"))


@pytest.mark.slow
def test_the_committed_baseline_records_render_with_every_kind_of_figure(tmp_path):
    """results/baselines/default-cpu (real records, one seed, no stored predictions): ~20 s on two cores."""
    from pathlib import Path

    from bench.report.page import write_report

    root = Path(__file__).resolve().parent.parent / "results" / "baselines"
    page = write_report("default-cpu", Store(root), tmp_path, all_records=True).read_text()
    alts = ("dot chart of the primary test metric", "in-domain vs out-of-domain", "vs labelled training examples")
    assert all(alt in page for alt in alts) and "against forgetting, trainable parameters" in page
