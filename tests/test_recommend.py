"""`adaptbench recommend` and `export`: the pieces on tiny inputs (fast), and the whole path on data from the mirror
(slow): a CSV text dataset and an image folder, neither registered, run through recommend within the time asked; the
records, the report and the exported model, which loads with from_pretrained and reproduces the record's score."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from bench import catalog
from bench.core.data import default_root
from bench.core.record import Cost, Params, Record
from bench.recommend import Constraints, learning_curve, parse_size, parse_time, suite_text
from bench.suite import load_suite
from tasks import declared


@pytest.fixture(autouse=True)
def _forget():
    yield
    declared.forget_all()


def test_time_and_size_parsing():
    assert parse_time("30m") == 1800 and parse_time("1h30m") == 5400 and parse_time("90s") == 90
    assert parse_time("45") == 2700
    with pytest.raises(ValueError, match="30m"):
        parse_time("soon")
    assert parse_size("8G") == 8 * 2**30 and parse_size("512M") == 512 * 2**20 and parse_size("2") == 2 * 2**30


def test_learning_curve_recovers_a_known_log_linear_curve():
    """Truth: score = 0.5 + 0.05 ln(n), seed noise 0.005; the target 0.85 is reached at n = e^7 = 1097 labels."""
    rng = np.random.default_rng(1)
    points = {n: list(0.5 + 0.05 * math.log(n) + rng.normal(0, 0.005, 5)) for n in (64, 128, 256)}
    curve = learning_curve("lora", points, 0.85, +1.0)
    assert curve.labels == pytest.approx(1097, rel=0.25)
    assert curve.interval[0] < 1097 < curve.interval[1]
    assert "x the largest budget measured (256); unreliable" in curve.note  # ~4.3x: past the 4x line
    assert learning_curve("lora", points, 0.7, +1.0).reached_at == 64  # measured, not extrapolated
    flat = learning_curve("frozen", {64: [0.6, 0.61], 256: [0.6, 0.59]}, 0.9, +1.0)
    assert flat.labels is None or not math.isfinite(flat.labels)
    assert "does not rise" in flat.note or flat.labels is None


def test_constraints_rule_out_by_measured_memory_latency_and_size():
    def rec(method, peak, rate, adapter):
        r = Record("k", "s", "", "ok", "t", 1, method, 1, "b", 64, 0, {"train": {"eval_batch_size": 128}})
        r.cost = Cost(peak_mem_bytes=peak, eval_samples_per_s=rate)
        r.params = Params(total=100, trainable=10, trainable_no_head=8, adapter_bytes=adapter)
        return r

    records = [rec("full", 6 * 2**30, 90, 90 * 2**20), rec("lora", 2 * 2**30, 80, 2**20), rec("fewshot", 2**30, 8, 0)]
    out = Constraints(max_memory_bytes=4 * 2**30, max_latency_ms=50, max_adapter_mb=10).ruled_out(records)
    assert set(out) == {"full", "fewshot"}
    assert "peak memory 6.00 GiB" in out["full"] and "125.0 ms" in out["fewshot"]
    assert "adapter 90.0 MiB" in Constraints(max_adapter_mb=10).ruled_out(records)["full"]


def test_the_recommend_suite_loads_with_the_default_protocol(tmp_path):
    rows = ["text,label"] + [f"t{i} {'good' if i % 2 else 'bad'},{i % 2}" for i in range(300)]
    (tmp_path / "d.csv").write_text("\n".join(rows))
    decl = tmp_path / "d.toml"
    decl.write_text(f'name = "d"\nsource = "{tmp_path / "d.csv"}"\n')
    path = tmp_path / "recommend.toml"
    path.write_text(suite_text(decl, "d", "text", ["frozen", "lora"], [64, 256], 20))
    suite = load_suite(str(path))
    assert suite.adaptive.minutes == 20 and {c.task for c in suite.cells} == {"d"}
    lora64 = next(c for c in suite.cells if c.method == "lora" and c.budget == 64)
    assert lora64.overrides["cv_folds"] == 3 and lora64.overrides["tune"] == {"lr": [3e-4, 1e-3, 3e-3]}
    assert len(suite.cells) == 12


# ------------------------------------------------------------------------------------------------- end to end
def _airline(tmp_path: Path) -> Path:
    source = default_root() / "nlp/domain/bert-AAD-extra/airline/airline.csv"
    if not source.exists():
        pytest.skip("the data mirror's airline CSV is not here")
    decl = tmp_path / "airline.toml"
    decl.write_text(
        f'name = "airline-reviews"\nsource = "{source}"\ntext = "reviews"\nlabel = "labels"\n'
        'label_names = ["negative", "positive"]\nmax_len = 64\n'
    )
    return decl


def _breast_pngs(tmp_path: Path) -> Path:
    from PIL import Image

    source = default_root() / "vision/medmnist/breastmnist.npz"
    if not source.exists():
        pytest.skip("the data mirror's BreastMNIST is not here")
    root = tmp_path / "breast-scans"
    with np.load(source) as z:
        for split in ("train", "val", "test"):
            for i, (x, y) in enumerate(zip(z[f"{split}_images"], z[f"{split}_labels"].reshape(-1), strict=True)):
                folder = root / ("malignant" if y == 0 else "benign-or-normal")
                folder.mkdir(parents=True, exist_ok=True)
                Image.fromarray(x).save(folder / f"{split}-{i:04d}.png")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["csv", "images"])
def test_recommend_end_to_end_then_export(tmp_path, kind, capsys):
    from bench.cli import main
    from bench.core.store import Store
    from bench.run.export import AdaptedModel

    task = str(_airline(tmp_path) if kind == "csv" else _breast_pngs(tmp_path))
    out = tmp_path / "rec"
    asked = 12 * 60
    start = time.perf_counter()
    code = main(
        ["recommend", "--task", task, "--budgets", "64", "--time", f"{asked}s", "--methods", "frozen,lora",
         "--out", str(out), "--jobs", "2", "--export"]
    )  # fmt: skip
    took = time.perf_counter() - start
    assert code == 0
    text = (out / "recommendation.md").read_text()
    assert "## Verdict per budget" in text and "**64 labels**" in text and "adaptbench grid --suite" in text
    assert (out / "report" / "index.html").exists()
    records = [r for r in Store(out / "results").records("recommend") if r.ok]
    assert {r.method for r in records} == {"frozen", "lora"} and all(r.dataset["fingerprint"] for r in records)
    print(f"recommend {kind}: {took:.0f} s of the {asked} s asked")  # a measurement for the notes, not a test
    model = AdaptedModel.from_pretrained(out / "model")
    config = model.config
    metric = f"test/{catalog.spec(config['task']).primary_metric}"
    assert model.evaluate()[metric.split("/")[1]] == pytest.approx(config["metrics"][metric], abs=1e-6)
    assert "sha256" in (out / "model" / "README.md").read_text()
