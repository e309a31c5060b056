"""Benchmark (not a test): in-context k = 8 on SST-2 with the demonstration prefix's key/value cache reused, versus
re-encoding the whole prompt for every example. Both variants run in the same session on the same 32 test
examples, alternating, with the torch thread count fixed; compare them as a ratio.

Run: `make benchmark` (pytest-benchmark; `make test` skips benchmarks). The ratio is printed and stored in the
benchmark JSON's extra_info."""

from __future__ import annotations

import numpy as np
import pytest

from bench.catalog import resolve
from bench.core.api import Cell
from bench.core.model import make_head
from bench.run.loop import Runner
from bench.run.model import AdaptModel

N_EXAMPLES = 32
timings: dict[bool, float] = {}


@pytest.mark.parametrize("reuse_cache", [True, False], ids=["cached-prefix", "re-encode"])
def test_fewshot_k8_sst2(benchmark, reuse_cache, smollm2, data):
    import torch

    torch.set_num_threads(2)
    settings = {"k": 8, "reuse_cache": reuse_cache, "eval_batch_size": 8}
    res = resolve(Cell("glue-sst2", "fewshot", 64, 0, settings))
    splits = res.task.splits(64, 0, data)
    model = res.method.prepare(AdaptModel(smollm2.encoder, make_head(576, 2)), smollm2.spec, res.task)
    runner = Runner(model, smollm2.batcher, res.task, res.train, "cpu")
    runner.fit_predictor(res.method, splits.train, 0, smollm2.extras["tokenizer"])
    test = splits.test.take(np.arange(N_EXAMPLES))
    benchmark.extra_info.update({"k": 8, "examples": N_EXAMPLES, "threads": torch.get_num_threads(), **runner.notes})
    benchmark.pedantic(runner.predict, args=(test, False), rounds=2, iterations=1, warmup_rounds=0)
    timings[reuse_cache] = benchmark.stats.stats.mean
    if len(timings) == 2:
        ratio = timings[False] / timings[True]
        benchmark.extra_info["speedup_vs_re_encoding"] = ratio
        print(
            f"\nfew-shot k=8, {N_EXAMPLES} SST-2 examples: cached prefix {timings[True]:.1f} s, "
            f"re-encoding {timings[False]:.1f} s -> {ratio:.1f}x"
        )
