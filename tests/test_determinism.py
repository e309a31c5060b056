"""Same cell, same seed, same machine: identical metrics and identical per-example outputs; another seed changes
the training subset, the initialisation and the data order (so its outputs differ). In process on tiny models
built from a config (the forgetting probe is stubbed: not what this checks).
Run: `.venv/bin/python -m pytest tests/test_determinism.py -q`."""

from __future__ import annotations

import numpy as np
import pytest

from bench.catalog import resolve
from bench.core.api import Cell


@pytest.mark.parametrize(
    "task, method, backbone, size",
    [
        ("pneumonia-mnist", "lora", "tiny-timm", {"image_size": 32}),
        ("glue-sst2", "full", "tiny-hf", {"max_len": 32}),
    ],
)
def test_a_cell_rerun_with_its_seed_gives_identical_results_and_another_seed_does_not(
    tiny_backbones, data, monkeypatch, tmp_path, task, method, backbone, size
):
    import bench.run.forgetting
    from bench.run.cell import execute

    monkeypatch.setattr(bench.run.forgetting, "run_probe", lambda *args, **kwargs: (0.5, False))
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))
    settings = {"backbone": tiny_backbones[backbone], "eval_limit": 48, "min_steps": 6, "epochs": 1, **size}
    if task == "glue-sst2":  # the shipped suites' settings: validation inside the budget, token-length batches
        settings.update(validation="budget", length_unit="tokens")

    def run(seed: int):
        return execute(resolve(Cell(task, method, 32, seed, settings)), data, "cpu")

    first, again, other = run(0), run(0), run(1)
    assert first.metrics == again.metrics
    np.testing.assert_array_equal(first.arrays["test"]["outputs"], again.arrays["test"]["outputs"])
    assert first.selection.history == again.selection.history
    assert not np.array_equal(first.arrays["test"]["outputs"], other.arrays["test"]["outputs"]), "the seed matters"
