"""``adaptbench plan`` and ``bench.run.plan``: estimates from a cell's own records (measured), from a model fitted on
other records, from FLOPs alone; the GPU table; totals with --jobs; the command line and ``grid --dry-run``. Fake
records on a tiny suite: nothing runs, nothing is timed."""

from __future__ import annotations

import math

import pytest

from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.record import Cost, Env, SplitSizes, new_record
from bench.core.store import Store
from bench.run import plan as P

PEAK = 1e11  # this machine's peak in every test: nothing is measured
SETTINGS = {"threads": 1, "batch_size": 16, "epochs": 100, "max_steps": 16, "eval_limit": 128}


@pytest.fixture(autouse=True)
def _no_measuring(monkeypatch):
    monkeypatch.setattr(P, "measured_peak", lambda threads: PEAK)
    monkeypatch.setattr(P, "this_machine", lambda threads: "here")


def _record(cell: Cell, wall: float, train_s: float = 10.0, steps: int = 16, machine: str = "here", **cost):
    res = resolve(cell)
    r = new_record(res, "ok")
    r.splits = SplitSizes(train=cell.budget, val=100, test=128)
    r.env = Env(machine=machine, threads=res.train.threads)
    fields = {
        "wall_time_s": wall,
        "train_time_s": train_s,
        "steps": steps,
        "fwd_flops_per_example": 1e8,
        "train_flops_per_example": 3e8,
        "eval_samples_per_s": 128.0,
        "machine_peak_flops_per_s": PEAK,
        "peak_mem_bytes": 1000 * P.MiB,
        "peak_mem_delta_bytes": 400 * P.MiB,
        "device": "cpu",
    }
    r.cost = Cost(**{**fields, **cost})
    return r


def _cell(method="full", seed=0, **settings) -> Cell:
    return Cell("pneumonia-mnist", method, 64, seed, {**SETTINGS, **settings}, suite="tiny")


def test_a_cells_own_records_are_a_lookup_any_seed():
    records = [_record(_cell(seed=0), wall=100.0), _record(_cell(seed=1), wall=140.0)]
    model = P.CostModel(records)
    for seed in (0, 1, 7):  # the identity leaves the seed (and the test half) out
        e = model.estimate(_cell(seed=seed))
        assert (e.basis, e.seconds) == ("measured", 120.0)
        assert e.peak_mem_bytes == 1000 * P.MiB
    assert model.estimate(_cell(seed=0, max_steps=32)).basis == "fitted"  # other settings: another cell
    assert P.CostModel(records, lookup=False).estimate(_cell(seed=0)).basis == "fitted"


def test_a_fitted_estimate_scales_with_training_flops():
    model = P.CostModel([_record(_cell(), wall=30.0, train_s=20.0)], lookup=False)
    short, long = model.estimate(_cell(max_steps=16)), model.estimate(_cell(max_steps=32))
    assert short.basis == long.basis == "fitted"
    assert long.train_flops == pytest.approx(2 * short.train_flops)
    assert long.parts["train"] == pytest.approx(2 * short.parts["train"])
    assert long.parts["overhead"] == pytest.approx(short.parts["overhead"])
    # the record's own shape is reproduced: 16 steps of 16 examples at 3e8 FLOPs in 20 s, and its other 9 s
    assert short.parts["train"] == pytest.approx(20.0)
    assert short.seconds == pytest.approx(30.0)


def test_records_of_another_machine_are_scaled_by_the_ratio_of_peaks():
    other = _record(_cell(), wall=30.0, train_s=20.0, machine="elsewhere", machine_peak_flops_per_s=PEAK / 2)
    e = P.CostModel([other], lookup=False).estimate(_cell())
    assert e.seconds == pytest.approx(15.0)  # this machine's peak is twice the record's


def test_without_records_the_estimate_is_flops_at_the_stated_utilisation():
    e = P.CostModel([]).estimate(_cell())
    assert e.basis == "flops" and "no records" in e.note
    train = e.train_flops / (P.PRIOR_UTILISATION["train"] * PEAK)
    assert e.parts["train"] == pytest.approx(train)
    assert e.parts["overhead"] == pytest.approx(P.PRIOR_OVERHEAD_S * 1e11 / PEAK)
    assert e.peak_mem_bytes and e.mem_basis == "parameters (estimate)"


def test_the_gpu_estimate_uses_the_table():
    records = [_record(_cell(), wall=30.0)]
    for precision, peak in (("fp32", P.GPUS["h100"].tf32), ("bf16", P.GPUS["h100"].bf16)):
        model = P.CostModel(records, gpu="h100", gpu_mfu=0.2)
        e = model.estimate(_cell(precision=precision))
        flops = e.train_flops + e.eval_flops
        assert e.gpu_seconds == pytest.approx(flops / (peak * 0.2) + e.steps * P.GPU_STEP_FLOOR_S + P.GPU_OVERHEAD_S)
        assert e.gpu_mem_bytes == 400 * P.MiB + P.CUDA_CONTEXT_BYTES


def test_expected_steps_follow_the_tuners_plan():
    cfg = {**P._TRAIN_DEFAULTS, "batch_size": 16, "epochs": 100, "max_steps": 30, "eval_every": 5}
    cfg.update(validation="budget", tune_extend=0)
    tune = {"lr": [1e-4, 3e-4, 1e-3]}
    # three candidates to the first rung (step 10), the best one on to 30
    assert P.shape_of("full", cfg, 256, tune).steps == 3 * 10 + 20
    # three folds of it, and the refit on the whole budget
    cv = P.shape_of("full", {**cfg, "cv_folds": 3}, 64, tune)
    assert (cv.tuned, cv.steps) == ("cv", 3 * (3 * 10 + 20) + 30)
    assert sum(P.widening(3, 2).values()) == pytest.approx(1.0) and P.widening(3, 0) == {0: 1.0}
    assert P.shape_of("frozen", cfg, 64, None).kind == "probe" and P.shape_of("zeroshot", cfg, 64, None).steps == 0


def test_schedule_length_is_the_loops():
    from bench.core.api import TrainConfig
    from bench.run.loop import schedule_length

    for kw in ({}, {"max_steps": 30}, {"patience": 3, "max_steps": 96}, {"patience": 2}, {"min_steps": 200}):
        cfg = TrainConfig(**kw)
        for n in (1, 51, 820):
            assert P.schedule_length(P.dataclasses.asdict(cfg), n) == schedule_length(cfg, n)[0]


def test_totals_with_jobs_place_cells_in_order_phase_by_phase():
    def est(seconds, phase=1):
        return P.Estimate(_cell(), "k", seconds, "fitted", None, "-", phase)

    cells = [est(10), est(10), est(10), est(10), est(30, phase=2), est(5, phase=2)]
    assert P.total(cells) == 75
    assert P.makespan(cells, 1) == 75
    assert P.makespan(cells, 2) == 20 + 30
    assert P.makespan(cells, 4) == 10 + 30
    assert P.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.1) == pytest.approx(1.4)
    assert math.isnan(P.quantile([], 0.5))
    assert P.within_minutes(cells, 2, minutes=1) == cells  # 20 s, then the look's 35 s per slot: within the minute
    assert P.within_minutes(cells, 2, minutes=0.5) == cells[:4]  # the look would pass 30 s: not started


def _suite(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(
        "seeds = [0, 1]\n[set]\nthreads = 1\nbatch_size = 16\nepochs = 100\nmax_steps = 16\neval_limit = 128\n"
        '[[matrix]]\ntasks = ["pneumonia-mnist"]\nmethods = ["full", "frozen", "zeroshot"]\nbudgets = [64]\n'
    )
    return path


def test_the_command_prints_a_table_and_totals_and_holds_the_plan_against_a_run(tmp_path, capsys):
    from bench.cli import main

    path = _suite(tmp_path)
    learn, actual = Store(tmp_path / "learn"), Store(tmp_path / "actual")
    for seed in (0, 1):
        learn.write(_record(Cell("pneumonia-mnist", "full", 64, seed, {**SETTINGS}, suite="tiny"), wall=50.0))
        actual.write(_record(Cell("pneumonia-mnist", "full", 64, seed, {**SETTINGS}, suite="tiny"), wall=40.0))
    args = ["plan", "--suite", str(path), "--results", str(learn.root), "--jobs", "2", "--gpu", "h100"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "pneumonia-mnist" in out and "measured" in out and "unsupported" in out  # zeroshot on images
    assert "first look:" in out and "with --jobs 2" in out and "H100" in out and "never measured here" in out
    assert main([*args, "--per-cell", "--against", str(actual.root)]) == 0
    out = capsys.readouterr().out
    assert "plan vs actual" in out and "2 of its 2 ok records" in out and "(ratio 1.25)" in out
    assert main([*args, "--model", "flops"]) == 0 and "flops" in capsys.readouterr().out


def test_grid_dry_run_lists_each_cells_estimate(tmp_path, capsys):
    from bench.cli import main

    path = _suite(tmp_path)
    assert main(["grid", "--suite", str(path), "--results", str(tmp_path / "results"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "nothing is run; estimate for the 4 cells to run" in lines[0]
    runs = [line for line in lines[1:] if line.split()[1] != "unsupported"]
    assert len(lines) == 1 + 6 and len(runs) == 4 and all("[~" in line for line in runs)
    gaps = [line.split()[2] for line in lines[1:] if line not in runs]
    assert gaps == [f"pneumonia-mnist/zeroshot/64/{s}" for s in (0, 1)], "marked unsupported, not 'to run'"
