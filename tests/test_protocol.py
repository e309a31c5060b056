"""The replicate protocol (issue 21): k-fold and test-half splits, tuning spaces, runs that pause and resume, nested
tuning by successive halving with grids that widen, lengthening, and a method's minimum schedule. Fast: a linear
head on random features, plus one tiny real cell. Run: `.venv/bin/python -m pytest tests/test_protocol.py -q`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from bench.catalog import TASKS, resolve
from bench.core.api import Cell, Split, TrainConfig, TuneSpec
from bench.core.data import half_subset, kfold_assignment
from bench.run.loop import Runner, Trainer, selection_key
from bench.run.tuning import Tuner, still_improving


# ------------------------------------------------------------------------------------------- splits
@pytest.mark.parametrize("seed", [0, 7])
def test_kfold_folds_partition_the_budget_and_hold_each_class_evenly(seed):
    labels = np.array([0] * 40 + [1] * 24)
    fold = kfold_assignment(labels, 4, seed)
    assert sorted(set(fold)) == [0, 1, 2, 3]
    for c, n in ((0, 40), (1, 24)):
        counts = np.bincount(fold[labels == c], minlength=4)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert np.array_equal(fold, kfold_assignment(labels, 4, seed)), "deterministic in the seed"
    assert not np.array_equal(fold, kfold_assignment(labels, 4, seed + 1)), "another seed, other folds"


def test_the_two_test_halves_are_disjoint_cover_the_set_are_stratified_and_fixed():
    labels = np.array([0] * 101 + [1] * 60 + [2] * 7)
    one, two = half_subset(labels, 1), half_subset(labels, 2)
    assert not set(one) & set(two) and len(one) + len(two) == len(labels)
    for c in (0, 1, 2):
        assert abs((labels[one] == c).sum() - (labels[two] == c).sum()) <= 1
    assert np.array_equal(one, half_subset(labels, 1)), "no seed: the same halves for every cell"
    with pytest.raises(ValueError, match="test_half"):
        half_subset(labels, 3)


# ------------------------------------------------------------------------------------------- tune spaces
def test_a_grid_is_sorted_widens_by_its_edge_ratio_and_a_log_range_gives_seeded_points_inside_it():
    spec = TuneSpec.parse({"lr": [1e-3, 1e-4, 3e-4]}, lambda k: k)
    assert spec.grid == (("lr", (1e-4, 3e-4, 1e-3)),)
    assert [c["lr"] for c in spec.candidates(0)] == [1e-4, 3e-4, 1e-3]
    assert spec.outward("lr", [1e-4, 3e-4, 1e-3], 1) == pytest.approx(1e-3 * 1e-3 / 3e-4, rel=1e-5)
    assert spec.outward("lr", [1e-4, 3e-4, 1e-3], -1) == pytest.approx(1e-4 * 1e-4 / 3e-4, rel=1e-5)
    ranged = TuneSpec.parse({"lr": {"log_range": [1e-5, 1e-3]}, "points": 5}, lambda k: k)
    a, b = ranged.candidates(0), ranged.candidates(1)
    assert len(a) == 5 and all(1e-5 <= c["lr"] <= 1e-3 for c in a)
    assert a == ranged.candidates(0) and a != b, "quasi-random points drawn by the seed"


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({}, "tune must be a table"),
        ({"lr": []}, "non-empty list"),
        ({"lr": [1e-3, 1e-3]}, "listed twice"),
        ({"lr": {"log_range": [1e-3, 1e-5]}, "points": 3}, "0 < low < high"),
        ({"lr": {"log_range": [1e-5, 1e-3]}}, "needs points"),
    ],
)
def test_a_bad_tune_space_is_refused_with_the_fix(table, message):
    with pytest.raises(ValueError, match=message):
        TuneSpec.parse(table, lambda k: k)


def test_tune_names_a_method_field_and_a_method_that_does_not_train_is_refused():
    res = resolve(Cell("pneumonia-mnist", "full", 64, 0, {"tune.lr": "1e-4,3e-4"}))
    assert res.tune is not None and res.tune.grid == (("lr", (1e-4, 3e-4)),)
    with pytest.raises(ValueError, match="no such hyperparameter"):
        resolve(Cell("pneumonia-mnist", "full", 64, 0, {"tune.rank": "1,2"}))
    with pytest.raises(ValueError, match="does not train"):
        resolve(Cell("glue-sst2", "zeroshot", 64, 0, {"tune.temperature": "1,2"}))


def test_a_methods_minimum_schedule_is_a_floor_under_a_suites_cap_unless_the_cell_sets_min_steps():
    capped = resolve(Cell("pneumonia-mnist", "scratch", 1024, 0, {"max_steps": 64, "patience": 2}))
    assert capped.train.max_steps == 200, "scratch documents at least 200 steps"
    stated = resolve(Cell("pneumonia-mnist", "scratch", 64, 0, {"max_steps": 8, "min_steps": 8}))
    assert stated.train.max_steps == 8, "an explicit min_steps is the cell's own choice"
    assert resolve(Cell("pneumonia-mnist", "full", 64, 0, {"max_steps": 64})).train.max_steps == 64


# ------------------------------------------------------------------------------------------- runs
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Identity()
        self.head = nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.3), nn.Linear(6, 2))


@dataclasses.dataclass(frozen=True)
class _LrHead:
    """Trains the head at ``lr``; a dataclass so the tuner can ``replace`` its field."""

    lr: float = 0.05
    name = "head"
    cache_features = True
    trains = True

    def param_groups(self, model):
        return [{"params": list(model.head.parameters()), "lr": self.lr}]

    def on_step(self, model, step, total):
        pass

    def train_mode(self, model):
        model.train()

    def penalty(self, model):
        return None


FEATS = np.random.default_rng(0).normal(size=(48, 6)).astype(np.float32)
LABELS = np.random.default_rng(1).integers(0, 2, 48)


def _splits():
    return (
        Split("train", np.zeros((32, 1)), LABELS[:32], np.arange(32)),
        Split("val", np.zeros((16, 1)), LABELS[32:], np.arange(32, 48)),
    )


def _build(cfg: TrainConfig, score=None):
    """build(method) -> a fresh Runner on fixed random features (the same start each time); ``score(method, pass)``
    replaces the validation AUROC when given."""

    def build(method):
        torch.manual_seed(0)
        runner = Runner(_Tiny(), None, TASKS.get("pneumonia-mnist")(), cfg, "cpu")
        runner.progress = None
        runner.features = {"train": torch.from_numpy(FEATS[:32]), "val": torch.from_numpy(FEATS[32:])}
        if score is not None:
            real, passes = runner.evaluate, []

            def evaluate(split, cached):
                metrics, rate = real(split, cached)
                passes.append(1)
                return {**metrics, "auroc": score(method, len(passes))}, rate

            runner.evaluate = evaluate
        return runner

    return build


def test_a_run_advanced_in_pieces_between_other_runs_is_the_run_advanced_at_once():
    cfg = TrainConfig(batch_size=8, eval_every=2, max_steps=20, epochs=100)
    train, val = _splits()
    whole = Trainer(_build(cfg)(_LrHead()), _LrHead(), train, val, 0, isolate_rng=True)
    whole.advance(whole.last)
    a = Trainer(_build(cfg)(_LrHead()), _LrHead(), train, val, 0, isolate_rng=True)
    b = Trainer(_build(cfg)(_LrHead(0.2)), _LrHead(0.2), train, val, 1, isolate_rng=True)
    for until in (3, 7, 12, 20):  # interleaved with another run, which draws dropout from torch's stream too
        a.advance(until)
        b.advance(until)
    assert [h["val/auroc"] for h in a.history] == [h["val/auroc"] for h in whole.history]
    for k, v in whole.runner.model.state_dict().items():
        assert torch.equal(v, a.runner.model.state_dict()[k])


def test_validation_ties_break_on_the_lower_loss_only_when_asked():
    assert selection_key(0.9, 0.2, "loss") > selection_key(0.9, 0.3, "loss")
    assert selection_key(0.9, 0.2, "first") == selection_key(0.9, 0.3, "first")
    assert selection_key(math.nan, 0.1, "loss") < selection_key(0.0, 5.0, "loss")


def _curve(scores, every=4):
    return [{"step": every * (i + 1), "val/auroc": s} for i, s in enumerate(scores)]


def test_still_improving_means_best_at_the_end_by_more_than_half_the_margin_over_the_last_quarter():
    rising = _curve([0.6, 0.7, 0.8, 0.9])
    assert still_improving(rising, 3, "schedule end", 16, "val/auroc", 1.0, 0.01)
    assert not still_improving(rising, 3, "patience", 16, "val/auroc", 1.0, 0.01), "patience ended it"
    flat = _curve([0.6, 0.9, 0.9, 0.902])
    assert not still_improving(flat, 3, "cap", 16, "val/auroc", 1.0, 0.01), "crept up by less than half a margin"
    assert not still_improving(_curve([0.6, 0.95, 0.9, 0.91]), 1, "cap", 16, "val/auroc", 1.0, 0.01)


def test_successive_halving_widens_a_grid_whose_best_value_is_at_its_edge_and_records_why():
    cfg = TrainConfig(batch_size=8, eval_every=2, max_steps=12, patience=0, tune_extend=2)
    tune = TuneSpec.parse({"lr": [0.01, 0.03, 0.09]}, lambda k: k)

    def score(method, i):  # higher lr scores higher, up to 0.3; then lower: the optimum is inside a widened grid
        return 0.5 + 0.1 * min(method.lr, 0.3) - 0.2 * max(0.0, method.lr - 0.3) + 0.001 * i

    task = TASKS.get("pneumonia-mnist")()
    train, val = _splits()
    tuned = Tuner(_build(cfg, score), _LrHead(), tune, cfg, task, seed=0).run(train, val, train)
    tried = sorted(c["values"]["lr"] for c in tuned.info["candidates"])
    assert tried == pytest.approx([0.01, 0.03, 0.09, 0.27, 0.81], rel=1e-4), "two steps outward at the top edge"
    assert tuned.chosen["lr"] == pytest.approx(0.27, rel=1e-4) and tuned.info["edge"]["lr"] == "inside"
    assert tuned.info["rungs"] and tuned.info["rungs"][0]["step"] == 4, "first rung at a third of the run"
    fates = {round(c["values"]["lr"], 6): c["fate"] for c in tuned.info["candidates"]}
    assert fates[0.01].startswith("stopped at rung 1") and fates[0.27] == "chosen"
    assert tuned.steps < 5 * 12, "halving: the eliminated candidates stopped early"


def test_a_chosen_run_still_improving_at_its_end_is_run_again_longer_up_to_the_declared_multiple():
    cfg = TrainConfig(batch_size=8, eval_every=2, max_steps=8, patience=0, extend_max=4)
    task = TASKS.get("pneumonia-mnist")()
    train, val = _splits()
    tuned = Tuner(_build(cfg, lambda m, i: 0.5 + 0.02 * i), _LrHead(), None, cfg, task, seed=0).run(train, val, train)
    assert [c["length"] for c in tuned.info["candidates"]] == [8, 16, 32]
    assert tuned.info["length"] == 32 and tuned.fit.schedule_steps == 32
    assert tuned.info["still_improving"], "still rising at 4x: the record says so"


def test_k_fold_selection_pools_the_folds_and_refits_on_the_whole_budget():
    cfg = TrainConfig(batch_size=8, eval_every=2, max_steps=8, validation="budget", cv_folds=4)
    task = TASKS.get("pneumonia-mnist")()
    whole = Split("train", np.zeros((32, 1)), LABELS[:32], np.arange(32))

    def build(method):
        runner = _build(cfg)(method)
        runner.features = {}
        runner.encode = lambda split: runner.features.setdefault(split.name, torch.from_numpy(FEATS[split.ids]))
        return runner

    tuned = Tuner(build, _LrHead(), None, cfg, task, seed=0).run(None, None, whole)
    assert tuned.info["folds"] == 4 and "4-fold" in tuned.info["selection"]
    assert tuned.refit is not None and tuned.refit.steps == tuned.fit.best_step
    assert tuned.steps == 4 * 8 + tuned.refit.steps


def test_a_real_cell_tunes_on_folds_of_its_own_budget_refits_and_scores_one_test_half(tiny_backbones, data):
    from bench.run.harness import execute

    settings = {"backbone": tiny_backbones["tiny-timm"], "max_steps": 6, "eval_every": 2, "patience": 0,
                "eval_limit": 0, "probe_limit": 20, "validation": "budget", "cv_folds": 2, "tie_break": "loss",
                "test_half": 1, "tune.lr": "1e-4,1e-3", "tune_extend": 1}  # fmt: skip
    record = execute(resolve(Cell("pneumonia-mnist", "full", 32, 0, settings)), data, "cpu")
    assert record.status == "ok", record.error
    info = record.tuning
    assert info["folds"] == 2 and info["chosen"]["lr"] in [c["values"]["lr"] for c in info["candidates"]]
    assert record.hparams["method"]["lr"] == info["chosen"]["lr"]
    assert record.splits.val == 32 and record.splits.folds == 2, "selection on folds of the whole budget"
    assert record.splits.test_half == 1 and record.splits.test in (312, 313), "one half of the 624 test images"
    assert record.cost.tuning_steps > record.cost.steps


def test_a_tuned_records_flags_and_summary_row_read_its_tuning_section():
    from bench.analysis.flags import at_grid_edge
    from bench.analysis.flags import still_improving as flag_still_improving
    from bench.analysis.sweeps import tuning_rows
    from bench.core.record import new_record

    def record(seed, chosen, edge, improving, added):
        r = new_record(resolve(Cell("pneumonia-mnist", "full", 64, seed, {"tune.lr": "1e-4,3e-4,1e-3"})), "ok")
        r.tuning = {"space": {"lr": [1e-4, 3e-4, 1e-3]}, "chosen": {"lr": chosen}, "edge": {"lr": edge},
                    "still_improving": improving, "selection": "4-fold cross-validation, pooled", "steps": 300,
                    "candidates": [{"added": a} for a in added]}  # fmt: skip
        return r

    rows = [record(0, 3e-4, "inside", False, ["grid"] * 3),
            record(1, 3e-3, "at the highest value tried (widening limit reached)", True, ["grid"] * 3 + ["edge"] * 2),
            record(2, 1e-3, "inside", False, ["grid"] * 3 + ["longer"])]  # fmt: skip
    assert [at_grid_edge(r) for r in rows] == [False, True, False]
    assert [flag_still_improving(r) for r in rows] == [False, True, False], "the tuner's verdict, not the curve's"
    (row,) = tuning_rows(rows)
    assert (row.widened, row.at_edge, row.lengthened, row.still_improving) == (1, 1, 1, 1)
    text = row.describe()
    assert "lr=0.0003 (s0)" in text and "AT THE EDGE after widening in 1/3" in text and "STILL IMPROVING in 1/3" in text


def test_a_run_whose_longer_rerun_validation_rejected_is_not_still_improving():
    from bench.analysis.flags import tuned_still_improving

    rejected = {"still_improving": True, "candidates": [{"added": "longer", "fate": "longer run not better"}]}
    assert not tuned_still_improving(rejected)
    assert tuned_still_improving({"still_improving": True, "candidates": [{"added": "grid", "fate": "chosen"}]})
