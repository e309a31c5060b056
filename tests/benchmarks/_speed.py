"""Shared helpers of the speed benchmarks: sizes from the environment (so a reduced run validates the code now and
the full one runs later on a quiet machine with the same command), alternating rounds, and ratios.

Environment: ``ADAPTBENCH_BENCH_BUDGET`` (label budget, default 1024), ``ADAPTBENCH_BENCH_ROUNDS`` (alternating
rounds, default 3), ``ADAPTBENCH_BENCH_STEPS`` (optimizer steps of the training benchmark; default: the cell's own,
96 at budget 1024). Every comparison is a ratio of contenders measured in the same rounds, interleaved, with the
torch thread count fixed (``THREADS``) and recorded.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable

THREADS = 2


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def budget() -> int:
    return env_int("ADAPTBENCH_BENCH_BUDGET", 1024)


def rounds() -> int:
    return env_int("ADAPTBENCH_BENCH_ROUNDS", 3)


def fix_threads() -> int:
    import torch

    torch.set_num_threads(THREADS)
    return torch.get_num_threads()


def load_average() -> float:
    """1-minute load average when the run ended: > 2 on these 2 cores means the numbers were contended."""
    return os.getloadavg()[0]


def alternate(contenders: dict[str, Callable[[], dict]], n_rounds: int, warmup: bool = True) -> dict[str, list[dict]]:
    """Run every contender once per round, interleaved, the order rotated by one each round (A, B, C, then B, C, A,
    then C, A, B, ...), so no contender always runs right after the same one; returns name -> the list of what each
    call returned (a dict of measurements), with its wall time added as ``call_s``. ``warmup``: one unmeasured call
    of the first contender before the rounds: the process's first run pays for allocator growth, lazy imports and
    kernel selection, which the first contender of round 1 would otherwise carry alone (it made adaptbench's
    round-1 throughput 0.70x the bare loop's against 0.94-0.99x in rounds 2-3)."""
    names = list(contenders)
    out: dict[str, list[dict]] = {name: [] for name in names}
    if warmup and names:
        contenders[names[0]]()
    for r in range(n_rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()  # the last contender's garbage (models, optimizer states in reference cycles) goes now,
            # not during the next contender's timed steps
            t0 = time.perf_counter()
            result = contenders[name]()
            result["call_s"] = time.perf_counter() - t0
            out[name].append(result)
    return out


def median_ratio(a: list[float], b: list[float]) -> float:
    """Median over rounds of a[i] / b[i]: each ratio compares neighbours in time, so slow drifts in the machine's
    load cancel better than in a ratio of medians."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))
