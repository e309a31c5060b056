"""Published anchors: verdicts, setup differences, the shipped MedMNIST v2 values, the CLI.
Run: `.venv/bin/python -m pytest tests/test_references.py -q`."""

from __future__ import annotations

import math

import pytest

from bench.analysis.references import compare, load_references, references_text, verdict
from bench.analysis.stats import Interval
from bench.catalog import resolve
from bench.cli import main
from bench.core.api import Cell
from bench.core.record import Cost, new_record
from bench.core.store import Store


def _records(task: str, method: str, aurocs: list[float], budget: int = 0, settings: dict | None = None):
    out = []
    for seed, a in enumerate(aurocs):
        cell = Cell(task, method, budget, seed, {"validation": "oracle", **(settings or {})}, suite="anchors")
        r = new_record(resolve(cell), "ok")
        r.metrics = {"test/auroc": a, "test/accuracy": a - 0.1}
        r.cost = Cost(device="cpu", epochs=1.6)
        out.append(r)
    return out


def test_the_shipped_references_are_cited_and_hold_the_published_medmnist_values():
    refs = {(r.task, r.model): r for r in load_references()}
    pneumonia, breast = refs["pneumonia-mnist", "ResNet-18 (28)"], refs["breast-mnist", "ResNet-18 (28)"]
    assert pneumonia.scores == {"auroc": 0.944, "accuracy": 0.854} and "MedMNIST v2" in pneumonia.citation
    assert breast.scores == {"auroc": 0.901, "accuracy": 0.863}
    assert pneumonia.setup["pretrained"] is False and pneumonia.setup["image_size"] == 28


def test_verdicts_read_the_interval_first_then_the_band():
    assert verdict(Interval(0.93, 0.92, 0.95, 3), 0.944, 0.02) == "reproduced"
    assert verdict(Interval(0.93, 0.925, 0.935, 3), 0.944, 0.02) == "within band", "outside the interval, in the band"
    assert verdict(Interval(0.90, 0.89, 0.91, 3), 0.944, 0.02) == "below"
    assert verdict(Interval(0.99, 0.98, 1.0, 3), 0.944, 0.02) == "above"
    assert verdict(Interval(0.944, math.nan, math.nan, 1), 0.944, 0.02) == "within band", "one seed: no interval"
    assert verdict(Interval(math.nan, math.nan, math.nan, 0), 0.944, 0.02) == "no score"
    # an interval wider than the band holds the published value without telling anything (2 seeds, far apart)
    assert verdict(Interval(0.90, 0.78, 1.02, 2), 0.944, 0.02) == "inconclusive"
    assert verdict(Interval(0.95, 0.83, 1.07, 2), 0.944, 0.02) == "within band", "its mean is close, all the same"


def test_matching_cells_are_whole_training_set_records_grouped_by_method_with_their_differences():
    records = [
        *_records("pneumonia-mnist", "scratch", [0.938, 0.942, 0.94]),
        *_records("pneumonia-mnist", "full", [0.97, 0.975, 0.98]),
        *_records("pneumonia-mnist", "full", [0.5, 0.5, 0.5], budget=64),  # a budget cell: not an anchor
    ]
    ref = [r for r in load_references() if r.task == "pneumonia-mnist" and r.model == "ResNet-18 (28)"]
    by = {(c.method, c.metric): c for c in compare(records, ref)}
    assert set(by) == {(m, k) for m in ("scratch", "full") for k in ("auroc", "accuracy")}
    scratch, full = by["scratch", "auroc"], by["full", "auroc"]
    assert scratch.verdict == "within SE" and scratch.ours.n == 3 and scratch.ours.mean == pytest.approx(0.94)
    assert full.verdict == "above"
    assert "initialisation (ImageNet-pretrained here, random there)" in full.differences
    assert not any("initialisation" in d for d in scratch.differences), "scratch is randomly initialised too"
    assert "image size (64 here, 28 there)" in scratch.differences
    assert "backbone (efficientnet-lite0 here, medmnist-resnet18 there)" in scratch.differences
    assert scratch.other_model and "a different model" in scratch.describe()
    assert "epochs (1.6 here, 100 there)" in scratch.differences
    assert not any(d.startswith("selection") for d in scratch.differences), "both select on the official val set"
    text = references_text(records, ref)
    assert "pneumonia-mnist auroc: scratch (efficientnet-lite0 @64px) 0.940 ± 0.0" in text and "within SE" in text
    assert "MedMNIST v2" in text


def test_a_bad_reference_file_names_its_problem(tmp_path):
    (tmp_path / "x.toml").write_text('[[reference]]\ntask = "pneumonia-mnist"\n')
    with pytest.raises(ValueError, match="citation"):
        load_references(tmp_path)
    (tmp_path / "x.toml").write_text('citation = "c"\n[[reference]]\ntask = "pneumonia-mnist"\nmodel = "m"\n')
    with pytest.raises(ValueError, match=r"x.toml, reference 1: missing band, scores, setup"):
        load_references(tmp_path)


def test_the_cli_says_what_to_run_when_no_anchor_cell_exists(tmp_path, capsys):
    store = Store(tmp_path)
    for r in _records("breast-mnist", "full", [0.88, 0.9, 0.89]):
        store.write(r)
    assert main(["references", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pneumonia-mnist: no whole-training-set cell; run `adaptbench grid --suite anchors`" in out
    assert "breast-mnist auroc: full (efficientnet-lite0 @64px) 0.890" in out
    assert main(["references", "--results", str(tmp_path), "--suite", "nope"]) == 2
    assert "no folder" in capsys.readouterr().err


def test_standard_errors_on_both_sides_come_from_the_test_sets_class_counts_and_the_seeds():
    from bench.analysis.references import test_se

    # Hanley and McNeil (1982) for AUROC 0.944 on 390 positives and 234 negatives; binomial for accuracy
    assert test_se("auroc", 0.944, (234, 390)) == pytest.approx(0.00884, abs=2e-4)
    assert test_se("accuracy", 0.854, (234, 390)) == pytest.approx(math.sqrt(0.854 * 0.146 / 624))
    assert math.isnan(test_se("auroc", 0.9, ())) and math.isnan(test_se("mcc", 0.5, (10, 10)))
    ref = [r for r in load_references() if r.task == "breast-mnist" and r.model == "ResNet-18 (28)"]
    assert ref[0].test_counts == (42, 114)
    recipe = {"backbone": "medmnist-resnet18", "image_size": 28}
    close = compare(_records("breast-mnist", "scratch", [0.89, 0.90, 0.88], settings=recipe), ref)
    auroc = next(c for c in close if c.metric == "auroc")
    assert auroc.verdict == "reproduced" and not auroc.other_model and abs(auroc.z) < 1.96
    assert auroc.se_published > test_se("auroc", 0.901, (42, 114)), "one run's seed spread is added to theirs"
    far = compare(_records("breast-mnist", "scratch", [0.80, 0.81, 0.79], settings=recipe), ref)
    assert next(c for c in far if c.metric == "auroc").verdict == "below"


def test_epochs_are_passes_over_the_data_with_a_partial_last_batch():
    """MedMNIST's BreastMNIST: 546 images in batches of 128 are 5 steps an epoch, so 500 steps are 100 epochs (the
    records' own ``epochs`` of older code counted 500 x 128 / 546 = 117.2)."""
    from bench.analysis.references import our_setup
    from bench.core.record import SplitSizes

    (record,) = _records("breast-mnist", "scratch", [0.9], settings={"batch_size": 128})
    record.cost = Cost(device="cpu", epochs=117.2, steps=500)
    record.splits = SplitSizes(train=546, val=78, test=156)
    assert our_setup(record)["epochs"] == 100.0
