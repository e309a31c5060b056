"""What serving a method costs, for the metric-vs-inference-cost panel: milliseconds per test example, from the
throughput each record measured on its test split (``Cost.eval_samples_per_s``, examples per second at the
evaluation batch size: a throughput, not one request's latency), as the median over seeds with their range.

The training-cost panels put fewshot and zeroshot at the cheap end (they train nothing), while a causal LM reading
demonstrations is the slowest to serve; this panel shows that side. Which rate stands for serving:

- the merged model's (``eval_samples_per_s_merged``: LoRA and IA3 folded into the backbone) when recorded, as it
  would be deployed;
- for a cell whose features came partly from the feature cache (``Cost.feature_cache`` hits), the test pass may have
  read stored features instead of running the backbone, so its rate is not a serving rate: the backbone's encoding
  rate in the same cell (``feature_samples_per_s``) stands for it (the head on top costs next to nothing), and with
  every feature read from the cache there is no rate at all;
- otherwise the recorded test rate.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.core.record import Record

MERGED, ENCODING, TEST = "merged model", "backbone encoding rate", "test pass"
FROM_CACHE = "features read from the cache"


def serving_rate(r: Record) -> tuple[float | None, str]:
    """(examples per second, which rate it is) for one record; (None, why) when it has none to stand for serving."""
    c = r.cost
    if c is None:
        return None, "not measured"
    if c.eval_samples_per_s_merged:
        return c.eval_samples_per_s_merged, MERGED
    if (c.feature_cache or {}).get("hits"):
        return (c.feature_samples_per_s, ENCODING) if c.feature_samples_per_s else (None, FROM_CACHE)
    return (c.eval_samples_per_s, TEST) if c.eval_samples_per_s else (None, "not measured")


@dataclass(frozen=True)
class Serving:
    """Milliseconds per test example over a cell's seeds: median, least and most; ``sources``: which rates."""

    median_ms: float
    low_ms: float
    high_ms: float
    n: int
    sources: tuple[str, ...]
    devices: tuple[str, ...]


def serving_cost(records: Sequence[Record]) -> tuple[Serving | None, str]:
    """The cell's serving cost over its seeds with a rate, or (None, why none has one)."""
    rates, whys = [], []
    for r in records:
        rate, what = serving_rate(r)
        if rate:
            rates.append((1000.0 / rate, what, (r.cost.device or "?") if r.cost else "?"))
        else:
            whys.append(what)
    if not rates:
        return None, (FROM_CACHE if FROM_CACHE in whys else "not measured")
    ms = [m for m, _, _ in rates]
    sources = tuple(sorted({w for _, w, _ in rates}))
    devices = tuple(sorted({d for _, _, d in rates}))
    return Serving(statistics.median(ms), min(ms), max(ms), len(ms), sources, devices), ""
