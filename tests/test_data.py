"""Data root: checksums, clear errors, budget subsets. Run: `.venv/bin/python -m pytest tests/test_data.py -q`."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bench.core.data import DataError, DataRoot, nested_subset, pinned_sums


def test_every_pinned_file_of_the_mirror_verifies(data):
    rows = dict(data.verify_all())
    assert rows["vision/medmnist/pneumoniamnist.npz"] == "ok"
    assert rows["nlp/glue/SST-2/train.tsv"] == "ok"
    assert "MISMATCH" not in rows.values()


def test_a_corrupt_file_is_refused_with_the_file_and_the_fix(data, tmp_path):
    rel = "nlp/glue/SST-2/dev.tsv"
    target = tmp_path / rel
    target.parent.mkdir(parents=True)
    shutil.copy(data.path / rel, target)
    with target.open("a") as f:
        f.write("tampered\t1\n")
    with pytest.raises(DataError, match=r"SST-2/dev.tsv fails its checksum.*Fix: replace it"):
        DataRoot(tmp_path).file(rel)


def test_a_missing_file_offline_names_the_file_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    with pytest.raises(DataError, match=r"pneumoniamnist.npz is not available offline.*offline mode.*zenodo"):
        DataRoot(tmp_path).file("vision/medmnist/pneumoniamnist.npz")


def test_checksums_are_pinned_for_the_foundation_files():
    sums = pinned_sums()
    for rel in (
        "vision/medmnist/pneumoniamnist.npz",
        "nlp/glue/SST-2/train.tsv",
        "vision/imagenet_sample/imagenet_sample1000_224.tar",
        "nlp/glue/STS-B/dev.tsv",
    ):
        assert len(sums[rel]) == 64


def test_nested_subset_is_nested_deterministic_and_stratified():
    labels = np.array([0] * 900 + [1] * 100)
    small, big = nested_subset(labels, 50, seed=3), nested_subset(labels, 400, seed=3)
    assert set(small) < set(big)
    assert np.array_equal(small, nested_subset(labels, 50, seed=3))
    assert not np.array_equal(small, nested_subset(labels, 50, seed=4))
    assert abs(labels[small].mean() - 0.1) <= 0.02 and abs(labels[big].mean() - 0.1) <= 0.01
    assert set(labels[nested_subset(labels, 2, seed=0)]) == {0, 1}, "every class appears as early as possible"


def test_invalid_budget_is_a_clear_error():
    with pytest.raises(ValueError, match="Invalid budget"):
        nested_subset(np.zeros(10), 11, seed=0)


def test_probe_files_have_a_publisher_source_too(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    with pytest.raises(
        DataError, match=r"imagenet_sample1000_224.tar is not available offline.*imagenet-sample-images"
    ):
        DataRoot(tmp_path).file("vision/imagenet_sample/imagenet_sample1000_224.tar")
    with pytest.raises(DataError, match=r"STS-B/dev.tsv is not available offline.*nyu-mll/glue"):
        DataRoot(tmp_path).file("nlp/glue/STS-B/dev.tsv")


def test_eval_limit_cuts_val_and_test_to_the_same_stratified_subset_for_every_cell(data):
    from bench.catalog import TASKS

    task = TASKS.get("pneumonia-mnist")()
    full = task.splits(64, 0, data)
    cut = [task.splits(budget, seed, data).limit_eval(100, stratify=True) for budget, seed in ((64, 0), (256, 1))]
    assert len(cut[0].val) == len(cut[0].test) == 100 and len(cut[0].train) == 64
    for name in ("val", "test"):
        assert np.array_equal(getattr(cut[0], name).ids, getattr(cut[1], name).ids)  # budget and seed do not matter
        assert set(getattr(cut[0], name).ids) <= set(getattr(full, name).ids)
    share = full.test.labels.mean()
    assert abs(cut[0].test.labels.mean() - share) < 0.02  # class proportions kept
    assert full.limit_eval(0, stratify=True).test is full.test
