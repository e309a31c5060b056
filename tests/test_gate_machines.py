"""The gate's same-seed rule and the machine class (issue 24): one seed is one number on one machine class only.

Same cell, seed and machine class: a drop beyond the metric's margin fails ("same seed, same machine class, different
result"); another class, or one not recorded: the seed-spread rule, and the text says so and names both classes; a
cell whose same key and seed moved across machines is listed as machine-sensitive. The class itself
(``bench.run.meters.machine_class``) is stable on one machine and moves with a float instruction set.
Run: `.venv/bin/python -m pytest tests/test_gate_machines.py -q`."""

from __future__ import annotations

import copy

import pytest

from bench.analysis.gate import OTHER, PRIMARY, SAME, UNKNOWN, compare, machine_relation
from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import Env, SplitSizes, new_record
from bench.report.gate_text import report_text
from bench.run import meters

CLASS_A = "cpu AMD EPYC (family 25 model 17); isa avx avx2 avx512f fma; kernels AVX512; torch 2.4.1; threads 2"
CLASS_B = "cpu AMD EPYC (family 25 model 1); isa avx avx2 fma; kernels AVX2; torch 2.4.1; threads 2"
AUROC = (0.633, 0.60, 0.66)  # the baseline's seeds 0, 1, 2: sd 0.03, so the seed-spread tolerance is about 0.09


def _record(seed: int, auroc: float, env: Env | None, method: str = "scratch"):
    cell = Cell("pneumonia-mnist", method, 64, seed, {"eval_limit": 128, "extra_probes": False}, suite="proxy")
    record = new_record(resolve(cell), "ok")
    record.metrics = {"test/auroc": auroc}
    record.splits = SplitSizes(train=51, val=13, test=128)
    record.env = copy.deepcopy(env)
    return record


def _runs(base_env: Env | None, cand_env: Env | None, seed0: float):
    """The baseline at seeds 0-2 and a candidate at seed 0 (the same key: same code and settings) with ``seed0``."""
    base = [_record(s, v, base_env) for s, v in enumerate(AUROC)]
    return base, [_record(0, seed0, cand_env)]


def _row(result):
    (row,) = result.rows
    return row


def test_same_key_and_machine_class_with_another_result_is_a_regression():
    base, cand = _runs(Env(machine_class=CLASS_A), Env(machine_class=CLASS_A), 0.60)  # -0.033, within 3 sd
    row = _row(compare(base, cand))
    assert row.machine == SAME and row.moved[PRIMARY].same_machine and row.moved[PRIMARY].tolerance == 0.01
    assert row.failed and "same seed, same machine class, different result: 0.633 -> 0.600" in row.failures[0].text
    text = report_text(compare(base, cand), "b", "c")
    assert "held to the metric's margin (same seed and machine class" in text and "1 of 1 cell with" in text
    # the same drop with the spread rule (classes unknown) passes: the tight rule is what catches it
    assert not _row(compare(*_runs(None, None, 0.60))).failed


def test_same_machine_class_reproducing_passes_and_a_rise_is_noted_not_failed():
    base, cand = _runs(Env(machine_class=CLASS_A), Env(machine_class=CLASS_A), 0.633)
    assert not _row(compare(base, cand)).failed and _row(compare(base, cand)).notes == []
    row = _row(compare(*_runs(Env(machine_class=CLASS_A), Env(machine_class=CLASS_A), 0.70)))
    assert not row.failed and any("different result" in n and "not a failure" in n for n in row.notes)
    row = _row(compare(*_runs(Env(machine_class=CLASS_A), Env(machine_class=CLASS_A), 0.635)))
    assert not row.failed and any("not bit-for-bit deterministic" in n for n in row.notes), "within the margin"


def test_another_machine_class_keeps_the_spread_rule_names_both_classes_and_flags_the_cell_machine_sensitive():
    base, cand = _runs(Env(machine_class=CLASS_A), Env(machine_class=CLASS_B), 0.60)
    result = compare(base, cand)
    row = _row(result)
    assert row.machine == OTHER and not row.moved[PRIMARY].same_machine and not row.failed
    assert row.moved[PRIMARY].tolerance > 0.05, "k seed sds, not the margin"
    assert row.sensitive == "0.633 -> 0.600 at seed 0"
    text = report_text(result, "b", "c")
    assert "same-seed equality not checked, the machine class differs, in 1 cell (" in text
    assert CLASS_A in text and CLASS_B in text, "both classes named"
    assert "isa avx avx2 avx512f fma -> isa avx avx2 fma" in text and "kernels AVX512 -> kernels AVX2" in text
    assert "threads" not in text.split("they differ in:")[1].splitlines()[0], "only the parts that differ"
    assert "machine-sensitive in these records (1 cell:" in text and "pneumonia-mnist x scratch @64" in text
    # the same two classes with an unchanged number: nothing machine-sensitive is claimed
    unchanged = compare(*_runs(Env(machine_class=CLASS_A), Env(machine_class=CLASS_B), 0.633))
    assert not _row(unchanged).sensitive and "machine-sensitive" not in report_text(unchanged, "b", "c")


def test_records_without_a_machine_class_are_gated_as_before_and_the_text_says_so():
    for base_env, cand_env in ((None, None), (Env(cpu_model="AMD EPYC"), Env(machine_class=CLASS_A))):
        for value, fails in ((0.60, False), (0.40, True)):  # 3 sd of 0.03 = 0.09: a 0.233 drop fails as before
            base, cand = _runs(base_env, cand_env, value)
            row = _row(compare(base, cand))
            assert row.machine == UNKNOWN and not row.moved[PRIMARY].same_machine and row.failed is fails
    text = report_text(compare(*_runs(Env(cpu_model="AMD EPYC"), Env(machine_class=CLASS_A), 0.60)), "b", "c")
    assert "a machine class is not recorded, in 1 cell (" in text and "baseline class not recorded" in text
    assert CLASS_A in text and "held to the metric's margin" in text and "0 of 1 cell with" in text


def test_old_records_of_one_machine_hash_are_one_class_and_libraries_split_a_class():
    old = Env(machine="bc4f91221117c677")
    assert machine_relation(_record(0, 0.6, old), _record(0, 0.6, old)) == SAME
    assert machine_relation(_record(0, 0.6, old), _record(0, 0.6, Env(machine="other"))) == OTHER
    a, b = Env(machine_class=CLASS_A, timm="1.0.9"), Env(machine_class=CLASS_A, timm="1.0.11")
    assert machine_relation(_record(0, 0.6, a), _record(0, 0.6, b)) == OTHER
    text = report_text(compare(*_runs(a, b, 0.633)), "b", "c")
    assert "they differ in: timm 1.0.9 -> timm 1.0.11" in text


@pytest.fixture
def cpu(monkeypatch):
    """A fake /proc/cpuinfo: model, ids and flags, which ``machine_class`` reads."""
    state = {"flags": "fpu sse2 avx avx2 fma hypervisor md_clear avx512f"}
    monkeypatch.setattr(meters, "cpu_model", lambda: "AMD EPYC")
    monkeypatch.setattr(meters, "cpu_ids", lambda: "family 25 model 17")
    monkeypatch.setattr(meters, "cpu_flags", lambda: " ".join(sorted(state["flags"].split())))
    return state


def test_the_machine_class_is_stable_on_one_machine_and_moves_with_a_float_instruction_set(cpu):
    one = meters.machine_class("cpu", 2)
    assert one == meters.machine_class("cpu", 2) and one.startswith("cpu AMD EPYC (family 25 model 17); ")
    assert "isa avx avx2 avx512f fma;" in one and "threads 2" in one and "torch " in one and "kernels " in one
    cpu["flags"] = "fpu sse2 avx avx2 fma hypervisor avx512f"  # a mitigation flag gone: same arithmetic
    assert meters.machine_class("cpu", 2) == one
    cpu["flags"] = "fpu sse2 avx avx2 fma hypervisor md_clear"  # no AVX-512: other kernels
    assert meters.machine_class("cpu", 2) != one and "isa avx avx2 fma;" in meters.machine_class("cpu", 2)
    assert meters.machine_class("cpu", 1) != meters.machine_class("cpu", 2), "threads split the sums differently"


def test_every_new_record_carries_its_machine_class():
    env = Env(**meters.environment("cpu", 2))
    assert env.machine_class == meters.machine_class("cpu", 2) and env.machine
    assert Env.from_json(env.to_json()).machine_class == env.machine_class
    assert Env.from_json({"machine": "x"}).machine_class is None, "older records: unknown"


def test_on_a_gpu_the_class_names_the_gpu_its_compute_capability_cuda_and_cudnn(cpu, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    gpu = meters.machine_class("cuda", 2)
    assert "; gpu NVIDIA H100 80GB HBM3 (sm 9.0); cuda " in gpu and gpu.endswith("; cudnn 90100")
    assert gpu.startswith(meters.machine_class("cpu", 2)), "the CPU's part too (a run's CPU work)"
