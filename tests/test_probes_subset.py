"""Forgetting probes that mean something: a probe_limit subset spread over classes / rows instead of the first
rows, and probes that read the task's own data marked not held out and left out of forgetting summaries.
Run: `.venv/bin/python -m pytest tests/test_probes_subset.py -q`."""

from __future__ import annotations

import numpy as np
import pytest

from bench.catalog import resolve
from bench.core.api import Cell, TrainConfig
from bench.probes import held_out, probe_rows


def test_a_spread_subset_covers_every_part_of_the_probe_and_first_keeps_the_old_rows():
    labels = np.repeat(np.arange(1000), 1)[np.random.default_rng(0).permutation(1000)]  # one image per class, shuffled
    rows = probe_rows(1000, 500, "spread", order=np.argsort(labels, kind="stable"))
    classes = np.sort(labels[rows])
    assert len(rows) == 500 and classes[0] == 0 and classes[-1] == 999, "from the first class id to the last"
    assert np.all(np.diff(classes) <= 3), "no stretch of class ids left out (first-500 stopped at id 499)"
    assert list(probe_rows(1000, 500, "first")) == list(range(500))
    assert list(probe_rows(10, 0, "spread")) == list(range(10)) == list(probe_rows(10, 50, "spread"))
    with pytest.raises(ValueError, match="probe_subset"):
        probe_rows(10, 5, "random")


def test_probe_subset_is_a_checked_setting_keyed_only_when_set():
    with pytest.raises(ValueError, match="probe_subset"):
        TrainConfig(probe_subset="last")
    assert "probe_subset" in TrainConfig.KEYED_ONLY_WHEN_SET, "added later: old records' keys must not change"
    base = resolve(Cell("glue-sst2", "lora", 64, 0))
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"probe_subset": "first"})).key == base.key
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"probe_subset": "spread"})).key != base.key


def test_a_probe_on_the_tasks_own_data_is_marked_not_held_out(monkeypatch):
    import bench.run.forgetting
    from bench.run.forgetting import probe_forgetting

    assert not held_out("stsb-spearman", "glue-stsb") and not held_out("cifar10-linear", "shift-cifar10-to-cifar10c")
    assert held_out("stsb-spearman", "glue-sst2") and held_out("imagenet-top1", "pneumonia-mnist")
    asked = []

    def fake(name, loaded, data, device, limit=0, digests=None, fingerprint=None, subset="first"):
        asked.append(subset)
        return 0.5, False

    monkeypatch.setattr(bench.run.forgetting, "run_probe", fake)
    cfg = TrainConfig(probe_limit=100, probe_subset="spread")
    own = probe_forgetting("stsb-spearman", 0.9, False, True, None, None, "cpu", cfg, None, "glue-stsb")
    assert own.held_out is False and "not held out" in own.note and own.subset == "spread" and asked == ["spread"]
    other = probe_forgetting("stsb-spearman", 0.9, False, True, None, None, "cpu", cfg, None, "glue-sst2")
    assert other.held_out is None and other.note is None and other.drop == pytest.approx(0.4)
    assert "held_out" not in other.to_json(), "only a probe that is not held out says so"


def test_summaries_leave_a_probe_on_the_tasks_own_data_out():
    from bench.analysis.tables import tables
    from bench.core.record import Cost, Forgetting, Params, new_record
    from bench.core.store import Store

    records = []
    for task in ("glue-stsb", "glue-sst2"):
        r = new_record(resolve(Cell(task, "lora", 64, 0, suite="s")), "ok", None)
        r.metrics = {"test/pearson": 0.2, "test/accuracy": 0.7}
        r.forgetting = Forgetting("stsb-spearman", 0.9, 0.3, 0.6, True)
        r.cost, r.params = Cost(wall_time_s=1.0, peak_mem_bytes=1), Params(total=10, trainable=1, trainable_no_head=0)
        records.append(r)
    rows = {task: rows[0] for task, rows in tables(Store(), records, labels_from_data=False).items()}
    assert rows["glue-stsb"].forgetting is None and rows["glue-stsb"].probe_held_out is False
    assert rows["glue-sst2"].forgetting is not None and rows["glue-sst2"].probe_held_out is True
