"""The report's figures on synthetic records with stored predictions (no models, seconds): styles and colours, what
is drawn as a trend, y ranges that fit the data, baselines, where the legend sits, the cross-task chart (a panel per
metric, every point named), the Pareto rings and their noise, the serving-cost panel, and the figures' sizes.
Run: `.venv/bin/python -m pytest tests/test_plots.py -q`."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.analysis import baselines as bl
from bench.analysis import cells as cl
from bench.analysis.stats import Interval
from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import Cost, Forgetting, Params, SplitSizes, new_record
from bench.core.store import Store
from bench.report import plots
from bench.report.plots import crosstask, efficiency, serving, style
from bench.report.plots import tradeoff as plots_scatter

TRAINABLE = {"lora": 10, "full": 1000, "frozen": 2, "fewshot": 0, "zeroshot": 0}
EVAL_RATE = {"lora": 80.0, "full": 90.0, "frozen": 150_000.0, "fewshot": 5.0, "zeroshot": 7.0}  # test examples/s


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
    r.cost.eval_samples_per_s = EVAL_RATE.get(method, 100.0) * (1 + 0.05 * seed)
    if method == "lora":
        r.cost.eval_samples_per_s_merged = 100.0 * (1 + 0.05 * seed)
    if method == "frozen":  # the test features read from the cache: its rate is a read, the encoding rate stands in
        r.cost.feature_cache, r.cost.feature_samples_per_s = {"computed": 64, "hits": 300}, 120.0
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


@pytest.fixture
def sized_png(monkeypatch):
    """Figures "encoded" as their pixel width (figsize x dpi: what savefig writes), not PNGs: no drawing, seconds."""
    for module in (efficiency, plots_scatter, crosstask):
        monkeypatch.setattr(module, "png_base64", lambda fig: str(round(fig.get_figwidth() * fig.dpi)))


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
    low, high = fig.axes[0].get_ylim()
    drawn = {gid: _gid(fig, gid) for gid in ("majority", "chance")}
    for gid, value in (("majority", base.majority), ("chance", 0.5)):
        if low <= value <= high:  # drawn where it falls inside the data's range ...
            assert drawn[gid] and drawn[gid][0].get_ydata()[0] == pytest.approx(value)
        else:  # ... otherwise named at the axis' edge, not drawn
            assert not drawn[gid]
            notes = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "off-axis"]
            assert any(f"{value:.3f}" in t for t in notes), notes


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


def test_every_legend_sits_outside_the_axes(suite, sst2_tradeoff):
    store, records = suite
    sst2 = [r for r in records if r.task == "glue-sst2"]
    base, _ = style.task_baselines("glue-sst2", sst2, store)
    rte = efficiency.efficiency_series([r for r in records if r.task == "glue-rte"], "accuracy")
    figures = [
        _sst2_figure(records, store)[0],
        crosstask.dot_chart_figure([crosstask.DotRow("glue-rte", "accuracy", rte, base, 256)]),
        sst2_tradeoff[2],
        plots_scatter.tradeoff_figure(
            "glue-sst2",
            "accuracy",
            sst2_tradeoff[1],
            True,
            base,
            style.budget_labels(sst2),
            plots_scatter.NARROW_PER_ROW,
        ),
    ]
    for fig in figures:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_tightbbox(renderer)), "the legend covers a panel, its ticks or labels"


def test_single_budget_tasks_go_to_one_cross_task_chart(suite, sized_png):
    store, records = suite
    assert plots.single_budget_tasks(records) == ["glue-rte"], "fewshot's extra budget does not make a curve"
    rte = plots.task_figures("glue-rte", records, store)
    assert not any("labelled training examples" in f.alt for f in rte), "no near-empty sample-efficiency plot"
    assert any("labelled training examples" in f.alt for f in plots.task_figures("glue-sst2", records, store))
    (dots,) = plots.cross_task_figures(records, store)  # no shift task here: the dot chart alone
    assert "glue-rte" in dots.alt and "glue-sst2" not in dots.alt and dots.png
    series = efficiency.efficiency_series([r for r in records if r.task == "glue-rte"], "accuracy")
    fig = crosstask.dot_chart_figure([crosstask.DotRow("glue-rte", "accuracy", series, None, 256)])
    drawn = {a.get_gid() for a in fig.axes[0].lines}
    assert drawn >= {"dot:glue-rte:lora", "dot:glue-rte:frozen", "dot:glue-rte:fewshot"}
    names = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert names == ["frozen", "lora", "fewshot (smollm2-135m; budget 64)"], "its backbone and other budget named"


@pytest.fixture(scope="module")
def sst2_tradeoff(suite):
    """glue-sst2's records, their trade-off cells and the wide trade-off figure (drawn once: 15 panels)."""
    _, records = suite
    sst2 = [r for r in records if r.task == "glue-sst2"]
    cells = plots_scatter.tradeoff_cells(sst2)
    return (
        sst2,
        cells,
        plots_scatter.tradeoff_figure("glue-sst2", "accuracy", cells, True, None, style.budget_labels(sst2)),
    )


def _same(points, others) -> bool:
    a, b = np.array(sorted(points), dtype=float), np.array(sorted(others), dtype=float)
    return a.shape == b.shape and np.allclose(a, b)


def _at(fig, gid):
    """(x, y) of the one marker drawn with ``gid``."""
    (line,) = _gid(fig, gid)
    return float(line.get_xdata()[0]), float(line.get_ydata()[0])


def test_the_pareto_front_of_each_cost_is_ringed(sst2_tradeoff):
    _, cells, fig = sst2_tradeoff
    assert list(cells) == [64, 256, 0], "budgets with three or more methods, 'all' last"
    assert "zeroshot" in cells[256], "a method that reads no training example joins every budget"
    for budget, group in cells.items():
        xs, _, _ = plots_scatter.cost_points(group, "peak memory", plots_scatter.main_probe(cells))
        front = cl.pareto_front({m: (group[m].primary.mean, x) for m, x in xs.items()}, (True, False))
        (ring,) = _gid(fig, f"pareto:{budget}:peak memory")
        ringed = sorted(map(tuple, ring.get_offsets().tolist()))
        assert _same(ringed, [_at(fig, f"point:{budget}:peak memory:{m}") for m in front])
        assert "full" not in front, "lora is better and lighter: full is dominated"
        assert budget != 0 or "lora" in front, "with every example lora is the best"
    (params_ring,) = _gid(fig, "pareto:0:trainable params")
    assert len(params_ring.get_offsets()) == 3, "zeroshot (no parameters), frozen (2) and lora (10, the best)"


def test_a_method_behind_the_front_only_by_its_mean_is_ringed_as_within_noise(suite, sst2_tradeoff, sized_png):
    clear = Interval(0.95, 0.94, 0.96, 3)
    points = {
        "cheap": (clear, 1.0),
        "noisy": (Interval(0.78, 0.60, 0.945, 3), 2.0),  # its interval reaches cheap's
        "beaten": (Interval(0.80, 0.70, 0.90, 3), 3.0),  # wholly below cheap's
        "pricier": (Interval(0.97, 0.90, 0.99, 3), 4.0),  # better: on the front
    }
    front = cl.pareto_front({m: (i.mean, c) for m, (i, c) in points.items()}, (True, False))
    assert front == ["cheap", "pricier"]
    assert plots_scatter.within_noise(points, front, True) == ["noisy"]
    one_seed = {"a": (Interval(0.9, math.nan, math.nan, 1), 1.0), "b": (Interval(0.8, math.nan, math.nan, 1), 2.0)}
    assert plots_scatter.within_noise(one_seed, ["a"], True) == [], "without intervals the means decide"
    _, cells, fig = sst2_tradeoff
    ringed = 0
    for budget, group in cells.items():
        xs, _, _ = plots_scatter.cost_points(group, "peak memory", None)
        pts = {m: (group[m].primary, x) for m, x in xs.items()}
        front = cl.pareto_front({m: (i.mean, x) for m, (i, x) in pts.items()}, (True, False))
        noise = plots_scatter.within_noise(pts, front, True)
        rings = _gid(fig, f"noise:{budget}:peak memory")
        ringed_here = rings[0].get_offsets().tolist() if rings else []
        assert _same(ringed_here, [_at(fig, f"point:{budget}:peak memory:{m}") for m in noise])
        ringed += len(noise)
    assert ringed, "the synthetic suite has a method behind the front within noise"
    caption = plots.task_figures("glue-sst2", suite[1], suite[0])[-1].caption
    assert "drawn from the means alone" in caption and "within noise" in caption


def test_the_serving_panel_sits_beside_training_time_with_the_slowest_to_serve_rightmost(sst2_tradeoff):
    _, cells, fig = sst2_tradeoff
    titles = [ax.get_title() for ax in fig.axes]
    assert titles.index("vs serving time") == titles.index("vs train time") + 1
    ax = fig.axes[titles.index("vs serving time")]
    assert ax.get_xscale() == "log" and "ms" in ax.get_xlabel()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "zeroshot (smollm2-135m)" in legend and "lora (minilm-l6)" in legend, "backbones differ: named"
    xs = {m: _at(fig, f"point:64:serving time:{m}")[0] for m in cells[64]}
    assert max(xs, key=xs.get) == "fewshot" and min(xs, key=xs.get) == "frozen", xs  # its backbone at 120/s
    xs_all = {m: _at(fig, f"point:0:serving time:{m}")[0] for m in cells[0]}
    assert max(xs_all, key=xs_all.get) == "zeroshot", "fewshot did not run with every example: zeroshot is slowest"
    lora = serving.serving_cost(cells[64]["lora"].records)[0]
    assert lora.median_ms == pytest.approx(1000 / 105) and lora.sources == (serving.MERGED,), "the merged rate"
    assert (lora.low_ms, lora.high_ms) == pytest.approx((1000 / 110, 1000 / 100)), "the range over seeds"
    frozen = serving.serving_cost(cells[64]["frozen"].records)[0]
    assert frozen.median_ms == pytest.approx(1000 / 120) and frozen.sources == (serving.ENCODING,)
    cached = cells[64]["frozen"].records[0]
    cached.cost.feature_samples_per_s = None
    try:
        assert serving.serving_rate(cached) == (None, serving.FROM_CACHE), "every feature read: no serving rate"
    finally:
        cached.cost.feature_samples_per_s = 120.0


def test_the_trade_off_figure_has_a_narrow_layout_with_the_same_points(sst2_tradeoff):
    sst2, cells, wide = sst2_tradeoff
    n = len(plots_scatter.COST_AXES)
    labels = style.budget_labels(sst2)
    narrow = plots_scatter.tradeoff_figure(
        "glue-sst2", "accuracy", cells, True, None, labels, plots_scatter.NARROW_PER_ROW
    )
    gids = [{a.get_gid() for ax in fig.axes for a in [*ax.lines, *ax.collections]} - {None} for fig in (wide, narrow)]
    assert gids[0] == gids[1] and len(wide.axes) == len(narrow.axes) == n * len(cells)
    width = narrow.get_figwidth() * style.DPI
    assert width <= 800 < wide.get_figwidth() * style.DPI, "legible without shrinking in an 800 px window"
    for row in range(len(cells)):  # each budget's rows of panels share its y range
        assert len({narrow.axes[n * row + k].get_ylim() for k in range(n)}) == 1


def test_zero_trainable_parameters_sit_at_their_own_tick_on_the_log_axis(suite):
    _, records = suite
    cells = plots_scatter.tradeoff_cells([r for r in records if r.task == "glue-sst2"])
    fig = style.new_figure(4, 3)
    ax = fig.add_subplot()
    xs, _, _ = plots_scatter.cost_points(cells[64], "trainable params", None)
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
    assert list(crosstask.shift_tasks(records)) == ["shift-sst2-to-kitchen"]
    fig = crosstask.shift_figure(crosstask.shift_tasks(records))
    (diagonal,) = _gid(fig, "identity")
    assert list(diagonal.get_xdata()) == list(diagonal.get_ydata())
    (full,) = _gid(fig, "shift:shift-sst2-to-kitchen:full")
    assert full.get_ydata()[0] == pytest.approx(0.705)
    in_domain = np.mean([r.test_metric("accuracy") for r in records if r.method == "full"])
    assert full.get_xdata()[0] == pytest.approx(in_domain)
    titles = [p.alt for p in plots.cross_task_figures(records, store)]
    assert any("out-of-domain" in t for t in titles)


def test_the_report_embeds_each_figure_with_alt_text_and_a_caption(suite, tmp_path, sized_png):
    from bench.report.page import write_report

    store, _ = suite
    page = write_report("s", store, tmp_path / "out").read_text()
    assert "<h2>Across tasks</h2>" in page and page.count("<figure>") == page.count("<img") == page.count("<figcaption")
    tradeoff = page.index("alt='glue-sst2: test accuracy against")
    assert page.rfind("<picture><source media='(max-width: ", 0, tradeoff) > page.rfind("</picture>", 0, tradeoff)
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


# ------------------------------------------------------------------------------------------------ review fixes
def _interval(mean: float, half: float, n: int = 3) -> Interval:
    return Interval(mean, mean - half, mean + half, n)


def test_the_y_range_fits_the_points_and_intervals_not_the_baselines_far_below():
    """An AUROC curve at 0.90-0.98 with chance at 0.5: the axis spans the data, chance is named at its edge."""
    from bench.analysis.baselines import Baselines

    series = [
        efficiency.Series("full", "curve", (64, 256, 1024), tuple(_interval(m, 0.02) for m in (0.93, 0.95, 0.97))),
        efficiency.Series("lora", "curve", (64, 256, 1024), tuple(_interval(m, 0.04) for m in (0.90, 0.94, 0.96))),
    ]
    base = Baselines(metric="auroc", majority=0.5, chance=0.5, n_items=300)
    fig = efficiency.efficiency_figure("pneumonia-mnist", series, "auroc", base, {})
    low, high = fig.axes[0].get_ylim()
    data_low, data_high = 0.86, 1.0  # lora's lowest interval end; the top of AUROC's range
    assert data_low - 0.05 <= low < data_low and high == data_high, (low, high)  # padded, then shifted under 1
    assert high - low < 0.2, "the data fill most of the axis, not its top 15%"
    assert not _gid(fig, "majority"), "a baseline outside the range is not stretched into view"
    (note,) = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "off-axis"]
    assert "0.500" in note and "below" in note


def test_no_translucent_bands_that_blend_into_colours_no_legend_names(suite):
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Polygon

    store, records = suite
    fig, _, _ = _sst2_figure(records, store)
    ax = fig.axes[0]
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)], "no fill_between band"
    assert not [p for p in ax.patches if isinstance(p, Polygon)], "no axhspan band"
    assert {line.get_gid() for line in ax.lines} >= {"interval:zeroshot"}, "zeroshot's interval as lines"


def test_a_method_without_labelled_examples_is_a_labelled_reference_naming_its_backbone(suite):
    store, records = suite
    fig, series, _ = _sst2_figure(records, store)
    backbones = {s.method: s.backbone for s in series}
    assert backbones["zeroshot"] != backbones["lora"], "the synthetic suite mixes backbones, as the real one does"
    (label,) = [t for t in fig.axes[0].texts if t.get_gid() == "label:zeroshot"]
    assert label.get_text().startswith("zeroshot") and backbones["zeroshot"] in label.get_text()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    for method in ("lora", "frozen", "zeroshot", "fewshot"):
        assert any(t.startswith(f"{method} (") and backbones[method] in t for t in legend), legend
    same = [s for s in series if s.backbone == backbones["lora"]]
    one = efficiency.efficiency_figure("glue-sst2", same, "accuracy", None, {})
    assert all("(" not in t.get_text() for t in one.legends[0].get_texts()), "one backbone: not named"


def _lab(hexes):
    """CIE L*a*b* (D65) of sRGB colours: the distance a reader perceives, roughly."""
    rgb = np.array([[int(h[i : i + 2], 16) / 255 for i in (1, 3, 5)] for h in hexes])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = lin @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    f = np.cbrt(xyz / np.array([0.95047, 1.0, 1.08883]))
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


def _sixteen_methods_chart():
    methods = style.method_order()[:16]
    accuracy = [
        efficiency.Series(m, "curve", (64,), (_interval(0.5 + 0.01 * k, 0.02),), "minilm-l6")
        for k, m in enumerate(methods)
    ]
    pearson = [
        efficiency.Series(m, "curve", (64,), (_interval(0.1 * k, 0.05),), "minilm-l6")
        for k, m in enumerate(methods[:3])
    ]
    rows = [
        crosstask.DotRow("glue-sst2", "accuracy", accuracy, None, 64),
        crosstask.DotRow("glue-stsb", "pearson", pearson, None, 64),
        crosstask.DotRow("glue-rte", "accuracy", accuracy[:2], None, 64),
    ]
    return methods, rows, crosstask.dot_chart_figure(rows)


def test_the_sixteen_methods_of_the_cross_task_chart_have_distinct_colours_and_every_point_a_name():
    from matplotlib.colors import to_hex

    methods, _, fig = _sixteen_methods_chart()
    drawn = {}
    for ax in fig.axes:
        for line in ax.lines:
            if (line.get_gid() or "").startswith("dot:glue-sst2:"):
                drawn[line.get_gid().split(":")[2]] = to_hex(line.get_color())
    assert set(drawn) == set(methods)
    colours = [drawn[m] for m in methods]
    rgb = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in colours], dtype=float)
    lab = _lab(colours)
    for a in range(16):
        for b in range(a + 1, 16):
            assert np.linalg.norm(rgb[a] - rgb[b]) >= 60, (methods[a], methods[b], colours[a], colours[b])
            assert np.linalg.norm(lab[a] - lab[b]) >= 25, (methods[a], methods[b], colours[a], colours[b])
    shapes = {(style.style_of(m).marker, style.style_of(m).hollow) for m in methods}
    assert len(shapes) == 16, "and 16 shapes: a colour-blind reader still tells them apart"
    points = sum(1 for ax in fig.axes for line in ax.lines if (line.get_gid() or "").startswith("dot:"))
    names = [t.get_text() for ax in fig.axes for t in ax.get_yticklabels()]
    assert len(names) == points == 16 + 3 + 2 and set(methods) <= set(names), "a name on the y axis per point"


def test_metrics_in_different_units_get_different_axes_in_the_cross_task_chart():
    _, _, fig = _sixteen_methods_chart()
    by_axis = {
        ax.get_xlabel(): {
            line.get_gid().split(":")[1] for line in ax.lines if (line.get_gid() or "").startswith("dot:")
        }
        for ax in fig.axes
    }
    assert by_axis == {"test accuracy": {"glue-sst2", "glue-rte"}, "test pearson": {"glue-stsb"}}
    pearson = next(ax for ax in fig.axes if ax.get_xlabel() == "test pearson")
    assert pearson.get_xlim()[0] < 0, "Pearson's own range (the accuracy axis cannot go below 0)"


def _png_width(encoded: str) -> int:
    return int(encoded)  # sized_png's stand-in for the PNG


def test_every_figure_is_legible_at_1400_and_800_px(suite, tmp_path, sized_png):
    """At 1400 px the page's column is 1268 px, at 800 px 768 (less a scrollbar): each figure, and in a narrow
    window its narrow layout, is shown at >= 75% of its size (tests/test_report_browser.py's bar)."""
    store, records = suite
    y = np.random.default_rng(2).integers(0, 2, 100)
    shift = Store(tmp_path)
    for k, task in enumerate(("shift-sst2-to-kitchen", "shift-imdb-to-airline", "shift-mnist-to-usps")):
        for seed in range(2):
            _write(shift, task, "frozen", 256, seed, 1.0, y, np.random.default_rng(seed), ood=0.6 + 0.01 * k)
    _, _, sixteen = _sixteen_methods_chart()
    figures = [
        *plots.task_figures("glue-sst2", records, store),
        *plots.cross_task_figures(records, store),
        *plots.cross_task_figures(shift.records("s"), shift),
    ]
    assert len(figures) >= 4
    for f in figures:
        wide = _png_width(f.png)
        narrow = _png_width(f.narrow) if f.narrow else wide
        assert 0.75 * wide <= 1268 and wide <= style.WIDE_MAX_PX, f"{f.alt}: {wide} px shrinks below 75% at 1400 px"
        assert 0.75 * narrow <= 768 - 15 and narrow <= style.NARROW_MAX_PX, f"{f.alt}: {narrow} px at 800 px"
        assert (narrow < wide) == bool(f.narrow), "a narrow layout only where the wide one is too wide"
    assert sixteen.get_figwidth() * style.DPI <= style.NARROW_MAX_PX, "the dot chart needs no narrow layout"


def test_text_is_8_to_10_points_at_100_dpi(suite, sst2_tradeoff):
    from matplotlib.text import Text

    store, records = suite
    _, _, dots = _sixteen_methods_chart()
    for fig in (_sst2_figure(records, store)[0], sst2_tradeoff[2], dots):
        assert fig.dpi == style.DPI == 100
        fig.canvas.draw()
        sizes = {t.get_fontsize() for t in fig.findobj(Text) if t.get_text() and t.get_visible()}
        assert sizes and min(sizes) >= 8 and max(sizes) <= 10, sizes


def test_overlapping_markers_are_nudged_apart_and_lone_ones_stay():
    offsets = style.nudge([(0.5, 0.5), (0.5, 0.51), (0.9, 0.1)])
    assert offsets[2] == 0.0 and offsets[0] != offsets[1] and abs(offsets[0] - offsets[1]) >= 0.02
    crowd = style.nudge([(0.5, 0.5)] * 12)
    assert max(crowd) - min(crowd) <= 0.12 + 1e-9, "a crowd stays inside the panel's margin"
