"""Early stopping, validation inside the budget, refit, and learning-rate sweeps in suites. Fast: a linear head on
random features (the loop's cached-feature path), synthetic splits, and a fake ``run_cell`` for the grid.
Run: `.venv/bin/python -m pytest tests/test_tuning.py -q`.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from bench.catalog import TASKS
from bench.core.api import Split, Splits, TrainConfig
from bench.core.data import holdout_subset
from bench.run.loop import Runner, schedule_length


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Identity()
        self.head = nn.Sequential(nn.Linear(6, 6), nn.Linear(6, 2))


class _Head:
    """Trains the whole head; with ``thaw_at``, its first layer only from that step on (gradual unfreezing)."""

    name, cache_features, trains = "head", True, True

    def __init__(self, thaw_at: int | None = None) -> None:
        self.thaw_at = thaw_at

    def param_groups(self, model):
        return [{"params": list(model.head.parameters()), "lr": 0.05}]

    def on_step(self, model, step, total):
        if self.thaw_at is not None:
            model.head[0].requires_grad_(step >= self.thaw_at)

    def train_mode(self, model):
        model.train()

    def penalty(self, model):
        return None


def _runner(cfg: TrainConfig, scores: list[float] | None = None):
    """A runner on 40 random examples whose validation score follows ``scores`` (one per pass; then flat), and
    which keeps the head's weights at every validation pass: step -> state dict."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    feats, labels = rng.normal(size=(40, 6)).astype(np.float32), rng.integers(0, 2, 40)
    train = Split("train", np.zeros((40, 1)), labels, np.arange(40))
    val = Split("val", np.zeros((40, 1)), labels, np.arange(40))
    runner = Runner(_Tiny(), None, TASKS.get("pneumonia-mnist")(), cfg, "cpu")
    runner.features = {"train": torch.from_numpy(feats), "val": torch.from_numpy(feats)}
    seen: dict[int, dict[str, torch.Tensor]] = {}
    real = runner.evaluate

    def evaluate(split, cached):
        metrics, rate = real(split, cached)
        i = len(seen)
        seen[i] = {k: v.clone() for k, v in runner.model.head.state_dict().items()}
        if scores is not None:
            metrics = {**metrics, "auroc": scores[min(i, len(scores) - 1)]}
        return metrics, rate

    runner.evaluate = evaluate
    return runner, train, val, seen


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_patience_stops_on_a_plateau_and_keeps_the_best_checkpoint():
    cfg = TrainConfig(batch_size=8, eval_every=1, patience=2, max_steps=50)
    runner, train, val, seen = _runner(cfg, scores=[0.5, 0.7, 0.6, 0.65, 0.9])
    fit = runner.fit(_Head(), train, val, seed=0)
    assert fit.stopped_by == "patience" and fit.steps == 4, "two passes without improvement after step 2"
    assert fit.best_step == 2 and fit.best_val["auroc"] == 0.7 and len(fit.history) == 4
    assert fit.schedule_steps == 50, "the LR schedule is laid over the cap, not over where training stopped"
    assert _equal(runner.model.head.state_dict(), seen[1]), "the weights of the best pass are restored"
    assert not _equal(seen[1], seen[3]), "training moved on after the best pass"


def test_each_validation_pass_prints_its_step_loss_score_and_whether_it_is_the_best(capsys):
    """The line the grid shows under a running cell (the cell's stdout, followed by the harness)."""
    cfg = TrainConfig(batch_size=8, eval_every=1, patience=2, max_steps=50)
    runner, train, val, _ = _runner(cfg, scores=[0.5, 0.7, 0.6, 0.65, 0.9])
    fit = runner.fit(_Head(), train, val, seed=0)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(fit.history) == 4
    for line, h, note in zip(
        lines, fit.history, ["  (best)", "  (best)", "", "  (stopping: 2 passes without a better one)"], strict=True
    ):
        assert line == f"step {h['step']}/50  train_loss {h['train_loss']:.3f}  val/auroc {h['val/auroc']:.4f}{note}"
    quiet, train, val, _ = _runner(cfg, scores=[0.5, 0.7])
    quiet.progress = None
    quiet.fit(_Head(), train, val, seed=0)
    assert capsys.readouterr().out == "", "progress=None: silent"


def test_the_cap_holds_when_validation_keeps_improving():
    cfg = TrainConfig(batch_size=8, eval_every=3, patience=1, max_steps=13)
    runner, train, val, _ = _runner(cfg, scores=[0.1 * i for i in range(1, 20)])
    fit = runner.fit(_Head(), train, val, seed=0)
    assert fit.stopped_by == "cap" and fit.steps == 13 and fit.best_step == 13
    assert [h["step"] for h in fit.history] == [3, 6, 9, 12, 13]


def test_a_patience_run_is_the_fixed_run_of_the_caps_length_truncated():
    """Same LR at every step (schedule over the cap), same batches: the weights agree pass for pass."""
    stopped, train, val, seen_stopped = _runner(TrainConfig(batch_size=8, eval_every=2, patience=1, max_steps=20))
    fit = stopped.fit(_Head(), train, val, seed=0)
    full, train, val, seen_full = _runner(TrainConfig(batch_size=8, eval_every=2, max_steps=20, epochs=100))
    fixed = full.fit(_Head(), train, val, seed=0)
    assert fixed.steps == 20 and fixed.stopped_by == "cap"
    assert fit.steps < 20 and fit.stopped_by == "patience"
    assert all(_equal(seen_stopped[i], seen_full[i]) for i in seen_stopped)


def test_patience_off_runs_the_old_fixed_schedule():
    assert schedule_length(TrainConfig(batch_size=8, epochs=2), 40) == (10, "schedule end")
    assert schedule_length(TrainConfig(batch_size=8, epochs=2, min_steps=30), 40) == (30, "schedule end")
    assert schedule_length(TrainConfig(batch_size=8, epochs=2, max_steps=7), 40) == (7, "cap")
    assert schedule_length(TrainConfig(batch_size=8, epochs=2, max_steps=70), 40) == (10, "schedule end")
    assert schedule_length(TrainConfig(batch_size=8, epochs=2, patience=3), 40) == (10, "schedule end")
    assert schedule_length(TrainConfig(batch_size=8, epochs=2, patience=3, max_steps=70), 40) == (70, "cap")
    runner, train, val, _ = _runner(TrainConfig(batch_size=8, epochs=2), scores=[0.9, 0.1])
    fit = runner.fit(_Head(), train, val, seed=0)
    assert fit.steps == 10 and fit.stopped_by == "schedule end" and fit.best_step < 10


def test_the_best_checkpoint_restores_parameters_thawed_after_it():
    """Gradual unfreezing: a layer frozen at the best pass and trained afterwards goes back to its value then."""
    cfg = TrainConfig(batch_size=8, eval_every=2, max_steps=10, epochs=100)
    runner, train, val, seen = _runner(cfg, scores=[0.9, 0.1])
    start = runner.model.head[0].weight.detach().clone()
    fit = runner.fit(_Head(thaw_at=5), train, val, seed=0)
    assert fit.best_step == 2 and not torch.equal(seen[4]["0.weight"], start), "the layer trained after thawing"
    assert torch.equal(runner.model.head[0].weight, start), "restored to its value at the best pass"


def test_a_refit_replays_the_selected_steps_from_the_same_start_without_validation():
    cfg = TrainConfig(batch_size=8, eval_every=2, max_steps=12, epochs=100)
    runner, train, val, seen = _runner(cfg, scores=[0.2, 0.9, 0.1])
    start = runner.snapshot()
    fit = runner.fit(_Head(), train, val, seed=0)
    assert fit.best_step == 4
    runner.restore(start)
    calls = len(seen)
    refit = runner.fit(_Head(), train, None, seed=0, schedule=fit.schedule_steps, stop_at=fit.best_step)
    assert len(seen) == calls, "no validation in a refit"
    assert refit.steps == 4 and refit.stopped_by == "selected step" and refit.schedule_steps == 12
    assert _equal(runner.model.head.state_dict(), seen[1]), "same data, same start, same schedule: same weights"


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"patience": -1}, "Invalid patience"),
        ({"max_steps": -1}, "Invalid max_steps"),
        ({"validation": "test"}, "Invalid validation"),
        ({"val_fraction": 1.0}, "Invalid val_fraction"),
        ({"refit": True}, "refit=true needs validation=budget"),
    ],
)
def test_bad_tuning_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**settings)


# ---------------------------------------------------------------------------- validation inside the budget
def _budget(labels: list[int]) -> Splits:
    n = len(labels)
    ids = np.arange(1000, 1000 + 3 * n, 3)  # pool ids, not positions
    train = Split("train", np.zeros((n, 2)), np.asarray(labels), ids)
    other = Split("val", np.zeros((5, 2)), np.zeros(5, dtype=int), np.arange(5))
    return Splits(train, other, other)


def test_budget_validation_is_stratified_disjoint_inside_the_budget_and_seeded():
    labels = [0] * 50 + [1] * 11 + [2]  # a class with a single example keeps it for training
    budget = _budget(labels)
    carved, whole = budget.hold_out(0.2, seed=3, stratify=True)
    train, val = carved.train, carved.val
    assert set(train.ids).isdisjoint(val.ids)
    assert sorted([*train.ids, *val.ids]) == sorted(budget.train.ids) == sorted(whole.ids)
    assert np.bincount(val.labels, minlength=3).tolist() == [10, 2, 0]
    assert np.bincount(train.labels, minlength=3).tolist() == [40, 9, 1]
    assert val.name == "val" and val.pool_name == "train", "features of carved examples are the train pool's"
    assert whole.name == "budget" and whole.pool_name == "train" and train.pool_name == "train"
    again, _ = budget.hold_out(0.2, seed=3, stratify=True)
    assert np.array_equal(again.val.ids, val.ids), "deterministic in the seed"
    other, _ = budget.hold_out(0.2, seed=4, stratify=True)
    assert not np.array_equal(other.val.ids, val.ids), "another seed carves another split"
    assert carved.test is budget.test, "test is untouched"


def test_every_class_with_two_examples_gets_one_in_validation():
    held = holdout_subset(np.array([0, 0, 1, 1, 2, 2, 2, 3]), 0.2, seed=0)
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3])[held]
    assert sorted(labels.tolist()) == [0, 1, 2]
    reg = holdout_subset(np.linspace(0, 1, 64), 0.2, seed=0, stratify=False)
    assert len(reg) == 13 and len(set(reg)) == 13
    with pytest.raises(ValueError, match="cannot carve a validation split"):
        holdout_subset(np.array([0, 1]), 0.2, seed=0)


def test_budget_validation_on_a_real_task_stays_inside_its_budget(data):
    task = TASKS.get("pneumonia-mnist")()
    for seed in (0, 1):
        budget = task.splits(64, seed, data)
        carved, _ = budget.hold_out(0.2, seed, stratify=True)
        counts = np.bincount(budget.train.labels)
        assert np.bincount(carved.val.labels).tolist() == [int(np.floor(0.2 * c + 0.5)) for c in counts]
        assert len(carved.val) + len(carved.train) == 64
        assert set(carved.val.ids) < set(budget.train.ids) and set(carved.train.ids) < set(budget.train.ids)
        assert set(carved.val.labels) == {0, 1}
        assert set(carved.val.ids).isdisjoint(budget.val.ids), "the task's own validation set is not used"


# ------------------------------------------------------------------------------------------ sweeps
SWEEP = """seeds = [0, 1]
[[matrix]]
tasks = ["glue-sst2"]
methods = ["frozen"]
budgets = [64]

[[matrix]]
tasks = ["glue-sst2"]
methods = ["ia3", "lora"]
budgets = [64, 256]
sweep = { lr = [1e-4, 3e-4, 1e-3] }
sweep_budget = 256
sweep_seeds = [0, 1]
"""
# validation accuracy by (lr, seed): 1e-3 is best on seed 0 alone, 3e-4 best on the mean over seeds
VAL = {(1e-4, 0): 0.60, (1e-4, 1): 0.60, (3e-4, 0): 0.70, (3e-4, 1): 0.90, (1e-3, 0): 0.75, (1e-3, 1): 0.50}


def _sweep_suite(tmp_path, text: str = SWEEP):
    from bench.suite import load_suite

    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return load_suite(str(path))


def _fake_grid(monkeypatch, outcome=None):
    """run_cell replaced: an ok record whose val accuracy is VAL[lr, seed] (``outcome(cell, lr)`` may return
    another status); every call is logged."""
    import bench.run.harness
    from bench.catalog import resolve
    from bench.core.record import new_record

    calls = []

    def run_cell(cell, store, **kwargs):
        cell = getattr(cell, "cell", cell)  # the grid passes the Resolved, `run` a Cell
        res = resolve(cell)
        lr = getattr(res.method, "lr", None)  # frozen has none: its probe tunes its L2 strength itself
        calls.append((cell.method, cell.budget, cell.seed, lr))
        status = (outcome(cell, lr) if outcome else None) or "ok"
        record = new_record(res, status, None if status == "ok" else f"{status} on purpose")
        if status == "ok":
            record.metrics = {"test/accuracy": 0.5, "val/accuracy": VAL.get((lr, cell.seed), 0.55)}
        store.write(record)
        return record

    monkeypatch.setattr(bench.run.harness, "run_cell", run_cell)
    return calls


def test_a_sweep_block_expands_into_sweeps_and_maps_its_key_onto_each_methods_field(tmp_path):
    suite = _sweep_suite(tmp_path)
    assert len(suite.cells) == 2, "only the block without a sweep has fixed cells"
    assert [(s.task, s.method, s.budget, s.seeds) for s in suite.sweeps] == [
        ("glue-sst2", "ia3", 256, (0, 1)),
        ("glue-sst2", "lora", 256, (0, 1)),
    ]
    assert [c.overrides for c in suite.sweeps[1].cells()[:2]] == [{"lr": 1e-4}, {"lr": 1e-4}]
    assert len(suite.sweep_cells()) == 12
    aliased = _sweep_suite(tmp_path, SWEEP.replace("sweep = { lr", "sweep = { head_lr"))
    assert [s.fields for s in aliased.sweeps] == [["head_lr"], ["head_lr"]]
    default_seed = _sweep_suite(tmp_path, SWEEP.replace("sweep_seeds = [0, 1]\n", ""))
    assert default_seed.sweeps[0].seeds == (0,), "the block's first seed"


@pytest.mark.parametrize(
    "change, message",
    [
        (('["ia3", "lora"]', '["lora", "fewshot"]'), "sweep key 'lr': method fewshot has no such hyperparameter"),
        (("sweep = { lr", "sweep = { rank"), "sweep key 'rank': method ia3 has no such hyperparameter (hyper"),
        (("sweep_budget = 256\n", ""), "sweep needs sweep_budget"),
        (("sweep = { lr = [1e-4, 3e-4, 1e-3] }\n", ""), "sweep_budget without sweep"),
        (("lr = [1e-4, 3e-4, 1e-3]", "lr = []"), "sweep lr: a non-empty list"),
        (("lr = [1e-4, 3e-4, 1e-3]", "lr = [1e-4, 1e-4]"), "listed twice"),
        (("lr = [1e-4, 3e-4, 1e-3]", "lr = [1e-4, 3.0]"), "block 2: Invalid lr: 3.0"),
        (("sweep_budget = 256", "sweep_budget = -1"), "sweep_budget must be a number of examples"),
        (("sweep_budget = 256", "sweep_budget = 256\nset = { lr = 1e-3 }"), "lr of ia3 is both swept and fixed"),
    ],
)
def test_a_bad_sweep_is_refused_when_the_suite_loads(tmp_path, change, message):
    with pytest.raises(ValueError, match="block 2") as err:
        _sweep_suite(tmp_path, SWEEP.replace(*change))
    assert message in str(err.value)


def test_a_sweep_picks_the_best_mean_validation_lr_and_its_block_cells_run_with_it(tmp_path, monkeypatch):
    from bench.catalog import resolve
    from bench.core.api import Cell
    from bench.core.store import Store
    from bench.run.grid import run_grid

    suite, store = _sweep_suite(tmp_path), Store(tmp_path / "results")
    calls = _fake_grid(monkeypatch)
    lines: list[str] = []
    result = run_grid(suite, store, log=lines.append)
    assert result.ok and [o.chosen for o in result.sweeps] == [{"lr": 3e-4}, {"lr": 3e-4}]
    sweep_calls = [c for c in calls if c[1] == 256 and c[3] != 3e-4]
    assert calls[:12] == [(m, 256, s, lr) for m in ("ia3", "lora") for lr in (1e-4, 3e-4, 1e-3) for s in (0, 1)]
    assert len(sweep_calls) == 8, "the sweep cells ran first"
    tuned = calls[12:]
    assert sorted(tuned) == sorted(
        [*[("frozen", 64, s, None) for s in (0, 1)], *[(m, 64, s, 3e-4) for m in ("ia3", "lora") for s in (0, 1)]]
    )
    # the tuned cells at the sweep's budget and seeds are the chosen sweep cells: not run twice, marked as tuned
    for method in ("ia3", "lora"):
        for budget in (64, 256):
            for seed in (0, 1):
                key = resolve(Cell("glue-sst2", method, budget, seed, {"lr": 3e-4}, suite="sweep")).key
                record = store.get("sweep", key)
                assert record.ok and record.hparams["method"]["lr"] == 3e-4
                tf = record.tuned_from
                assert tf["selected"] == {"lr": 3e-4} and tf["on"] == "val/accuracy" and tf["seeds"] == [0, 1]
                assert [row["mean"] for row in tf["scores"]] == pytest.approx([0.60, 0.80, 0.625])
                assert all(len(row["cells"]) == 2 for row in tf["scores"]), "the sweep cells' keys and scores"
    assert any("lr=0.0003 chosen on mean val/accuracy" in line for line in lines)
    calls.clear()
    again = run_grid(suite, store, log=lambda _: None)
    assert calls == [] and [o.chosen for o in again.sweeps] == [{"lr": 3e-4}] * 2, "resumes: reuses every record"


def test_a_failed_sweep_cell_leaves_its_block_cells_unrun_and_recorded_as_failed(tmp_path, monkeypatch):
    from bench.catalog import resolve
    from bench.core.api import Cell
    from bench.core.store import Store
    from bench.run.grid import run_grid

    suite, store = _sweep_suite(tmp_path), Store(tmp_path / "results")
    calls = _fake_grid(
        monkeypatch, lambda cell, lr: "oom" if (cell.method, lr, cell.seed) == ("lora", 1e-3, 1) else None
    )
    result = run_grid(suite, store, log=lambda _: None)
    assert not result.ok and [o.status for o in result.sweeps] == ["selected", "failed"]
    assert "sweep failed" in result.sweeps[1].reason and "ended oom" in result.sweeps[1].reason
    assert not [c for c in calls if c[0] == "lora" and c[1] == 64], "no lora block cell ran, with any lr"
    pending = [r for r in result.records if r.method == "lora" and r.tuned_from and "failed" in r.tuned_from]
    assert len(pending) == 4 and all(r.status == "failed" and "sweep failed" in r.error for r in pending)
    assert all(r.hparams["method"]["lr"] is None for r in pending)
    for budget in (64, 256):
        for seed in (0, 1):
            res = resolve(Cell("glue-sst2", "lora", budget, seed, suite="sweep"))
            assert store.get("sweep", res.pending_key(["lr"])).status == "failed"
            default = store.get("sweep", res.key)  # lora's default LR is 1e-3, a value of the sweep
            assert default is None if budget == 64 else default.tuned_from is None, "never tuned to the default"


def test_a_diverged_sweep_value_is_ruled_out_not_fatal(tmp_path, monkeypatch):
    from bench.core.store import Store
    from bench.run.grid import run_grid

    suite, store = _sweep_suite(tmp_path), Store(tmp_path / "results")
    _fake_grid(monkeypatch, lambda cell, lr: "diverged" if lr == 3e-4 and cell.seed == 0 else None)
    result = run_grid(suite, store, log=lambda _: None)
    assert [o.chosen for o in result.sweeps] == [{"lr": 1e-3}, {"lr": 1e-3}]
    assert result.sweeps[0].tuned_from["scores"][1]["mean"] is None


def test_dry_run_and_report_show_sweeps_and_tuned_cells(tmp_path, monkeypatch, capsys):
    from bench.cli import main
    from bench.core.store import Store
    from bench.run.grid import plan, run_grid
    from bench.suite import current_records

    suite, store = _sweep_suite(tmp_path), Store(tmp_path / "results")
    before = plan(suite, store)
    assert len(before) == 12 + 8 + 2 and before[0].split()[:3] == ["sweep", "to", "run"]
    assert sum("waits for its sweep" in line for line in before) == 8
    _fake_grid(monkeypatch)
    run_grid(suite, store, log=lambda _: None)
    after = plan(suite, store)
    assert sum(line.split()[:2] == ["tuned", "done"] and "lr=0.0003" in line for line in after) == 8
    assert (
        main(["grid", "--suite", str(tmp_path / "sweep.toml"), "--results", str(tmp_path / "results"), "--dry-run"])
        == 0
    )
    assert "(12 sweep cells); nothing is run" in capsys.readouterr().out
    kept, notes = current_records("sweep", store.records("sweep"), str(tmp_path / "sweep.toml"))
    assert len(kept) == 2 + 8 and all(r.tuned_from or r.budget == 64 for r in kept)
    assert any("8 sweep cells are not in the tables" in n for n in notes)


def test_scratch_trains_longer_than_fine_tuning_and_says_so_in_its_version():
    from bench.catalog import resolve
    from bench.core.api import Cell

    for task in ("pneumonia-mnist", "glue-sst2"):
        scratch = resolve(Cell(task, "scratch", 64, 0))
        full = resolve(Cell(task, "full", 64, 0))
        assert scratch.method.version == 2
        assert (scratch.train.epochs, scratch.train.min_steps) == (10, 200)
        assert scratch.train.min_steps >= 3 * full.train.min_steps and scratch.train.epochs >= 3 * full.train.epochs
    proxy = resolve(Cell("glue-sst2", "scratch", 64, 0, {"min_steps": 8, "epochs": 1}))
    assert (proxy.train.epochs, proxy.train.min_steps) == (1, 8), "a suite's settings still win"


# ------------------------------------------------------------------------------------ a tiny real cell
@pytest.mark.parametrize("method", ["frozen", pytest.param("full", marks=pytest.mark.slow)])
def test_a_cell_with_budget_validation_refit_and_patience_records_how_it_selected(
    tiny_backbones, data, monkeypatch, tmp_path, method
):
    """In process on timm's test_resnet at 32 px (the probe is stubbed: it is not what this checks), with a cold
    feature cache."""
    import bench.run.forgetting
    from bench.catalog import resolve
    from bench.core.api import Cell
    from bench.run.cell import execute

    monkeypatch.setattr(bench.run.forgetting, "run_probe", lambda *args, **kwargs: (0.5, False))
    monkeypatch.setenv("ADAPTBENCH_CACHE", str(tmp_path))
    settings = {"backbone": tiny_backbones["tiny-timm"], "image_size": 32, "eval_limit": 64, "batch_size": 16}
    settings.update(max_steps=40, eval_every=4)
    tuning = {"validation": "budget", "refit": True, "patience": 2}
    record = execute(resolve(Cell("pneumonia-mnist", method, 64, 0, {**settings, **tuning})), data, "cpu")
    sp, sel = record.splits, record.selection
    held = holdout_subset(TASKS.get("pneumonia-mnist")().splits(64, 0, data).train.labels, 0.2, seed=0)
    assert sp.validation == sel.validation == "budget" and (sp.train, sp.val) == (64 - len(held), len(held))
    assert sp.refit_train == 64 and sel.refit["train"] == 64
    assert sel.best_step in {h["step"] for h in sel.history} and "val/auroc" in record.metrics
    assert record.cost.steps == sel.stopped_at
    if method != "frozen":
        assert sel.refit["steps"] == sel.best_step
        assert sel.schedule_steps == 40 and sel.stopped_by in ("patience", "cap") and sel.stopped_at <= 40
    else:  # a linear probe: L-BFGS to convergence for each L2 strength; the refit fits the chosen one
        assert sel.stopped_by == "converged" and record.method_notes["probe_l2"] in record.hparams["method"]["l2"]
        # the carved split's features are the train pool's: the refit finds them all cached
        assert record.cost.feature_cache == {"hits": 64, "computed": 64 + 64}
    oracle = execute(resolve(Cell("pneumonia-mnist", method, 64, 0, settings)), data, "cpu")
    assert oracle.splits.validation == oracle.selection.validation == "oracle"
    assert (oracle.splits.train, oracle.splits.val, oracle.splits.refit_train) == (64, 64, None)
    assert oracle.selection.refit is None
    if method != "frozen":
        assert oracle.selection.stopped_by == "cap" and oracle.selection.stopped_at == 40


def test_the_report_and_summary_show_each_sweep_with_its_scores_and_an_edge_warning(tmp_path, monkeypatch):
    from bench.analysis.sweeps import sweep_rows
    from bench.core.store import Store
    from bench.report.data import build_report
    from bench.report.sections import sweeps_html
    from bench.report.text import summary_text
    from bench.run.grid import run_grid
    from bench.suite import current_records

    def swept(folder):
        store = Store(tmp_path / folder)
        run_grid(_sweep_suite(tmp_path), store, log=lambda _: None)
        return store, current_records("sweep", store.records("sweep"), str(tmp_path / "sweep.toml"))[0]

    _fake_grid(monkeypatch)
    store, kept = swept("inside")  # 3e-4 wins on the mean: inside the grid
    rows = sweep_rows(kept)
    assert [(r.method, r.chosen, r.at_edge) for r in rows] == [
        ("ia3", "lr=0.0003", False),
        ("lora", "lr=0.0003", False),
    ]
    assert [s for _, s in rows[0].tried] == pytest.approx([0.60, 0.80, 0.625])
    assert rows[0].seeds == (0, 1) and rows[0].budget == 256 and rows[0].cells == 6
    page = re.sub(r"<[^>]+>", "", "".join(sweeps_html(build_report("sweep", kept))))  # the sweep section, as read
    assert "Hyperparameter sweeps" in page and "lr=0.0001: 0.600; lr=0.0003: 0.800; lr=0.001: 0.625" in page
    text = summary_text(store, "sweep", kept, labels_from_data=False)
    assert "glue-sst2 x lora: lr=0.0003 chosen on mean val/accuracy at budget 256, seed(s) 0,1" in text
    assert "[at the grid's edge" not in text
    assert sweep_rows([r for r in kept if r.tuned_from is None]) == [], "untuned records give no row"

    monkeypatch.setitem(VAL, (1e-3, 1), 0.95)  # now 1e-3, the largest value tried, wins
    store, kept = swept("edge")
    assert [(r.chosen, r.at_edge) for r in sweep_rows(kept)] == [("lr=0.001", True)] * 2
    assert "(at the grid&#x27;s edge)" in "".join(sweeps_html(build_report("sweep", kept)))
    assert "at the grid's edge" in summary_text(store, "sweep", kept, labels_from_data=False)
