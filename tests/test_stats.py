"""The statistics layer and derived measures on synthetic data (no models, seconds).
Run: `.venv/bin/python -m pytest tests/test_stats.py -q`."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest

from bench import catalog
from bench.analysis import baselines as bl
from bench.analysis import cells as cl
from bench.analysis import flags as fl
from bench.analysis import pairing, stats
from bench.analysis.contrast import BETTER, Difference, compare_outputs
from bench.analysis.decision_map import decision_map
from bench.catalog import resolve
from bench.cli import main
from bench.core import metrics
from bench.core.api import Cell
from bench.core.metrics import weighted
from bench.core.record import Cost, Forgetting, Params, new_record
from bench.core.store import Store


def _logits(rng: np.random.Generator, labels: np.ndarray, skill: float, n_classes: int = 2) -> np.ndarray:
    """Logits whose true class gets a ``skill`` bonus: higher skill, higher accuracy and AUROC."""
    out = rng.normal(size=(len(labels), n_classes))
    out[np.arange(len(labels)), labels] += skill
    return out


# ---------------------------------------------------------------------------------------------- intervals
def test_seed_summary_is_a_t_interval_and_one_seed_has_none():
    i = stats.seed_summary([0.70, 0.72, 0.74])
    assert abs(i.mean - 0.72) < 1e-12 and abs((i.high - i.mean) - 4.302653 * 0.02 / 3**0.5) < 1e-5
    assert i.n == 3 and i.has_interval and "[0.670, 0.770]" in i.describe()
    one = stats.seed_summary([0.5, None, math.nan])
    assert one.n == 1 and math.isnan(one.low) and math.isnan(one.high) and one.describe() == "0.500 (one seed)"
    assert stats.seed_summary([]).n == 0


def test_t_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    draws = rng.normal(0.8, 0.05, size=(2000, 3))
    covered = [(i.low <= 0.8 <= i.high) for i in map(stats.seed_summary, draws)]
    assert 0.93 < np.mean(covered) < 0.97


# ------------------------------------------------------------------------------------- resampled metrics
@pytest.mark.parametrize("name", sorted(metrics.METRICS))
@pytest.mark.parametrize("n_classes", [2, 4])
def test_resampled_metrics_equal_bench_metrics_on_explicit_resamples(name, n_classes):
    rng = np.random.default_rng(1)
    n = 80
    if name in ("pearson", "spearman"):
        labels = np.round(rng.normal(size=n), 1)  # rounded: ties, which Spearman must rank as scipy does
        outputs = np.round(labels + rng.normal(size=n), 1)
    else:
        labels = rng.integers(0, n_classes, n)
        outputs = np.round(_logits(rng, labels, 1.0, n_classes), 1)
    idx = rng.integers(0, n, size=(40, n))
    W = np.stack([np.bincount(row, minlength=n) for row in idx])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [metrics.METRICS[name](outputs[row], labels[row]) for row in idx]
    np.testing.assert_allclose(weighted(name, outputs, labels, W), expected, atol=1e-12)
    assert all(callable(m.resampled) for m in metrics.METRICS.values()), "every task metric has a resampled form"


@pytest.mark.parametrize("prevalence", [0.2, 0.8])
@pytest.mark.parametrize("decimals", [0, 3])
def test_resampled_auroc_with_ties_and_either_class_the_smaller(prevalence, decimals):
    rng = np.random.default_rng(14)
    labels = (rng.random(120) < prevalence).astype(int)
    outputs = np.stack([np.zeros(120), np.round(labels + rng.normal(size=120), decimals)], axis=1)
    idx = rng.integers(0, 120, size=(30, 120))
    W = np.stack([np.bincount(row, minlength=120) for row in idx])
    expected = [metrics.auroc(outputs[row], labels[row]) for row in idx]
    np.testing.assert_allclose(weighted("auroc", outputs, labels, W), expected, atol=1e-12)


# --------------------------------------------------------------------------------------------- seed rule
def test_a_ranking_needs_three_seeds_of_each_method_and_fewshot_five():
    assert stats.min_seeds("lora") == 3 and stats.min_seeds("fewshot") == 5 and stats.min_seeds("zeroshot") == 5
    assert not stats.enough_seeds("lora", 2) and stats.enough_seeds("lora", 3)
    assert not stats.enough_seeds("fewshot", 3) and stats.enough_seeds("fewshot", 5)
    assert stats.min_seeds("a-method-this-checkout-lacks") == 3, "an unknown method gets the default rule"


# ------------------------------------------------------------------------------------------------ DeLong
def test_delong_matches_a_hand_computed_case():
    # positives score 3 and 1, negatives 2 and 0: AUC 3/4; placements V10 = (1, 1/2), V01 = (1/2, 1), each with
    # sample variance 1/8, so var(AUC) = 1/8 / 2 + 1/8 / 2 = 1/8 (DeLong et al. 1988, eq. 2-4)
    labels = np.array([1, 1, 0, 0])
    r = stats.delong(np.array([3.0, 1.0, 2.0, 0.0]), np.array([3.0, 2.0, 1.0, 0.0]), labels)
    assert r.auc_a == 0.75 and r.auc_b == 1.0
    assert r.var_a == pytest.approx(0.125) and r.var_b == pytest.approx(0.0) and r.var == pytest.approx(0.125)


def test_delong_equals_its_quadratic_definition_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(6)
    y = rng.integers(0, 2, 60)
    a, b = np.round(y + rng.normal(size=60), 1), np.round(y + 0.5 * rng.normal(size=60), 1)
    r = stats.delong(a, b, y)

    def components(s):  # psi(x, y) = 1 if x > y, 1/2 if tied: the O(mn) form of DeLong et al. (1988)
        x, z = s[y == 1], s[y == 0]
        psi = (x[:, None] > z[None, :]) + 0.5 * (x[:, None] == z[None, :])
        return psi.mean(), psi.mean(axis=1), psi.mean(axis=0)

    (auc_a, v10a, v01a), (auc_b, v10b, v01b) = components(a), components(b)
    m, n = (y == 1).sum(), (y == 0).sum()
    var = (np.var(v10a - v10b, ddof=1) / m) + (np.var(v01a - v01b, ddof=1) / n)
    assert r.auc_a == pytest.approx(auc_a) == pytest.approx(roc_auc_score(y, a)) and r.auc_b == pytest.approx(auc_b)
    assert r.var == pytest.approx(var)


def test_delong_and_the_item_term_of_the_seed_aware_test_agree_on_an_auroc_difference():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 1000)
    shared = rng.normal(size=1000)  # the two scorers' errors are correlated, as two methods' are
    a = np.stack([np.zeros(1000), y + shared + 0.8 * rng.normal(size=1000)], axis=1)
    b = np.stack([np.zeros(1000), 0.8 * y + shared + 0.8 * rng.normal(size=1000)], axis=1)
    r = stats.delong(a, b, y)
    d = compare_outputs([a], [b], [y], "auroc")  # one seed: the item term alone
    assert d.diff == pytest.approx(r.diff)
    assert 0.8 < d.se / math.sqrt(r.var) < 1.25
    assert abs(d.low - r.low) < 0.01 and abs(d.high - r.high) < 0.01
    assert (r.p_value < 0.05) == d.significant, "the two tests reach the same conclusion"


# -------------------------------------------------------------------------- records, pairing, decisions
def _write(store, task, method, budget, seed, outputs, labels, ids=None, suite="s", mem=2**30):
    """An ok record scored on ``outputs``; a method that trains gets a validation score equal to its test score
    (so the decision map's validation choice is the best test mean here)."""
    res = resolve(Cell(task, method, budget, seed, suite=suite))
    r = new_record(res, "ok")
    scores = metrics.compute(res.task.spec.metrics, outputs, labels, res.task.spec.kind)
    r.metrics = {f"test/{name}": value for name, value in scores.items()}
    if catalog.method_class(method).trains:
        r.metrics.update({f"val/{name}": value for name, value in scores.items()})
    r.params = Params(total=1000, trainable={"lora": 10, "full": 1000, "frozen": 2}.get(method, 100),
                      trainable_no_head=0)  # fmt: skip
    r.cost = Cost(device="cpu", peak_mem_bytes=mem, train_time_s=10.0)
    r.forgetting = Forgetting("probe", 0.8, 0.8, 0.0)
    ids = np.arange(len(labels)) if ids is None else ids
    r.arrays = {"test": {"ids": ids, "outputs": outputs, "labels": labels}}
    store.write(r)
    return store.get(suite, r.key)


def test_mismatched_example_ids_are_refused_and_reordered_ones_are_aligned(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 200)
    a, b = _logits(rng, y, 1.0), _logits(rng, y, 1.0)
    ra = _write(store, "glue-sst2", "lora", 64, 0, a, y)
    rb = _write(store, "glue-sst2", "frozen", 64, 0, b, y, ids=np.arange(200) + 1)
    with pytest.raises(ValueError, match="different test examples"):
        pairing.compare_records(store, [ra], [rb], "accuracy")
    perm = rng.permutation(200)
    rc = _write(store, "glue-sst2", "full", 64, 0, b[perm], y[perm], ids=perm)
    aligned = pairing.compare_records(store, [ra], [rc], "accuracy")
    assert aligned.diff == pytest.approx(metrics.accuracy(a, y) - metrics.accuracy(b, y))
    with pytest.raises(ValueError, match="no seed in common"):
        pairing.compare_records(store, [ra], [_write(store, "glue-sst2", "scratch", 64, 1, b, y)], "accuracy")


def test_decision_map_picks_the_best_and_keeps_what_it_cannot_tell_apart(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 600)
    for seed in range(3):
        base = _logits(rng, y, 2.0)
        _write(store, "glue-sst2", "lora", 64, seed, base, y)
        right = base.argmax(axis=1) == y
        flip = np.r_[np.flatnonzero(right)[:4], np.flatnonzero(~right)[:3]]
        near = base.copy()
        near[flip] = near[flip, ::-1]  # 7 of 600 predictions differ, one net: indistinguishable from lora
        _write(store, "glue-sst2", "full", 64, seed, near, y, mem=4 * 2**30)
        _write(store, "glue-sst2", "frozen", 64, seed, _logits(rng, y, 0.8), y)
        _write(store, "glue-sst2", "fewshot", 64, seed, _logits(rng, y, 3.0), y)  # best mean, but 3 of 5 seeds
        _write(store, "glue-sst2", "lora", 256, seed, base, y) if seed == 0 else None
        _write(store, "glue-sst2", "frozen", 256, seed, _logits(rng, y, 0.8), y) if seed < 2 else None
    maps = {d.budget: d for d in decision_map(store, store.records("s"))}
    d = maps[64]
    assert d.best == "lora" and d.equivalent == ("full",) and d.worse == ("frozen",)
    assert "not enough seeds" in d.excluded["fewshot"] and "fewshot" in d.note
    assert maps[256].best is None and "not enough seeds" in maps[256].note
    capped = {d.budget: d for d in decision_map(store, store.records("s"), memory_cap_bytes=2 * 2**30)}[64]
    assert capped.best == "lora" and "full" in capped.excluded and "over the cap" in capped.excluded["full"]


def test_summary_prints_the_decision_map_and_exits_2_without_records(tmp_path, capsys):
    assert main(["summary", "--results", str(tmp_path / "empty"), "--suite", "s"]) == 2
    assert "no records to summarise" in capsys.readouterr().err
    store = Store(tmp_path)
    rng = np.random.default_rng(10)
    y = (rng.random(400) < 0.8).astype(int)  # imbalanced: majority-class accuracy ~0.8
    for seed in range(3):
        _write(store, "glue-sst2", "lora", 64, seed, _logits(rng, y, 3.0), y)
        _write(store, "glue-sst2", "scratch", 64, seed, majority := bl.majority_outputs(y, 2), y)
        _write(store, "glue-sst2", "frozen", 64, seed, majority + 0.01 * rng.normal(size=majority.shape), y)
    _write(store, "glue-sst2", "lora", 256, 0, _logits(rng, y, 3.0), y)
    assert main(["summary", "--results", str(tmp_path), "--suite", "s"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"glue-sst2 +64  lora \(chosen on validation, 0\.\d+\); worse: frozen, scratch\n", out), out
    assert re.search(r"glue-sst2 +256  not enough seeds: no method can be chosen\n +\(seeds: lora 1\)", out)
    assert "0.9" in out and "(one seed)" in out and "did-not-learn" in out and "few-seeds" in out
    scratch_row = next(line for line in out.splitlines() if line.strip().startswith("scratch"))
    assert "did-not-learn" in scratch_row
    lora_row = next(line for line in out.splitlines() if line.strip().startswith("lora ") and " 64 " in line)
    assert "did-not-learn" not in lora_row and "sample-efficiency area" in out


def test_the_report_opens_with_the_same_decision_map(tmp_path):
    from bench.report.page import write_report

    store = Store(tmp_path)
    rng = np.random.default_rng(13)
    y = rng.integers(0, 2, 300)
    for seed in range(3):
        _write(store, "glue-sst2", "lora", 64, seed, _logits(rng, y, 3.0), y)
        _write(store, "glue-sst2", "frozen", 64, seed, _logits(rng, y, 0.5), y)
    page = write_report("s", store, tmp_path / "out").read_text()
    assert "<h2>Decision map</h2>" in page and "at least 3 seeds per method" in page
    chosen = r"lora on minilm-l6, 3 seeds; validation 0\.\d+</td>"
    assert re.search(chosen + r"<td[^>]*><div class='cmp worse'><b>worse</b>: frozen", page), "frozen: worse than lora"


# ------------------------------------------------------------------------------------------- derived
def test_baselines_from_labels_alone():
    from bench.catalog import TASKS

    y = np.array([0] * 80 + [1] * 20)
    sst2 = TASKS.get("glue-sst2").spec
    assert bl.of_labels(sst2, y).majority == pytest.approx(0.8) and bl.of_labels(sst2, y).chance == 0.5
    mrpc = TASKS.get("glue-mrpc").spec  # binary F1 of class 1
    b = bl.of_labels(mrpc, 1 - y)  # class 1 is the majority (p = 0.8): F1 of always-1 = 2p / (1 + p)
    assert b.majority == pytest.approx(2 * 0.8 / 1.8) and b.chance == pytest.approx(2 * 0.8 / (2 * 0.8 + 1))
    assert bl.of_labels(TASKS.get("pneumonia-mnist").spec, y).majority == 0.5  # AUROC of a constant
    stsb = bl.of_labels(TASKS.get("glue-stsb").spec, np.linspace(0, 5, 100))
    assert math.isnan(stsb.majority) and stsb.reference == 0.0


def test_chance_f1_is_the_mean_over_random_predictions():
    rng = np.random.default_rng(11)
    y = rng.choice(3, size=3000, p=[0.6, 0.3, 0.1])
    draws = [metrics.f1(np.eye(3)[rng.integers(0, 3, len(y))], y) for _ in range(50)]
    assert metrics.chance("f1", y, 3) == pytest.approx(np.mean(draws), abs=0.01)


def test_did_not_learn_flags_an_interval_reaching_the_baseline():
    from bench.catalog import TASKS

    spec = TASKS.get("glue-sst2").spec
    assert bl.did_not_learn(spec, 0.8, stats.seed_summary([0.79, 0.81, 0.80]))
    assert not bl.did_not_learn(spec, 0.8, stats.seed_summary([0.90, 0.91, 0.92]))
    assert bl.did_not_learn(spec, 0.8, stats.seed_summary([0.70, 0.71, 0.72])), "below the baseline too"
    one = stats.seed_summary([0.83])
    assert not bl.did_not_learn(spec, 0.8, one)
    noisy = Difference("accuracy", 0.03, -0.01, 0.07, 0.02, 99.0, 0.2, 0.9, 0.01, 0.0, 0.0004, 1, 100, 2000)
    assert bl.did_not_learn(spec, 0.8, one, noisy), "one seed: within the paired noise of the baseline"


def test_area_over_log_budget_of_known_curves():
    assert cl.normalised_auc([64, 256, 1024], [0.6, 0.7, 0.8]) == pytest.approx(0.7)  # linear in log n
    assert cl.normalised_auc([1000, 10, 100], [0.9, 0.5, 0.9]) == pytest.approx(0.8)  # order-free
    assert cl.normalised_auc([10, 100], [0.5, 0.5]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="two or more"):
        cl.normalised_auc([64], [0.7])
    curves = {0: {10: 0.5, 100: 0.9, 1000: 0.9}, 1: {10: 0.5, 100: 0.7, 1000: 0.9}, 2: {10: 0.6}}
    area = cl.sample_efficiency_auc(curves)
    assert area.n == 2 and area.mean == pytest.approx((0.8 + 0.7) / 2), "seed 2 lacks budgets: left out"
    assert cl.sample_efficiency_auc({0: {64: 0.7}}).n == 0


def test_pareto_front_keeps_only_non_dominated_methods():
    points = {  # (accuracy: higher better, memory: lower better)
        "full": (0.90, 8.0),
        "lora": (0.89, 3.0),
        "frozen": (0.80, 1.0),
        "adapter": (0.85, 3.5),  # dominated by lora
        "prompt": (0.80, 2.0),  # dominated by frozen
        "broken": (math.nan, 0.5),
    }
    assert cl.pareto_front(points, (True, False)) == ["full", "lora", "frozen"]
    assert cl.pareto_front({"a": (1.0, 1.0), "b": (1.0, 1.0)}, (True, False)) == ["a", "b"], "ties both stay"


def test_gain_over_scratch_flags_negative_transfer_only_with_enough_seeds(tmp_path):
    from bench.catalog import TASKS

    store = Store(tmp_path)
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, 800)
    for seed in range(3):
        _write(store, "glue-sst2", "scratch", 64, seed, _logits(rng, y, 2.0), y)
        _write(store, "glue-sst2", "full", 64, seed, _logits(rng, y, 0.5), y)
    cells = cl.method_cells(store.records("s"))[("glue-sst2", 64)]
    spec = TASKS.get("glue-sst2").spec
    gain = cl.gain_over_scratch(store, cells["full"], cells["scratch"], spec)
    assert gain.paired and gain.high < 0 and gain.negative_transfer
    one = cl.method_cells([cells["full"].records[0], *cells["scratch"].records])[("glue-sst2", 64)]
    gain1 = cl.gain_over_scratch(store, one["full"], one["scratch"], spec)
    assert not gain1.negative_transfer and gain1.outcome == stats.NOT_ENOUGH_SEEDS


def test_claims_are_the_decision_maps_wins_and_a_rerun_confirms_reverses_or_cannot_test_them(tmp_path, capsys):
    from bench.analysis.claims import BEATS, HOLDS, NOT_SIGNIFICANT, REVERSED, UNTESTED, check, claims

    rng = np.random.default_rng(11)
    y = rng.integers(0, 2, 500)

    def run(folder, strengths, seeds=(0, 1, 2)):
        store = Store(tmp_path / folder)
        for seed in seeds:
            for method, s in strengths.items():
                _write(store, "glue-sst2", method, 64, seed, _logits(rng, y, s), y)
        return store

    first = run("first", {"lora": 3.0, "frozen": 0.5, "full": 3.0})
    stated = [c for c in claims(decision_map(first, first.records("s"))) if c.kind == BEATS]
    assert [(c.better, c.worse) for c in stated] == [(stated[0].better, "frozen")] and stated[0].diff.low > 0
    assert stated[0].better in ("lora", "full"), "lora and full cannot be told apart: no claim between them"
    rerun = run("rerun", {"lora": 3.0, "frozen": 0.5, "full": 3.0}, seeds=(3, 4, 5))
    flipped = run("flipped", {"lora": 0.5, "frozen": 3.0, "full": 0.5})
    tied = run("tied", {"lora": 1.0, "frozen": 1.0, "full": 1.0})
    short = run("short", {"lora": 3.0, "frozen": 0.5, "full": 3.0}, seeds=(0,))
    outcomes = {
        name: check(stated, store, store.records("s"))[0].outcome
        for name, store in (("rerun", rerun), ("flipped", flipped), ("tied", tied), ("short", short))
    }
    assert outcomes == {"rerun": HOLDS, "flipped": REVERSED, "tied": NOT_SIGNIFICANT, "short": UNTESTED}

    assert main(["claims", "--suite", "s", "--results", str(tmp_path / "first")]) == 0
    out = capsys.readouterr().out
    assert "1 claims" in out and "beats frozen by accuracy +" in out
    args = ["claims", "--suite", "s", "--results", str(tmp_path / "first"), "--against"]
    assert main([*args, str(tmp_path / "rerun")]) == 0
    assert "1 of 1 claims hold" in capsys.readouterr().out
    assert main([*args, str(tmp_path / "flipped")]) == 1
    assert "reversed" in capsys.readouterr().out
    assert main([*args, str(tmp_path / "nothing")]) == 2
    assert "no folder" in capsys.readouterr().err


def test_claims_against_a_rerun_with_other_seeds_read_its_seeds_as_the_suites_cells(tmp_path, capsys):
    """A rerun at other seeds of the same cells is the suite's cells (more seeds of a suite cell are its cells), read
    with the first run's suite file or its own."""
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, 400)
    text = (
        'description = "d"\nseeds = {seeds}\n'
        '[[matrix]]\ntasks = ["glue-sst2"]\nmethods = ["lora", "frozen"]\nbudgets = [64]\n'
    )
    for folder, seeds in (("a", (0, 1, 2)), ("b", (3, 4, 5))):
        (tmp_path / f"{folder}-suite").mkdir()
        (tmp_path / f"{folder}-suite" / "s.toml").write_text(text.format(seeds=list(seeds)))
        store = Store(tmp_path / folder)
        for seed in seeds:
            _write(store, "glue-sst2", "lora", 64, seed, _logits(rng, y, 3.0), y)
            _write(store, "glue-sst2", "frozen", 64, seed, _logits(rng, y, 0.3), y)
    args = ["claims", "--suite", str(tmp_path / "a-suite" / "s.toml"), "--results", str(tmp_path / "a")]
    assert main([*args, "--against", str(tmp_path / "b")]) == 0, "b's seeds are a's cells at other seeds"
    assert "1 of 1 claims hold" in capsys.readouterr().out
    assert main([*args, "--against", str(tmp_path / "b"), "--against-suite", str(tmp_path / "b-suite" / "s.toml")]) == 0
    assert "1 of 1 claims hold" in capsys.readouterr().out


def test_a_seedless_methods_one_record_pairs_with_every_seed_of_the_other(tmp_path, monkeypatch):
    """A method that declares itself seedless (no registered one does since zeroshot draws its phrasing) needs one
    record, which is paired with every seed of the method it is compared with."""
    from methods.fewshot import ZeroShot

    monkeypatch.setattr(ZeroShot, "seedless", True)
    store = Store(tmp_path)
    rng = np.random.default_rng(13)
    y = rng.integers(0, 2, 400)
    zero = [_write(store, "glue-sst2", "zeroshot", 64, 0, _logits(rng, y, 0.2), y)]
    lora = [_write(store, "glue-sst2", "lora", 64, seed, _logits(rng, y, 3.0), y) for seed in (3, 4, 5)]
    assert stats.min_seeds("zeroshot") == 1 and stats.min_seeds("lora") == 3
    paired = pairing.pair_predictions(store, lora, zero)
    assert paired.seeds == (3, 4, 5) and all(np.array_equal(o, paired.outputs_b[0]) for o in paired.outputs_b)
    d = {x.budget: x for x in decision_map(store, store.records("s"))}[64]
    assert d.best == "lora" and d.worse == ("zeroshot",) and not d.excluded
    one_full = [_write(store, "glue-sst2", "full", 64, 0, _logits(rng, y, 3.0), y)]
    with pytest.raises(ValueError, match="no seed in common"):
        pairing.pair_predictions(store, one_full, lora)  # only a seedless side is replicated


def test_still_improving_marks_runs_whose_best_pass_was_their_last_and_that_patience_did_not_stop(tmp_path, capsys):
    from bench.core.record import Selection

    def sel(best, stopped_by, last=64):
        history = [{"step": s, "val/accuracy": 0.5} for s in range(16, last + 1, 16)]
        return Selection(on="val/accuracy", best_step=best, history=history, stopped_by=stopped_by, stopped_at=last)

    assert fl.still_improving(_with(sel(64, "cap")))
    assert fl.still_improving(_with(sel(64, "schedule end")))
    assert not fl.still_improving(_with(sel(32, "cap"))), "the best pass was earlier: it had stopped improving"
    assert not fl.still_improving(_with(sel(16, "patience", last=48)))
    assert not fl.still_improving(_with(None)), "no selection (methods that do not train)"

    store = Store(tmp_path)
    rng = np.random.default_rng(14)
    y = rng.integers(0, 2, 300)
    for seed in range(3):
        r = _write(store, "glue-sst2", "lora", 64, seed, _logits(rng, y, 2.0), y)
        r.selection = sel(64 if seed < 2 else 32, "cap")
        store.write(r)
    assert main(["summary", "--results", str(tmp_path), "--suite", "s"]) == 0
    out = capsys.readouterr().out
    assert "still-improving 2/3" in out and "still-improving k/n = in k of n seeds" in out


def _with(selection):
    res = resolve(Cell("glue-sst2", "lora", 64, 0, suite="s"))
    r = new_record(res, "ok")
    r.selection = selection
    return r


# ------------------------------------------------------------------ seeds that differ between the two methods
def test_fewshot_draws_are_compared_with_three_trained_seeds_unpaired_and_ranked(tmp_path):
    store = Store(tmp_path)
    rng = np.random.default_rng(12)
    y = rng.integers(0, 2, 600)
    shots = [_write(store, "glue-sst2", "fewshot", 64, s, _logits(rng, y, 3.0), y) for s in range(5)]
    lora = [_write(store, "glue-sst2", "lora", 64, s, _logits(rng, y, 0.5), y) for s in range(3)]
    d = pairing.compare_records(store, shots, lora, "accuracy")
    assert (d.n_seeds, d.n_seeds_b) == (5, 3) and d.outcome() == BETTER
    # three draws of fewshot: the 3 common seeds are paired, and the seed rule refuses them (5 draws needed)
    few = pairing.compare_records(store, shots[:3], lora, "accuracy")
    assert few.seeds_paired and few.n_seeds == 3 and not stats.enough_seeds("fewshot", few.n_seeds)
    # enough common seeds: pairing by seed is kept
    assert pairing.compare_records(store, lora, shots[:3], "accuracy").seeds_paired
    # fewshot does not train, so it has no validation score to be chosen by: the test set says it is better
    d = decision_map(store, store.records("s"))[0]
    assert d.best == "lora" and d.better == ("fewshot",)


def test_seed_intervals_of_a_bounded_metric_stay_in_its_range():
    wide = stats.seed_summary([0.99, 0.70, 1.0], "test/accuracy")
    assert wide.high == 1.0 and wide.low < 0.99 and wide.mean == pytest.approx(0.8967, abs=1e-4)
    assert stats.seed_summary([0.99, 0.70, 1.0]).high > 1.0, "no metric named: the plain t-interval"
    assert stats.seed_summary([-0.9, -0.2, -1.0], "mcc").low == -1.0
    assert stats.seed_summary([5.0, 9.0, 30.0], "perplexity").high > 30.0, "unbounded metrics are left alone"


def test_a_domain_shift_gap_may_be_negative_and_is_not_clipped_at_zero():
    """gap/<metric> is in-domain minus out-of-domain: its interval spans [lo - hi, hi - lo], so a shift that helps
    (a negative gap) keeps its interval."""
    gap = stats.seed_summary([-0.05, 0.02, -0.08], "gap/accuracy")
    assert gap.low < -0.05 and gap.high > 0.0, "the interval of a gap reaches below zero"
    assert stats.seed_summary([-0.5, 0.99, 0.9], "gap/auroc").low > -1.0 - 1e-12, "still inside [-1, 1]"
    assert metrics.metric_range("gap/accuracy") == (-1.0, 1.0) and metrics.metric_range("test/mcc") == (-1.0, 1.0)
