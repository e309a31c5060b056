"""The one train/eval loop: AdamW over the method's parameter groups, linear warmup then linear decay,
validation-based selection of the best evaluation point, and honest throughput (warm-up steps excluded).

When the method sets ``cache_features`` the backbone runs once per split under ``inference_mode`` and only the
head trains, on the cached features: the expensive part is never repeated. A method that also sets
``linear_probe`` gets its head fitted by full-batch L-BFGS over its L2 grid (bench.run.linear_probe) instead of
mini-batch steps.

Evaluation batches text by length (``eval_order``) and puts the outputs back in the split's order: batches are
padded to their longest member, so mixing a 5-token phrase with a 60-token sentence wastes most of the compute.
Training on text groups by length the way Hugging Face's ``group_by_length`` does (``epoch_batches``): each epoch
is a fresh random permutation, cut into mega-batches of 16 batches, each sorted by length and cut into batches,
and the batches are shuffled. On SST-2 this pads a batch to ~16 tokens instead of ~41 (a random batch of 32
phrases almost always holds one long sentence). ``group_by_length=false`` gives plain random batches. Lengths are
characters by default (the behaviour every earlier record has) or, with ``length_unit=tokens``, the batcher's exact
token counts, which pad ~17% less on SST-2.

Gradient accumulation (``Runner(grad_accum=...)``, set by the harness when a cell ran out of memory and is retried)
splits each batch into that many micro-batches, each loss weighted by its share of the batch, and steps the optimizer
once: the effective batch, the number of optimizer steps and (up to float rounding and batch-norm statistics,
which see smaller batches) the result are unchanged. Evaluation batches shrink by the same factor.

Early stopping (``patience`` > 0): validation runs at the usual points (every ``eval_every`` steps, or ``max_evals``
passes spread over the run) and training stops after ``patience`` passes in a row without a strictly better primary
metric; the best weights are restored as always. The run's length is the cap (``max_steps``, or the fixed schedule
when it is 0: ``schedule_length``), and the LR schedule (linear warmup over ``warmup_ratio`` of it, then linear decay
to zero at its end) is laid over the cap, not over wherever training happens to stop. A patience run is therefore
the fixed run of that length truncated: the same learning rate at every step, the same validation points and the
same best checkpoint up to where it stopped, so stopping is the only difference between the two, and a refit can
replay the selected trajectory exactly (``fit(schedule=..., stop_at=...)``). A constant rate after warmup would
have made the patience run a different optimiser from the fixed one (and from DOMAIN.md's warmup + linear decay
recipe), mixing two changes in one comparison; the price is that a cap far beyond the stopping point decays
slowly, so set ``max_steps`` near the longest run worth paying for.

On CUDA, fp32 matmuls and convolutions use TF32 (``allow_tf32``), and ``precision=bf16`` adds bf16 autocast.
``compile=true`` compiles the adapted model's forward in place (``nn.Module.compile``: the state dict keeps its
names) for training and evaluation; the first steps compile, and they are the warm-up steps excluded from
throughput, so ``compile_time_s`` is their extra time over a timed step. Cached-feature methods call the head and
the encoder directly, and few-shot predictors replace the model, so compile does not apply to them. If a compiled
call fails, the error is recorded (``compile_error``) and the model runs eagerly from then on.

Each validation pass prints one line through ``Runner.progress`` (default: stdout, flushed), e.g.
``step 16/64  train_loss 0.512  val/accuracy 0.8120  (best)``: the step out of the run's length (the cap under
patience), the last batch's loss, the primary metric, and whether it is the best so far. In a cell's process stdout
is a file the grid follows (bench.run.harness), so these lines show up in the grid's output while the cell runs; the
record never depends on them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.core.api import CLASSIFICATION, FitContext, Method, Predictor, Split, Task, TrainConfig
from bench.core.data import kfold_assignment
from bench.core.record import VAL, metric_key, split_of
from bench.run.meters import Clock
from bench.run.selection import selection_key, widen

TIMING_WARMUP_STEPS = 2  # steps excluded from throughput (allocator, lazy init, first-batch effects)


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite: the run diverged (the record says at which step)."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"training diverged: loss is {loss} at step {step}; lower the learning rate")
        self.step, self.loss = step, loss


@dataclass
class FitResult:
    steps: int = 0
    epochs: float = 0.0
    best_step: int = 0
    best_val: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    train_time_s: float = 0.0
    feature_time_s: float = 0.0  # cached-feature methods: the backbone pass over train and val
    head_time_s: float = 0.0  # cached-feature methods: the head's training on the features
    feature_samples_per_s: float | None = None  # examples encoded per second (None: all from the cache)
    train_samples_per_s: float | None = None  # gradient steps through the model (None for cached features)
    schedule_steps: int = 0  # the run's planned length (the cap under patience): the LR schedule's
    stopped_by: str = ""  # "schedule end" | "cap" | "patience" | "selected step" (a refit); linear probes:
    # "converged" | "selected strength" (a refit)


class Runner:
    """Holds what a cell's loop needs: model, batcher, device, precision. Built by the harness."""

    def __init__(
        self, model: nn.Module, batcher, task: Task, cfg: TrainConfig, device: str, grad_accum: int = 1
    ) -> None:
        if grad_accum < 1:
            raise ValueError(f"Invalid grad_accum: {grad_accum} (must be >= 1)")
        self.model = model
        self.batcher = batcher
        self.notes: dict[str, Any] = {}  # what a method wants recorded about how it ran
        self.task = task
        self.cfg = cfg
        self.device = device
        self.clock = Clock(device)
        if cfg.precision == "bf16" and device != "cuda":
            raise ValueError("precision=bf16 needs a CUDA device here; use precision=fp32 on the CPU")
        self.features: dict[str, torch.Tensor] = {}  # split name -> cached backbone features
        self.feature_cache = None  # a bench.core.cache.FeatureCache: features shared across cells
        self.encode_time_s = 0.0  # time spent computing (or loading) backbone features
        self.outputs: dict[str, np.ndarray] = {}  # split name -> outputs of its last evaluation
        self.grad_accum = grad_accum  # micro-batches per optimizer step (the harness's retry after an OOM)
        self.progress: Callable[[str], None] | None = _print_line  # one line per validation pass; None: silent
        self.eval_batch_size = max(1, cfg.eval_batch_size // self.grad_accum)
        if device == "cuda":  # TF32 tensor cores for fp32 matmuls and convolutions where the GPU has them
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.compiled, self.compile_error, self.compile_time_s = False, None, None
        if cfg.compile:
            self.model.compile()
            self.compiled = True

    def compile_info(self) -> dict[str, Any]:
        """What the record says about compile=true (nothing when it was not asked for)."""
        if not self.cfg.compile:
            return {}
        return {"compiled": self.compiled, "compile_time_s": self.compile_time_s, "compile_error": self.compile_error}

    def _call_model(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's forward; under compile, a failing compiled call is recorded and retried eagerly (a real
        error then raises from the eager call)."""
        if not self.compiled:
            return self.model(**inputs)
        try:
            return self.model(**inputs)
        except Exception as e:  # recorded; the eager retry raises whatever error is real
            self.compile_error = f"{type(e).__name__}: {e}"[:500]
            self.model._compiled_call_impl = None
            self.compiled = False
            return self.model(**inputs)

    def fit_predictor(self, method: Method, train: Split, seed: int, tokenizer: Any = None) -> Predictor:
        """For methods without gradient steps: let the method build its predictor from the training subset (it
        reads, never mutates, the loop), then evaluate with it."""
        ctx = FitContext(
            task=self.task,
            train=train,
            seed=seed,
            device=self.device,
            encoder=self.model.encoder,
            tokenizer=tokenizer,
            features=self.encode,
        )
        predictor = method.predictor(ctx)
        self.use(predictor)
        return predictor

    def use(self, predictor: Predictor) -> None:
        """Evaluate with a method's predictor from now on (methods without gradient steps): a head over the cached
        backbone features, or a whole model with its own batcher."""
        if predictor.on_features:
            self.model.head = predictor.module
        else:
            self.model = predictor.module
        if predictor.batcher is not None:
            self.batcher = predictor.batcher
        self.notes = dict(predictor.notes)

    # ------------------------------------------------------------------------------------ helpers
    def autocast(self):
        if self.cfg.precision == "bf16":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def inputs(self, split: Split, index: np.ndarray) -> dict[str, torch.Tensor]:
        sub = split.inputs[index] if isinstance(split.inputs, np.ndarray) else [split.inputs[i] for i in index]
        return {k: v.to(self.device, non_blocking=True) for k, v in self.batcher(sub).items()}

    def loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.task.spec.kind == CLASSIFICATION:
            return nn.functional.cross_entropy(outputs.float(), labels.long())
        return nn.functional.mse_loss(outputs.float().squeeze(-1), labels.float())

    def encode(self, split: Split) -> torch.Tensor:
        """Backbone features of a whole split (frozen encoder, eval mode), computed once per cell and, with a
        ``feature_cache``, once per example across cells (see bench.core.cache)."""
        if split.name not in self.features:
            start = self.clock.now()
            if self.feature_cache is None:
                feats = self._encode_rows(split, np.arange(len(split)))
            else:
                cached = self.feature_cache.features(  # by the pool the ids number (a carved val: train's)
                    split.pool_name, split.ids, lambda rows: self._encode_rows(split, rows).cpu().numpy()
                )
                feats = torch.from_numpy(cached).to(self.device)
            self.features[split.name] = feats
            self.encode_time_s += self.clock.now() - start
        return self.features[split.name]

    def _encode_rows(self, split: Split, rows: np.ndarray) -> torch.Tensor:
        sub = split.take(rows)
        encoder = self.model.encoder.eval()
        order, out = eval_order(sub), []
        with torch.inference_mode(), self.autocast():
            for sl in _slices(len(sub), self.cfg.eval_batch_size):
                out.append(encoder(**self.inputs(sub, order[sl])).float())
        return torch.cat(out)[torch.from_numpy(np.argsort(order)).to(self.device)]

    def forward_batch(self, split: Split, index: np.ndarray, cached: bool) -> torch.Tensor:
        if cached:
            return self.model.head(self.features[split.name][torch.from_numpy(index).to(self.device)])
        return self._call_model(self.inputs(split, index))

    def predict(self, split: Split, cached: bool) -> tuple[np.ndarray, float]:
        """(outputs, examples per second). For cached methods the backbone pass is included in the time."""
        self.model.eval()
        start = self.clock.now()
        if cached:
            self.encode(split)
        outs, timed_n, timed_start = [], 0, None
        order = np.arange(len(split)) if cached else eval_order(split)
        with torch.inference_mode(), self.autocast():
            for i, sl in enumerate(_slices(len(split), self.eval_batch_size)):
                if i == 1 and not cached:  # first batch is warm-up
                    timed_start = self.clock.now()
                outs.append(self.forward_batch(split, order[sl], cached).float().cpu())
                if i >= 1:
                    timed_n += sl.stop - sl.start
        end = self.clock.now()
        if cached or timed_start is None:
            rate = len(split) / max(end - start, 1e-9)
        else:
            rate = timed_n / max(end - timed_start, 1e-9)
        return torch.cat(outs).numpy()[np.argsort(order)], rate

    def evaluate(self, split: Split, cached: bool) -> tuple[dict[str, float], float]:
        outputs, rate = self.predict(split, cached)
        self.outputs[split.name] = outputs
        return self.task.evaluate(outputs, split.labels), rate

    def outputs_loss(self, outputs: np.ndarray, labels: np.ndarray) -> float:
        """The task's loss (cross-entropy, or squared error) of ``outputs`` against ``labels``: a validation pass's
        second opinion, which breaks ties of the primary metric."""
        with torch.no_grad():
            return float(self.loss(torch.as_tensor(outputs), torch.as_tensor(labels)))

    # --------------------------------------------------------------------------------------- fit
    def fit(
        self,
        method: Method,
        train: Split,
        val: Split | None,
        seed: int,
        *,
        schedule: int | None = None,
        stop_at: int | None = None,
    ) -> FitResult:
        """Train with validation-based selection: the weights at the best validation pass are restored at the end.
        The run is ``schedule_length`` steps, or fewer when ``patience`` stops it (see the module docstring).

        A refit passes ``val=None`` with the selection run's ``schedule`` (its length: the LR schedule and the
        method's step schedule) and ``stop_at`` (the selected step): the same trajectory replayed on more data,
        without validation, keeping the final weights."""
        cfg = self.cfg
        cached = method.cache_features
        if cached and getattr(method, "linear_probe", False):
            start = self.clock.now()
            result = FitResult()
            for split in [train] if val is None else [train, val]:
                self.encode(split)
            result.feature_time_s = self.clock.now() - start
            n_encoded = len(train) + (len(val) if val is not None else 0)
            self._fit_probe(method, train, val, result)
            return self._finish(result, start, cached, n_encoded, 0, 0.0, 0.0)
        trainer = Trainer(self, method, train, val, seed, schedule=schedule, stop_at=stop_at, patience=cfg.patience)
        trainer.advance(trainer.last)
        return trainer.finish()

    def _finish(
        self,
        result: FitResult,
        start: float,
        cached: bool,
        n_encoded: int,
        timed_n: int,
        timed_time: float,
        warmup_time: float,
        step: int = 0,
    ) -> FitResult:
        """Times and throughput of a finished fit."""
        cfg = self.cfg
        result.train_time_s = self.clock.now() - start
        if cached:
            # two costs of different kinds, reported apart: the backbone's one pass over train and val (examples
            # per second; none when every feature came from the cache) and the head's steps on the features
            result.head_time_s = result.train_time_s - result.feature_time_s
            encoded = self.feature_cache.computed if self.feature_cache is not None else n_encoded
            if encoded:
                result.feature_samples_per_s = encoded / max(result.feature_time_s, 1e-9)
        else:
            result.train_samples_per_s = timed_n / max(timed_time, 1e-9)
        if cfg.compile and timed_n and step > TIMING_WARMUP_STEPS:
            per_step = timed_time / (step - TIMING_WARMUP_STEPS)
            self.compile_time_s = max(0.0, warmup_time - TIMING_WARMUP_STEPS * per_step)
        return result

    def _fit_probe(self, method: Method, train: Split, val: Split, result: FitResult) -> None:
        """``frozen``'s head: a linear probe fitted by full-batch L-BFGS over the method's L2 grid on the cached
        features, the strength selected on validation (see bench.run.linear_probe)."""
        from bench.run.linear_probe import fit_linear_probe

        primary = self.task.spec.primary_metric
        sign = self.task.spec.sign

        def validate() -> tuple[float, dict[str, float]]:
            if val is None:
                return 0.0, {}
            metrics, _ = self.evaluate(val, True)
            loss = self.outputs_loss(self.outputs[val.name], val.labels) if self.cfg.tie_break == "loss" else None
            extra = {} if loss is None else {metric_key(VAL, "loss"): loss}
            return sign * metrics[primary], {**_prefixed("val", metrics), **extra}

        grid = tuple(method.l2)
        if val is None:  # a refit: the strength the selection run chose, fitted on the whole budget
            if "probe_l2" not in self.notes:
                raise ValueError("a linear probe refit needs the selection run's choice (fit with validation first)")
            grid = (self.notes["probe_l2"],)
        method.train_mode(self.model)
        x = self.encode(train)  # already computed by fit: the cached features
        y = torch.as_tensor(train.labels).to(self.device)
        extend = self.cfg.tune_extend if self.cfg.tie_break == "loss" and val is not None else 0
        probe = fit_linear_probe(
            self.model.head, x, y, self.loss, grid, validate, method.max_iter, self.cfg.tie_break, extend
        )
        chosen = probe.selected
        result.history = probe.history
        result.best_step = chosen["step"]
        result.best_val = {split_of(k)[1]: v for k, v in chosen.items() if split_of(k)[0] == VAL}
        result.steps = probe.iterations  # full-batch: each L-BFGS iteration sees every training example
        result.epochs = float(probe.iterations)
        result.schedule_steps = probe.iterations
        result.stopped_by = "converged" if val is not None else "selected strength"  # L-BFGS's own tolerances
        if val is None:
            return
        grid = sorted(float(v) for v in method.l2)
        self.notes.update(probe="lbfgs", probe_l2=chosen["l2"], probe_l2_grid=grid)
        tried = sorted(float(h["l2"]) for h in probe.history)
        if any(probe.widened.values()):
            self.notes["probe_l2_widened"] = probe.widened
        if len(tried) > 1 and chosen["l2"] in (tried[0], tried[-1]):
            self.notes["probe_l2_at_grid_edge"] = True  # the best strength may lie outside the grid: widen it

    def fit_probe_cv(self, method: Method, whole: Split, k: int, seed: int) -> FitResult:
        """``frozen`` on a small budget (``cv_folds``): each L2 strength is scored on the pooled out-of-fold
        predictions of k folds of the whole budget (a tie: the lower pooled loss, then the stronger), the grid widened
        at its edges (``tune_extend`` per side), and the probe is then fitted on the whole budget at the chosen
        strength. Features are the cached ones; each fold starts from the same initial head."""
        from bench.run.linear_probe import _fit_one

        start = self.clock.now()
        result = FitResult()
        x = self.encode(whole)
        result.feature_time_s = self.clock.now() - start
        y = torch.as_tensor(whole.labels).to(self.device)
        head = self.model.head
        initial = {k_: v.detach().clone() for k_, v in head.state_dict().items()}
        params = [p for p in head.parameters() if p.requires_grad]
        fold = kfold_assignment(whole.labels, k, seed, self.task.spec.kind == CLASSIFICATION)
        primary, sign = self.task.spec.primary_metric, self.task.spec.sign
        iterations = 0

        def score(l2: float) -> dict[str, Any]:
            nonlocal iterations
            pooled = None
            for f in range(k):
                rows = torch.from_numpy(np.flatnonzero(fold != f)).to(self.device)
                out_rows = np.flatnonzero(fold == f)
                head.load_state_dict(initial)
                head.train()
                _, steps, _ = _fit_one(head, params, x[rows], y[rows], self.loss, l2, method.max_iter)
                iterations += steps
                head.eval()
                with torch.no_grad():
                    out = head(x[torch.from_numpy(out_rows).to(self.device)]).float().cpu().numpy()
                pooled = np.zeros((len(whole), *out.shape[1:]), dtype=np.float32) if pooled is None else pooled
                pooled[out_rows] = out
            metrics = self.task.evaluate(pooled, whole.labels)
            loss = self.outputs_loss(pooled, whole.labels)
            return {"step": iterations, "l2": l2, **_prefixed("val", metrics), metric_key(VAL, "loss"): loss}

        def key(entry: dict[str, Any]) -> tuple[float, float]:
            return selection_key(sign * entry[metric_key(VAL, primary)], entry["val/loss"], "loss")

        grid = sorted((float(v) for v in method.l2), reverse=True)  # strongest first: it wins an exact tie
        history = [score(l2) for l2 in grid]
        widened = {-1: 0, 1: 0}
        while nxt := widen([h["l2"] for h in history], max(history, key=key)["l2"], widened, self.cfg.tune_extend):
            history.append(score(nxt))
        chosen = max(history, key=key)
        head.load_state_dict(initial)
        method.train_mode(self.model)
        _, steps, _ = _fit_one(head, params, x, y, self.loss, chosen["l2"], method.max_iter)
        iterations += steps
        head.eval()
        result.history = history
        result.best_step = chosen["step"]
        result.best_val = {
            split_of(k_)[1]: v for k_, v in chosen.items() if split_of(k_)[0] == VAL and k_ != "val/loss"
        }
        result.steps = result.schedule_steps = iterations
        result.epochs = float(iterations)
        result.stopped_by = "selected strength"
        tried = sorted(h["l2"] for h in history)
        self.notes.update(probe="lbfgs", probe_l2=chosen["l2"], probe_l2_grid=sorted(float(v) for v in method.l2),
                          probe_selection=f"{k}-fold cross-validation, pooled; refit on the whole budget")  # fmt: skip
        if any(widened.values()):
            self.notes["probe_l2_widened"] = {"weaker": widened[-1], "stronger": widened[1]}
        if chosen["l2"] in (tried[0], tried[-1]):
            self.notes["probe_l2_at_grid_edge"] = True
        return self._finish(result, start, True, len(whole), 0, 0.0, 0.0)

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of what training can change in the model as it is now (trainable parameters and buffers), for
        ``restore``: a refit starts again from the weights the selection run started from."""
        return _snapshot(self.model)

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=False)

    def _accumulate(
        self, train: Split, index: np.ndarray, labels: torch.Tensor, cached: bool, method: Method, step: int
    ) -> float:
        """Forward and backward one batch as ``grad_accum`` micro-batches, each loss weighted by its share of the
        batch (so the gradient is the full batch's); the method's penalty is added once. Returns the batch loss."""
        total = 0.0
        parts = [p for p in np.array_split(index, min(self.grad_accum, len(index))) if len(p)]
        for i, part in enumerate(parts):
            with self.autocast():
                outputs = self.forward_batch(train, part, cached)
            loss = self.loss(outputs, labels[part].to(self.device)) * (len(part) / len(index))
            if i == 0:
                extra = method.penalty(self.model)
                if extra is not None:
                    loss = loss + extra
            value = float(loss.item())
            if not math.isfinite(value):
                raise DivergedError(step, value)
            loss.backward()
            total += value
        return total


class Trainer:
    """One training run that can pause at any step and resume (``advance``), so several runs can share a process and
    a budget of steps: the candidates of nested tuning and the folds of cross-validation (``bench.run.tuning``), each
    paused at a rung while the others catch up. A run advanced in pieces is the run advanced at once: the same
    batches, learning rates, validation passes and, with ``isolate_rng``, its own torch random stream (dropout) kept
    apart from the other runs'. ``Runner.fit`` is a Trainer advanced to its end.

    Validation passes record the primary metric, every other metric and the validation ``loss`` (the task's loss on
    the validation outputs, which breaks ties under ``tie_break=loss``); with ``keep_outputs`` the outputs of each
    pass too, for cross-validation to pool over folds. ``patience`` (0: never) stops the run after that many passes
    without a better one; a tuner that pools folds passes 0 and stops the run itself."""

    def __init__(
        self,
        runner: Runner,
        method: Method,
        train: Split,
        val: Split | None,
        seed: int,
        *,
        schedule: int | None = None,
        stop_at: int | None = None,
        patience: int = 0,
        keep_best: bool = True,
        keep_outputs: bool = False,
        isolate_rng: bool = False,
    ) -> None:
        self.runner, self.method, self.train, self.val = runner, method, train, val
        cfg = self.cfg = runner.cfg
        self.cached = method.cache_features
        self.result = FitResult()
        self.start = runner.clock.now()
        if self.cached:
            for split in [train] if val is None else [train, val]:
                runner.encode(split)
            self.result.feature_time_s = runner.clock.now() - self.start
        self.n_encoded = len(train) + (len(val) if val is not None else 0)
        self.groups = [g for g in method.param_groups(runner.model) if g["params"]]
        if not self.groups:
            raise ValueError(f"method {method.name} gave no trainable parameters")
        self.optimizer = torch.optim.AdamW(self.groups, weight_decay=cfg.weight_decay)
        n = self.n = len(train)
        self.steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        total, end_reason = schedule_length(cfg, n)
        if schedule is not None:
            total = schedule
        self.total = total
        self.last = min(stop_at, total) if stop_at else total
        self.result.schedule_steps = total
        warmup = math.ceil(cfg.warmup_ratio * total)
        shape = _warmup_linear(warmup, total) if cfg.lr_schedule == "linear" else _warmup_multistep(warmup, total)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, shape)
        self.eval_at = (
            eval_steps(total, self.steps_per_epoch, cfg.max_evals, cfg.eval_every) if val is not None else set()
        )
        self.patience, self.keep_best, self.keep_outputs = patience, keep_best, keep_outputs
        self.outputs: dict[int, np.ndarray] = {}  # step -> validation outputs (keep_outputs)
        self.best_key: tuple[float, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0
        self.rng = np.random.default_rng(seed)
        self.labels = torch.as_tensor(train.labels)
        self.trainable = [p for g in self.groups for p in g["params"]]
        in_optimizer = {id(p) for p in self.trainable}
        # every parameter the optimizer may change, frozen or not right now (gradual unfreezing thaws more later)
        self.changeable = {name for name, p in runner.model.named_parameters() if id(p) in in_optimizer}
        self.lengths = None
        if cfg.group_by_length:
            self.lengths = token_lengths(runner.batcher, train) if cfg.length_unit == "tokens" else text_lengths(train)
        self.batches, self.b = epoch_batches(self.rng, n, cfg.batch_size, self.lengths), 0
        self.timed_time, self.timed_n, self.warmup_time = 0.0, 0, 0.0
        self.step = 0
        self.stopped = False
        self.result.stopped_by = end_reason if self.last == total else "selected step"
        self.torch_rng = torch.get_rng_state() if isolate_rng else None
        self.elapsed = 0.0  # seconds spent in advance (a paused run costs nothing)

    @property
    def done(self) -> bool:
        return self.stopped or self.step >= self.last

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.result.history

    def advance(self, until: int) -> None:
        """Run steps up to ``until`` (at most the run's last step), unless patience stops the run first."""
        if self.done or until <= self.step:
            return
        outer = torch.get_rng_state() if self.torch_rng is not None else None
        if self.torch_rng is not None:
            torch.set_rng_state(self.torch_rng)
        began = self.runner.clock.now()
        try:
            self._steps(min(until, self.last))
        finally:
            self.elapsed += self.runner.clock.now() - began
            if self.torch_rng is not None:
                self.torch_rng = torch.get_rng_state()
                torch.set_rng_state(outer)
            self.optimizer.zero_grad(set_to_none=True)  # a paused run holds no gradients

    def stop(self, reason: str = "patience") -> None:
        """End the run here (a tuner's pooled patience, or its elimination at a rung)."""
        if not self.done:
            self.stopped, self.result.stopped_by = True, reason

    def _steps(self, until: int) -> None:
        runner, cfg, method = self.runner, self.cfg, self.method
        for step in range(self.step + 1, until + 1):
            if self.b >= len(self.batches):
                self.batches, self.b = epoch_batches(self.rng, self.n, cfg.batch_size, self.lengths), 0
            index, self.b = self.batches[self.b], self.b + 1
            method.on_step(runner.model, step, self.total)
            method.train_mode(runner.model)
            t0 = runner.clock.now()
            self.optimizer.zero_grad(set_to_none=True)
            loss = runner._accumulate(self.train, index, self.labels, self.cached, method, step)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            if step > TIMING_WARMUP_STEPS or self.last <= TIMING_WARMUP_STEPS:
                self.timed_time += runner.clock.now() - t0
                self.timed_n += len(index)
            else:
                self.warmup_time += runner.clock.now() - t0
            self.step = step
            if step in self.eval_at and self._validate(step, loss):
                self.stopped, self.result.stopped_by = True, "patience"
                return

    def _validate(self, step: int, loss: float) -> bool:
        """One validation pass at ``step``; True when patience ends the run here."""
        runner = self.runner
        primary, sign = runner.task.spec.primary_metric, runner.task.spec.sign
        metrics, _ = runner.evaluate(self.val, self.cached)
        outputs = runner.outputs[self.val.name]
        val_loss = runner.outputs_loss(outputs, self.val.labels)
        entry = {"step": step, "train_loss": loss, **_prefixed("val", metrics), metric_key(VAL, "loss"): val_loss}
        self.result.history.append(entry)
        if self.keep_outputs:
            self.outputs[step] = outputs
        key = selection_key(sign * metrics[primary], val_loss, self.cfg.tie_break)
        best = self.best_key is None or key > self.best_key
        if best:
            self.best_key, self.result.best_step, self.result.best_val = key, step, metrics
            if self.keep_best:
                self.best_state = _snapshot(runner.model, self.changeable)
            self.stale = 0
        else:
            self.stale += 1
        stop = bool(self.patience and self.stale >= self.patience and step < self.last)
        if runner.progress is not None:
            line = pass_line(
                step, self.last, loss, metric_key(VAL, primary), metrics[primary], best, self.stale if stop else 0
            )
            runner.progress(line)
        return stop

    def finish(self) -> FitResult:
        """The run's result; the model holds the best validation pass's weights (a refit: the final ones)."""
        result = self.result
        if self.best_state is not None:
            self.runner.model.load_state_dict(self.best_state, strict=False)
        elif self.val is None:  # a refit: no validation, the final weights are the result
            result.best_step = self.step
        result.steps = self.step
        result.epochs = self.step / max(
            1, math.ceil(self.n / self.cfg.batch_size)
        )  # passes (the last batch is partial)
        result = self.runner._finish(
            result, self.start, self.cached, self.n_encoded, self.timed_n, self.timed_time, self.warmup_time, self.step
        )
        if self.torch_rng is not None:  # a run that paused while others ran: its own time, not the span
            result.train_time_s = self.elapsed + result.feature_time_s
        return result

    def release(self) -> None:
        """Free what the run holds (a candidate eliminated by a tuner): optimizer state and the best snapshot."""
        self.optimizer.state.clear()
        self.best_state = None
        self.outputs.clear()


def schedule_length(cfg: TrainConfig, n: int) -> tuple[int, str]:
    """(optimizer steps of the run, why it ends there: "schedule end" or "cap") for ``n`` training examples.

    Patience off: ``epochs`` over the data, at least ``min_steps``, cut to ``max_steps`` when that is smaller.
    Patience on: ``max_steps`` when set (else that fixed schedule) is the cap that validation may stop short of.
    The LR schedule (warmup, then linear decay to zero) is laid over this length either way, so a run that
    patience stops is exactly the fixed run truncated (see the module docstring)."""
    planned = max(cfg.epochs * max(1, math.ceil(n / cfg.batch_size)), cfg.min_steps)
    if cfg.patience:
        return (cfg.max_steps, "cap") if cfg.max_steps else (planned, "schedule end")
    if cfg.max_steps and cfg.max_steps < planned:
        return cfg.max_steps, "cap"
    return planned, "schedule end"


def eval_steps(total: int, steps_per_epoch: int, max_evals: int, every: int = 0) -> set[int]:
    """The optimizer steps after which validation runs: every ``every`` steps and at the end when ``every`` is set,
    else at most ``max_evals`` passes spread evenly (one per epoch when there are few epochs)."""
    if every:
        return {*range(every, total + 1, every), total}
    n_evals = min(max_evals, math.ceil(total / steps_per_epoch))
    return {round(total * (i + 1) / n_evals) for i in range(n_evals)}


def text_lengths(split: Split) -> np.ndarray | None:
    """Length in characters (a proxy for tokens) of each text example; None for images."""
    if isinstance(split.inputs, np.ndarray):
        return None
    return np.asarray([len(x) if isinstance(x, str) else sum(len(part) for part in x) for x in split.inputs])


def token_lengths(batcher, split: Split, chunk: int = 1024) -> np.ndarray | None:
    """Length in tokens, as the batcher tokenizes (truncation included), of each text example; None for images.
    Tokenizing the training split once costs ~0.1 s per 1000 SST-2 sentences; grouping on it instead of characters
    pads SST-2 batches ~17% less (budget 1024: 16.1k padded tokens per epoch instead of 19.5k)."""
    if isinstance(split.inputs, np.ndarray):
        return None
    out = []
    for start in range(0, len(split), chunk):
        batch = batcher([split.inputs[i] for i in range(start, min(len(split), start + chunk))])
        if "attention_mask" not in batch:
            return text_lengths(split)
        out.append(batch["attention_mask"].sum(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def eval_order(split: Split) -> np.ndarray:
    """Evaluation order: text by length, images as they are."""
    lengths = text_lengths(split)
    return np.arange(len(split)) if lengths is None else np.argsort(lengths, kind="stable")


def epoch_batches(rng: np.random.Generator, n: int, batch: int, lengths: np.ndarray | None) -> list[np.ndarray]:
    """One epoch's batches (index arrays): random, or length-grouped random (see the module docstring)."""
    order = rng.permutation(n)
    if lengths is None:
        return [order[i : i + batch] for i in range(0, n, batch)]
    batches = []
    for start in range(0, n, 16 * batch):
        group = order[start : start + 16 * batch]
        group = group[np.argsort(lengths[group], kind="stable")]
        batches += [group[i : i + batch] for i in range(0, len(group), batch)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _slices(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _warmup_linear(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _warmup_multistep(warmup: int, total: int):
    """Constant after the warmup, x0.1 from half the run and x0.01 from three quarters (MedMNIST v2's MultiStepLR at
    epochs 50 and 75 of 100, by step rather than by epoch)."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 1.0 if step < 0.5 * total else 0.1 if step < 0.75 * total else 0.01

    return factor


def pass_line(step: int, last: int, loss: float, name: str, value: float, best: bool, stale: int = 0) -> str:
    """The line a validation pass prints: ``step 16/64  train_loss 0.512  val/accuracy 0.8120  (best)``; ``stale``
    (passes without a better score) when patience stops the run here."""
    note = "  (best)" if best else f"  (stopping: {stale} passes without a better one)" if stale else ""
    return f"step {step}/{last}  train_loss {loss:.3f}  {name} {value:.4f}{note}"


def _print_line(line: str) -> None:
    print(line, flush=True)  # flushed: in a cell's process stdout is a file the grid reads while the cell runs


def _prefixed(prefix: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in metrics.items()}


def _snapshot(model: nn.Module, params: set[str] | None = None) -> dict[str, torch.Tensor]:
    """Copies of what training can change: the named ``params`` (default: those that require a gradient now) and
    every buffer (batch-norm statistics)."""
    trainable = params if params is not None else {name for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name for name, _ in model.named_buffers()}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in trainable or k in buffers}
