"""Selection inside one replicate: nested tuning by successive halving, grids that widen at their edges, k-fold
selection on small budgets with a refit, and runs that are lengthened while they still improve.

Everything here happens inside one cell's process, on that cell's own labelled examples: the seed that draws the
budget also tunes on it, so the spread over seeds holds the tuning's own noise (no seed reuses another's choice, and
the test set is never read). A cell's ``tune`` space (``bench.core.api.TuneSpec``) gives the candidates; a cell
without one has a single candidate, which still gets the k-fold selection and the lengthening when they apply.

**Successive halving.** Every candidate trains up to the first rung (``1 / tune_eta^k`` of the run, at a validation
pass); the best ``1 / tune_eta`` of them (at least one) go on to the next rung, the rest stop there; the last rung is
the run's end, where the best validation pass of the survivors decides. A candidate is ranked by its best pass so
far (the score, then, with ``tie_break=loss``, the validation loss). Runs pause and resume in memory
(``bench.run.loop.Trainer``): a survivor's run is exactly the run it would have had alone (same batches, rates and
passes; its own dropout stream), so halving changes only which candidates reach the end. Cost with three candidates:
1 + 2/3 runs instead of 3. The known price: a candidate that starts slowly can be cut at the first rung (Li et al.,
"Hyperband", 2018); ``tune_eta = 2`` keeps more of them.

**Grids that widen.** When the best candidate at a rung holds a grid's lowest or highest value of a field, the next
value outward (one grid step: the ratio of the two values at that edge) joins as a new candidate and trains up to the
rung, at most ``tune_extend`` times per side; the record says whether the chosen value is inside the tried values or
at an edge the limit stopped (``tuning.edge``).

**k-fold selection below ``cv_below`` labels** (``cv_folds``). A 64-example budget leaves ~13 examples to a carved
validation split: AUROC is 1.0 at the first pass in most runs and the choice is noise. Instead each candidate trains
once per fold (on the other folds) and its validation passes are scored on the pooled out-of-fold predictions of all
the budget's examples; the (candidate, step) with the best pooled score is then retrained on the whole budget for
that many steps (VTAB-1k's protocol: select, then refit on all the labels).

**Lengthening.** A chosen run whose validation score still rose at its end (its best pass is its last, and it gained
more than half the metric's margin over the last quarter of the run; ``still_improving``) is run again with a
schedule twice as long, up to ``extend_max`` times the planned length, and the longer run replaces it only if its
validation says so (when it does not, the record no longer calls the run still improving: the longer schedule was
tried). A run stopped by patience or one that merely crept up at the end is not lengthened.

Written by hand because the libraries that do successive halving (Optuna's pruners, Ray Tune's ASHA) schedule whole
trials as processes or threads with their own storage; here the candidates are a few paused models in one process,
their runs must stay bit-identical to an uninterrupted run, and the folds must be pooled before anything is ranked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bench.core.api import Method, Split, TrainConfig, TuneSpec
from bench.core.data import kfold_assignment
from bench.core.metrics import METRICS
from bench.core.record import VAL, metric_key
from bench.run.loop import FitResult, Runner, Trainer, schedule_length
from bench.run.selection import selection_key


@dataclass
class Arm:
    """One candidate: its values, the method with them, and one run per fold, advanced together."""

    values: dict[str, Any]
    method: Method
    length: int  # the schedule its runs are laid over (steps)
    trainers: list[Trainer]
    eval_at: list[int]
    curve: list[dict[str, Any]] = field(default_factory=list)  # pooled validation passes
    best: int | None = None  # index into ``curve``
    best_key: tuple[float, float] | None = None
    stale: int = 0
    stopped_by: str = ""
    fate: str = "running"
    added: str = ""  # why it joined: "grid", "edge" (a widened grid), "longer" (lengthened)

    @property
    def step(self) -> int:
        return self.trainers[0].step

    @property
    def done(self) -> bool:
        return all(t.done for t in self.trainers) or bool(self.stopped_by)

    @property
    def best_step(self) -> int | None:
        return None if self.best is None else self.curve[self.best]["step"]

    def summary(self, primary: str) -> dict[str, Any]:
        on = metric_key(VAL, primary)
        best = self.curve[self.best] if self.best is not None else {}
        return {
            "values": dict(self.values),
            "length": self.length,
            "steps": self.step,
            "best_step": self.best_step,
            on: best.get(on),
            "val/loss": best.get("val/loss"),
            "fate": self.fate,
            "added": self.added,
            "stopped_by": self.stopped_by or None,
        }


@dataclass
class Tuned:
    """What selection left: the runner whose model is the cell's result, the fit to record as the selection (its
    pooled passes), the refit on the whole budget when there was one, and the record's ``tuning`` section."""

    runner: Runner
    fit: FitResult
    refit: FitResult | None
    chosen: dict[str, Any]
    method: Method
    info: dict[str, Any]
    steps: int  # optimizer steps over every candidate and fold (the selection's whole cost)
    time_s: float


def folds_of(whole: Split, k: int, seed: int, stratify: bool) -> list[tuple[Split, Split]]:
    """(train, val) of each fold of a budget (``bench.core.data.kfold_assignment``)."""
    fold = kfold_assignment(whole.labels, k, seed, stratify)
    return [
        (whole.take(np.flatnonzero(fold != f), name="train"), whole.take(np.flatnonzero(fold == f), name="val"))
        for f in range(k)
    ]


def uses_cv(cfg: TrainConfig, budget_size: int) -> bool:
    """k-fold selection applies: cv_folds set, validation from the budget, and fewer labels than cv_below."""
    return bool(cfg.cv_folds) and cfg.validation == "budget" and budget_size < cfg.cv_below


def still_improving(curve: list[dict[str, Any]], best: int | None, stopped_by: str, length: int, on: str,
                    sign: float, margin: float) -> bool:  # fmt: skip
    """The run ended by its length (not by patience), its best pass is its last, and over its last quarter the
    validation score rose by more than half the metric's margin: a longer run would likely score higher."""
    if best is None or best != len(curve) - 1 or stopped_by not in ("cap", "schedule end") or len(curve) < 2:
        return False
    earlier = [p for p in curve[:-1] if p["step"] <= 0.75 * length] or curve[:1]
    before = max(sign * p[on] for p in earlier if not math.isnan(p[on])) if earlier else -math.inf
    tolerance = 0.5 * margin if margin == margin else 0.0
    return sign * curve[-1][on] - before > tolerance


class Tuner:
    """Runs the selection of one cell (see the module docstring). ``build(method)`` returns a fresh Runner whose model
    is the backbone prepared by ``method`` from the same starting weights every time (the cell seeds it)."""

    def __init__(
        self,
        build: Callable[[Method], Runner],
        method: Method,
        tune: TuneSpec | None,
        cfg: TrainConfig,
        task: Any,
        seed: int,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.build, self.base, self.tune, self.cfg, self.task, self.seed = build, method, tune, cfg, task, seed
        self.say = say or (lambda line: None)
        spec = task.spec
        self.primary, self.sign = spec.primary_metric, spec.sign
        self.on = metric_key(VAL, spec.primary_metric)
        self.margin = METRICS[spec.primary_metric].margin
        self.stratify = spec.kind == "classification"
        self.arms: list[Arm] = []
        self.extended: dict[tuple[str, int], int] = {}
        self.rungs: list[dict[str, Any]] = []
        self.folds: list[tuple[Split, Split]] = []
        self.longer_rejected = False

    # ---------------------------------------------------------------------------------------------- arms
    def _arm(self, values: dict[str, Any], length: int | None, added: str) -> Arm:
        method = replace(self.base, **values) if values else self.base
        if length is None:  # every fold and candidate on one schedule: the first fold's (sizes differ by a few)
            length = schedule_length(self.cfg, len(self.folds[0][0]))[0]
        trainers = []
        for train, val in self.folds:
            runner = self.build(method)
            runner.progress = None  # the arm speaks for its folds (pooled)
            trainers.append(
                Trainer(runner, method, train, val, self.seed, schedule=length, patience=0,
                        keep_best=len(self.folds) == 1, keep_outputs=len(self.folds) > 1, isolate_rng=True)
            )  # fmt: skip
        first = trainers[0]
        arm = Arm(values, method, first.total, trainers, sorted(first.eval_at), added=added)
        self.arms.append(arm)
        return arm

    def _advance(self, arm: Arm, until: int) -> None:
        """Every fold of ``arm`` to ``until``, pass by pass, pooling each pass and applying patience to the pool."""
        for step in [s for s in arm.eval_at if arm.step < s <= until]:
            if arm.done:
                return
            for t in arm.trainers:
                t.advance(step)
            self._pool(arm, step)

    def _pool(self, arm: Arm, step: int) -> None:
        if len(arm.trainers) == 1:
            entry = dict(arm.trainers[0].history[-1])
        else:
            outputs = np.concatenate([t.outputs.pop(step) for t in arm.trainers])
            labels = np.concatenate([t.val.labels for t in arm.trainers])
            metrics = self.task.evaluate(outputs, labels)
            loss = arm.trainers[0].runner.outputs_loss(outputs, labels)
            train_loss = float(np.mean([t.history[-1]["train_loss"] for t in arm.trainers]))
            entry = {"step": step, "train_loss": train_loss, **{f"{VAL}/{k}": v for k, v in metrics.items()},
                     "val/loss": loss}  # fmt: skip
        arm.curve.append(entry)
        key = selection_key(self.sign * entry[self.on], entry.get("val/loss", math.nan), self.cfg.tie_break)
        better = arm.best_key is None or key > arm.best_key
        if better:
            arm.best_key, arm.best, arm.stale = key, len(arm.curve) - 1, 0
        else:
            arm.stale += 1
        label = _values_text(arm.values) or "run"
        self.say(f"{label}  step {step}/{arm.length}  {self.on} {entry[self.on]:.4f}" + ("  (best)" if better else ""))
        if self.cfg.patience and arm.stale >= self.cfg.patience and step < arm.length:
            arm.stopped_by = "patience"
            for t in arm.trainers:
                t.stop("patience")
        elif step >= arm.length:
            arm.stopped_by = arm.trainers[0].result.stopped_by

    def _rank(self, arms: list[Arm]) -> list[Arm]:
        return sorted(arms, key=lambda a: a.best_key or (-math.inf, -math.inf), reverse=True)

    # ------------------------------------------------------------------------------------------- the run
    def run(self, train: Split | None, val: Split | None, whole: Split) -> Tuned:
        """Select on (``train``, ``val``), or on k folds of ``whole`` when cross-validation applies, and leave the
        chosen model: the selected run's best pass, or (k-fold, or ``refit``) a refit on ``whole``."""
        cfg = self.cfg
        cv = uses_cv(cfg, len(whole))
        if cv:
            self.folds = folds_of(whole, cfg.cv_folds, self.seed, self.stratify)
        else:
            self.folds = [(train, val)]
        candidates = self.tune.candidates(self.seed) if self.tune else [{}]
        arms = [self._arm(values, None, "grid") for values in candidates]
        length = arms[0].length
        points = arms[0].eval_at
        n_rungs = 1 + math.floor(math.log(len(arms)) / math.log(cfg.tune_eta) + 1e-9) if len(arms) > 1 else 1
        alive = list(arms)
        for r in range(n_rungs):
            target = length / cfg.tune_eta ** (n_rungs - 1 - r)
            rung = next((s for s in points if s >= target - 1e-9), length)
            for arm in alive:
                self._advance(arm, rung)
            alive = self._widen(alive, rung)
            ranked = self._rank(alive)
            if r < n_rungs - 1:
                keep = max(1, math.ceil(len(ranked) / cfg.tune_eta))
                for arm in ranked[keep:]:
                    arm.fate = f"stopped at rung {r + 1} (step {rung})"
                    for t in arm.trainers:
                        t.stop("rung")
                        t.release()
                alive = ranked[:keep]
                self.rungs.append({"rung": r + 1, "step": rung, "kept": [a.values for a in alive],
                                   "scores": [{**a.values, self.on: a.curve[a.best][self.on]} for a in ranked
                                              if a.best is not None]})  # fmt: skip
                self.say(f"rung {r + 1} (step {rung}): keep " + "; ".join(_values_text(a.values) for a in alive))
        chosen = self._rank(alive)[0]
        chosen = self._lengthen(chosen, length)
        for arm in self.arms:
            if arm is not chosen and arm.fate == "running":
                arm.fate = "not chosen"
        chosen.fate = "chosen"
        return self._finish(chosen, whole, cv)

    def _widen(self, alive: list[Arm], rung: int) -> list[Arm]:
        """Add the next grid value outward while the best candidate sits at an edge (``tune_extend`` per side)."""
        if self.tune is None or not self.tune.grid:
            return alive
        while True:
            best = self._rank(alive)[0]
            added = None
            for name, _ in self.tune.grid:
                others = {k: v for k, v in best.values.items() if k != name}
                tried = [
                    a.values[name] for a in self.arms if {k: v for k, v in a.values.items() if k != name} == others
                ]
                for side in (-1, 1):
                    edge = min(tried) if side < 0 else max(tried)
                    if best.values[name] != edge or len(set(tried)) < 2:
                        continue
                    if self.extended.get((name, side), 0) >= self.cfg.tune_extend:
                        continue
                    value = self.tune.outward(name, tried, side)
                    if value is None:
                        continue
                    self.extended[(name, side)] = self.extended.get((name, side), 0) + 1
                    added = self._arm({**best.values, name: value}, best.length, "edge")
                    self.say(f"{_values_text(best.values)} is at the grid's edge: trying {name}={value:g}")
                    self._advance(added, rung)
                    break
                if added is not None:
                    break
            if added is None:
                return alive
            alive = [*alive, added]

    def _lengthen(self, chosen: Arm, length: int) -> Arm:
        """Run the chosen candidate again twice as long while it was still improving at its end (``extend_max``)."""
        while self.cfg.extend_max > 1 and chosen.length * 2 <= length * self.cfg.extend_max:
            if not still_improving(chosen.curve, chosen.best, chosen.stopped_by, chosen.length, self.on, self.sign,
                                   self.margin):  # fmt: skip
                return chosen
            longer = self._arm(chosen.values, chosen.length * 2, "longer")
            self.say(f"{_values_text(chosen.values) or 'the run'} was still improving at step {chosen.length}: "
                     f"running it again for {longer.length} steps")  # fmt: skip
            self._advance(longer, longer.length)
            if self._rank([chosen, longer])[0] is longer:
                chosen.fate = f"lengthened to {longer.length} steps"
                chosen = longer
            else:
                longer.fate = "longer run not better"
                self.longer_rejected = True  # the longer schedule was tried: validation kept the shorter run
                return chosen
        return chosen

    def _finish(self, chosen: Arm, whole: Split, cv: bool) -> Tuned:
        cfg = self.cfg
        steps = sum(t.step for a in self.arms for t in a.trainers)
        time_s = sum(t.elapsed for a in self.arms for t in a.trainers)
        fit = chosen.trainers[0].finish()
        fit.history, fit.best_step = chosen.curve, chosen.best_step
        fit.best_val = {k.split("/", 1)[1]: v for k, v in chosen.curve[chosen.best].items()
                        if k.startswith(f"{VAL}/") and k != "val/loss"}  # fmt: skip
        fit.stopped_by = chosen.stopped_by or fit.stopped_by
        fit.steps, fit.schedule_steps = chosen.step, chosen.length
        runner, refit = chosen.trainers[0].runner, None
        for arm in self.arms:
            for t in arm.trainers:
                if arm is not chosen or cv:
                    t.release()
        if cv or cfg.refit:
            runner = self.build(chosen.method)
            trainer = Trainer(runner, chosen.method, whole, None, self.seed, schedule=chosen.length,
                              stop_at=chosen.best_step)  # fmt: skip
            trainer.advance(trainer.last)
            refit = trainer.finish()
            steps += refit.steps
            time_s += trainer.elapsed
        info = {
            "space": self.tune.as_dict() if self.tune else {},
            "chosen": dict(chosen.values),
            "selection": f"{cfg.cv_folds}-fold cross-validation, pooled" if cv else "carved validation split",
            "folds": cfg.cv_folds if cv else 1,
            "tie_break": cfg.tie_break,
            "eta": cfg.tune_eta,
            "rungs": self.rungs,
            "edge": self._edge(chosen),
            "candidates": [a.summary(self.primary) for a in self.arms],
            "planned_steps": self.arms[0].length,
            "length": chosen.length,
            "still_improving": not self.longer_rejected
            and still_improving(
                chosen.curve, chosen.best, chosen.stopped_by, chosen.length, self.on, self.sign, self.margin
            ),
            "steps": steps,
            "time_s": time_s,
        }
        return Tuned(runner, fit, refit, dict(chosen.values), chosen.method, info, steps, time_s)

    def _edge(self, chosen: Arm) -> dict[str, str]:
        """Per grid field: "inside" the tried values, or at an edge with the widening's limit reached (or a field
        that cannot widen)."""
        out: dict[str, str] = {}
        if self.tune is None:
            return out
        for name, _ in self.tune.grid:
            tried = sorted({a.values[name] for a in self.arms if a.added != "longer"}, key=_order)
            if len(tried) < 2 or chosen.values[name] not in (tried[0], tried[-1]):
                out[name] = "inside"
            else:
                side = -1 if chosen.values[name] == tried[0] else 1
                out[name] = f"at the {'lowest' if side < 0 else 'highest'} value tried (widening limit reached)"
        return out


def _order(v: Any) -> Any:
    return (0, v) if isinstance(v, int | float) and not isinstance(v, bool) else (1, str(v))


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
