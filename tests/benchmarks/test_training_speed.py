"""Benchmark (not a test): SST-2 full fine-tuning of MiniLM (``minilm-l6``, budget 1024, the ``full`` cell's
settings) run five ways, alternating in each round, on the same initial weights:

- ``adaptbench``: the harness's ``Runner.fit`` with the real ``full`` method (batches grouped by token length, as
  the shipped suites set it: ``length_unit=tokens``);
- ``hf-trainer-grouped`` / ``hf-trainer-random``: Hugging Face ``Trainer`` with ``train_sampling_strategy``
  group_by_length / random, pre-tokenized dataset + ``DataCollatorWithPadding``, dataloader workers 0, no eval, no
  saving, no logging, ``report_to=[]``;
- ``bare-grouped`` / ``bare-random``: a plain PyTorch loop over the same batches adaptbench draws
  (``bench.run.loop.epoch_batches``) / over plain random batches, tokenizing each batch with the same batcher.

Same everywhere: the model (MiniLM mean-pooled + a linear head, fp32), AdamW with the method's groups (backbone
5e-5, head 1e-3, weight decay 0.01 on every parameter), 10% warmup then linear decay, clip 1.0, batch 32,
max_len 64, the cell's number of optimizer steps (96 at budget 1024), torch threads fixed to 2 (recorded).

Throughput, two ways, both with validation excluded (only adaptbench validates; its passes, measured by wrapping
``Runner.evaluate``, are subtracted from its time):
- ``steady``: samples of steps 3..N over the time between the end of step 2 and the end of step N (ends of steps
  are read by a global optimizer-step hook, so the clock is the same for every contender); batch preparation
  (tokenizing, collating) is inside the interval for all of them. The loop's own ``train_samples_per_s`` uses the
  same definition and is recorded beside it.
- ``end_to_end``: every sample over the whole training call, set-up (dataset, Trainer, optimizer) included.

Run: `make benchmark` (or `pytest -q tests/benchmarks/test_training_speed.py --benchmark-only -s`). Reduced check:
`ADAPTBENCH_BENCH_BUDGET=128 ADAPTBENCH_BENCH_STEPS=16 ADAPTBENCH_BENCH_ROUNDS=2`. Results are printed and stored
in the benchmark JSON's extra_info. Nothing about speed is asserted; that every contender trained the same number
of steps on the same number of examples is.
"""

from __future__ import annotations

import copy
import math
import statistics
import time

import numpy as np
import pytest
from _speed import THREADS, alternate, budget, env_int, fix_threads, load_average, median_ratio, rounds

from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.model import make_head
from bench.run.loop import Runner, _warmup_linear, epoch_batches, token_lengths
from bench.run.model import AdaptModel

CONTENDERS = ("adaptbench", "hf-trainer-grouped", "hf-trainer-random", "bare-grouped", "bare-random")


class Meter:
    """Ends of optimizer steps (a global post-step hook), examples seen by training forwards, validation spans."""

    def __init__(self) -> None:
        self.step_ends: list[float] = []
        self.step_examples: list[int] = []
        self.eval_spans: list[tuple[float, float]] = []
        self._examples = 0

    def reset(self) -> None:
        self.__init__()

    def saw(self, n: int) -> None:
        self._examples += n

    def stepped(self, *_args) -> None:
        self.step_ends.append(time.perf_counter())
        self.step_examples.append(self._examples)
        self._examples = 0

    def _eval_within(self, lo: float, hi: float) -> float:
        return sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in self.eval_spans)

    def summary(self, start: float, end: float) -> dict:
        examples = sum(self.step_examples)
        lo, hi = self.step_ends[1], self.step_ends[-1]
        steady_s = hi - lo - self._eval_within(lo, hi)
        train_s = end - start - self._eval_within(start, end)
        return {
            "steps": len(self.step_ends),
            "examples": examples,
            "steady_samples_per_s": sum(self.step_examples[2:]) / steady_s,
            "end_to_end_samples_per_s": examples / train_s,
            "train_s": train_s,
            "eval_s": self._eval_within(start, end),
        }


METER = Meter()


class CountingModel(AdaptModel):
    """AdaptModel that counts the examples of training forwards (grad enabled) and, given labels, returns the
    loss the way a Hugging Face model does (what ``Trainer`` expects)."""

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        if torch_grad_enabled():
            METER.saw(int(input_ids.shape[0]))
        logits = super().forward(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if labels is None:
            return logits
        import torch

        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def torch_grad_enabled() -> bool:
    import torch

    return torch.is_grad_enabled()


def _optimizer(model, method, cfg, total: int):
    import torch

    groups = [g for g in method.param_groups(model) if g["params"]]
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_linear(math.ceil(cfg.warmup_ratio * total), total))
    return optimizer, scheduler


class Workload:
    """The cell, its splits, the pristine model and one runner per contender."""

    def __init__(self, data) -> None:
        from bench.core.backbone import get_backbone

        steps = env_int("ADAPTBENCH_BENCH_STEPS", 0)
        overrides = {"min_steps": steps, "epochs": 1} if steps else {}
        overrides["length_unit"] = "tokens"  # as the shipped suites run text cells
        self.res = resolve(Cell("glue-sst2", "full", budget(), 0, overrides))
        self.cfg, self.method = self.res.train, self.res.method
        self.splits = self.res.task.splits(budget(), 0, data)
        self.train = self.splits.train
        n, bs = len(self.train), self.cfg.batch_size
        self.total = max(self.cfg.epochs * math.ceil(n / bs), self.cfg.min_steps)
        self.loaded = get_backbone(self.res.backbone).load(pretrained=True, max_len=self.res.task.max_len)
        self.tokenizer = self.loaded.extras["tokenizer"]
        import torch

        torch.manual_seed(0)
        self.pristine = CountingModel(self.loaded.encoder, make_head(self.loaded.feature_dim, 2))
        self.accuracy: dict[str, float] = {}

    def fresh(self):
        import torch

        torch.manual_seed(0)
        return self.method.prepare(copy.deepcopy(self.pristine), self.loaded.spec, self.res.task)

    def test_accuracy(self, name: str, model) -> None:
        """Test accuracy of each contender's trained model, first round only: they all learned, comparably."""
        if name in self.accuracy:
            return
        runner = Runner(model, self.loaded.batcher, self.res.task, self.cfg, "cpu")
        self.accuracy[name] = runner.evaluate(self.splits.test, False)[0]["accuracy"]

    # ----------------------------------------------------------------------------------- contenders
    def adaptbench(self) -> dict:
        METER.reset()
        model = self.fresh()
        start = time.perf_counter()
        runner = Runner(model, self.loaded.batcher, self.res.task, self.cfg, "cpu")
        evaluate = runner.evaluate

        def timed_evaluate(*args, **kwargs):
            t0 = time.perf_counter()
            out = evaluate(*args, **kwargs)
            METER.eval_spans.append((t0, time.perf_counter()))
            return out

        runner.evaluate = timed_evaluate
        fit = runner.fit(self.method, self.train, self.splits.val, 0)
        out = METER.summary(start, time.perf_counter())
        out["loop_reported_samples_per_s"] = fit.train_samples_per_s
        assert fit.steps == len(METER.step_ends)
        self.test_accuracy("adaptbench", runner.model)
        return out

    def hf_trainer(self, grouped: bool) -> dict:
        from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

        METER.reset()
        model = self.fresh()
        start = time.perf_counter()
        enc = self.tokenizer(list(self.train.inputs), truncation=True, max_length=self.res.task.max_len)
        dataset = [
            {**{k: v[i] for k, v in enc.items()}, "labels": int(label)} for i, label in enumerate(self.train.labels)
        ]
        args = TrainingArguments(
            output_dir="/tmp/adaptbench-bench-trainer",
            per_device_train_batch_size=self.cfg.batch_size,
            max_steps=self.total,
            max_grad_norm=self.cfg.max_grad_norm,
            train_sampling_strategy="group_by_length" if grouped else "random",
            dataloader_num_workers=0,
            dataloader_pin_memory=False,
            eval_strategy="no",
            save_strategy="no",
            logging_strategy="no",
            report_to=[],
            remove_unused_columns=False,  # the wrapper's forward names its inputs; nothing to drop
            disable_tqdm=True,
            use_cpu=True,
            seed=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=DataCollatorWithPadding(self.tokenizer),
            processing_class=self.tokenizer,
            optimizers=_optimizer(model, self.method, self.cfg, self.total),
        )
        trainer.train()
        out = METER.summary(start, time.perf_counter())
        assert trainer.state.global_step == self.total
        self.test_accuracy(f"hf-trainer-{'grouped' if grouped else 'random'}", model)
        return out

    def bare(self, grouped: bool) -> dict:
        METER.reset()
        model = self.fresh()
        start = time.perf_counter()
        optimizer, scheduler = _optimizer(model, self.method, self.cfg, self.total)
        import torch

        rng = np.random.default_rng(0)
        lengths = token_lengths(self.loaded.batcher, self.train) if grouped else None  # adaptbench's grouping
        labels = torch.as_tensor(self.train.labels)
        trainable = [p for p in model.parameters() if p.requires_grad]
        batches: list[np.ndarray] = []
        model.train()
        for _ in range(self.total):
            if not batches:
                batches = epoch_batches(rng, len(self.train), self.cfg.batch_size, lengths)
            index = batches.pop()
            optimizer.zero_grad(set_to_none=True)
            inputs = self.loaded.batcher([self.train.inputs[i] for i in index])
            loss = torch.nn.functional.cross_entropy(model(**inputs), labels[index])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, self.cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
        out = METER.summary(start, time.perf_counter())
        self.test_accuracy(f"bare-{'grouped' if grouped else 'random'}", model)
        return out


@pytest.mark.slow
def test_sst2_full_finetuning_throughput(benchmark, data):
    threads = fix_threads()
    work = Workload(data)
    from torch.optim.optimizer import register_optimizer_step_post_hook

    hook = register_optimizer_step_post_hook(METER.stepped)
    contenders = {
        "adaptbench": work.adaptbench,
        "hf-trainer-grouped": lambda: work.hf_trainer(True),
        "hf-trainer-random": lambda: work.hf_trainer(False),
        "bare-grouped": lambda: work.bare(True),
        "bare-random": lambda: work.bare(False),
    }
    n_rounds = rounds()
    try:
        results = benchmark.pedantic(alternate, args=(contenders, n_rounds), rounds=1, iterations=1)
    finally:
        hook.remove()

    # the same work: steps and examples per contender, every round
    for name, runs in results.items():
        for run in runs:
            assert run["steps"] == work.total, (name, run["steps"], work.total)
            assert run["examples"] == _expected_examples(work), (name, run["examples"])

    info = benchmark.extra_info
    info.update(
        {
            "budget": len(work.train),
            "steps": work.total,
            "batch_size": work.cfg.batch_size,
            "rounds": n_rounds,
            "threads": threads,
            "load_average_1min_end": load_average(),
        }
    )
    lines = [
        f"\nSST-2 full fine-tuning, MiniLM, budget {len(work.train)}, {work.total} steps of {work.cfg.batch_size}, "
        f"{n_rounds} alternating rounds, {threads} threads (requested {THREADS}), load {load_average():.1f}"
    ]
    for kind in ("steady", "end_to_end"):
        key = f"{kind}_samples_per_s"
        ours = [r[key] for r in results["adaptbench"]]
        for name in CONTENDERS:
            rates = [r[key] for r in results[name]]
            info[f"{kind}/{name}/samples_per_s_median"] = statistics.median(rates)
            info[f"{kind}/{name}/samples_per_s_rounds"] = rates
            if name != "adaptbench":
                info[f"{kind}/adaptbench_vs_{name}"] = median_ratio(ours, rates)
        lines.append(
            f"  {kind:10s} samples/s: "
            + ", ".join(f"{n} {info[f'{kind}/{n}/samples_per_s_median']:.1f}" for n in CONTENDERS)
        )
        lines.append(
            "             adaptbench / other: "
            + ", ".join(f"{n} {info[f'{kind}/adaptbench_vs_{n}']:.2f}x" for n in CONTENDERS[1:])
        )
    info["loop_reported_samples_per_s"] = [r["loop_reported_samples_per_s"] for r in results["adaptbench"]]
    info["adaptbench_validation_s"] = [r["eval_s"] for r in results["adaptbench"]]
    info["test_accuracy_round1"] = work.accuracy
    lines.append("  test accuracy (round 1): " + ", ".join(f"{n} {a:.3f}" for n, a in work.accuracy.items()))
    print("\n".join(lines))


def _expected_examples(work: Workload) -> int:
    """Examples over ``total`` steps when the budget is not a multiple of the batch: each epoch ends with a short
    batch (adaptbench, the bare loops and Trainer's sampler without drop_last all do)."""
    n, bs = len(work.train), work.cfg.batch_size
    per_epoch = math.ceil(n / bs)
    full_epochs, rest = divmod(work.total, per_epoch)
    return full_epochs * n + min(rest * bs, n)


@pytest.mark.slow
def test_padding_per_epoch_by_grouping(benchmark, data):
    """Padded tokens per epoch of the same SST-2 budget under each grouping (mean over 20 epochs): what the
    throughput differences above come from. Tokens as the model sees them (MiniLM, truncated at max_len)."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from bench.run.loop import text_lengths

    work = Workload(data)
    n, bs = len(work.train), work.cfg.batch_size
    tokens = token_lengths(work.loaded.batcher, work.train)

    def padded(batches) -> int:
        return int(sum(len(b) * tokens[b].max() for b in batches))

    def hf_batches(seed: int) -> list[np.ndarray]:
        order = list(LengthGroupedSampler(bs, lengths=tokens.tolist(), generator=torch.Generator().manual_seed(seed)))
        return [np.asarray(order[i : i + bs]) for i in range(0, n, bs)]

    groupings = {
        "adaptbench characters": lambda s: epoch_batches(np.random.default_rng(s), n, bs, text_lengths(work.train)),
        "adaptbench tokens": lambda s: epoch_batches(np.random.default_rng(s), n, bs, tokens),
        "hf LengthGroupedSampler": hf_batches,
        "random": lambda s: epoch_batches(np.random.default_rng(s), n, bs, None),
    }
    result = benchmark.pedantic(
        lambda: {name: statistics.mean(padded(f(s)) for s in range(20)) for name, f in groupings.items()},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update({"real_tokens": int(tokens.sum()), **{f"padded/{k}": v for k, v in result.items()}})
    print(f"\nSST-2 budget {n}, batches of {bs}: {int(tokens.sum())} real tokens per epoch; padded to: "
          + ", ".join(f"{k} {v:,.0f}" for k, v in result.items()))  # fmt: skip
