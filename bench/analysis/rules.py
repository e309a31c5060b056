"""The rules of thumb practitioners adapt by (``../shared/docs/DOMAIN.md``), each turned into a quantity the records can
estimate, with an interval and a verdict per task and budget: ``holds``, ``fails`` or ``inconclusive`` (and ``not
tested`` where the suite ran none of the methods a rule names).

- **lora-95**: "LoRA reaches 95-99% of full fine-tuning". The estimand is LoRA's share of full fine-tuning's gain over
  chance, ``(LoRA - chance) / (full - chance)``; the test is the contrast ``LoRA - 0.95 full - 0.05 chance`` with the
  seed-aware test of ``bench.analysis.contrast`` (> 0: LoRA keeps at least 95%). Holds when its interval is above 0,
  fails when below; not applicable when full fine-tuning does not beat chance.
- **full-vs-frozen**: "Full fine-tuning is typically 2-5 points above frozen features". The estimand is full minus
  frozen, in points of the primary metric. Holds when its interval lies within [2, 5] points, fails when it lies
  wholly outside, inconclusive otherwise.
- **budget**: "Fewer than ~100 labelled examples: few-shot or frozen features; 100-1,000: frozen features or LoRA;
  1,000-10,000: full fine-tuning". The estimand is the decision map's verdict at the budget: holds when the choice on
  validation is a recommended method and no method is better on test, or when a recommended method is equivalent to
  or better than the choice; fails when every recommended method that ran is worse than the choice; inconclusive
  otherwise.
- **memory**: "Limited GPU memory: LoRA/QLoRA or frozen". The estimand is each of those methods' memory against full
  fine-tuning's, as a ratio of mean peak memory (the cell's own increase over its starting memory where recorded, the
  process peak otherwise: on the CPU the process peak is mostly libraries), tested by Welch's t on the seeds. Holds
  when every one that ran uses significantly less, fails when one uses significantly more.

**The family.** Each tested estimate carries two one-sided hypotheses, "holds" and "fails" (for full-vs-frozen: both
bounds of [2, 5] points at once, or either one crossed); all of them over the report are one family, Holm-adjusted
together (``bench.analysis.stats.holm``), and a verdict is "holds" or "fails" only when its adjusted p is below 5%.
The intervals shown are the unadjusted 95% ones. Written here because the rules are this benchmark's, not a
library's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bench.analysis.cells import MethodCell
from bench.analysis.contrast import Difference, _t_sf, plain_difference
from bench.analysis.decision_map import Decision
from bench.analysis.pairing import compare_records
from bench.analysis.stats import enough_seeds, holm
from bench.core.api import TaskSpec
from bench.core.store import Store

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTED = "holds", "fails", "inconclusive", "not tested"
LEVEL = 0.95
BUDGET_RULES = (  # (largest budget of the regime, recommended methods, the rule in words)
    (99, ("fewshot", "zeroshot", "frozen"), "under ~100 labels: prompt a model (few-shot) or frozen features"),
    (1000, ("frozen", "lora"), "100-1,000 labels: frozen features or LoRA"),
    (10_000, ("full",), "1,000-10,000 labels: full fine-tuning"),
)
LOW_MEMORY = ("lora", "qlora", "frozen")
FULL_VS_FROZEN = (0.02, 0.05)  # "2-5 points"
LORA_SHARE = 0.95
FAMILY = "each holds/fails hypothesis Holm-adjusted as one family; intervals unadjusted 95%"


@dataclass(frozen=True)
class RuleResult:
    rule: str  # lora-95, full-vs-frozen, budget, memory
    task: str
    budget: int
    claim: str  # the rule in words
    estimate: str  # the estimand and its (simultaneous) interval, in words
    verdict: str  # holds, fails, inconclusive, not tested
    low: float = math.nan  # the unadjusted 95% interval of the tested quantity
    high: float = math.nan

    def describe(self) -> str:
        budget = "all" if self.budget == 0 else self.budget
        return f"{self.task} @ {budget}: {self.claim}: {self.verdict} ({self.estimate})"


@dataclass(frozen=True)
class _Pending:
    """A rule's estimate before the family's level is known: it is decided by ``decide(level)``."""

    rule: str
    task: str
    budget: int
    claim: str
    d: Difference | None
    decide: object  # Difference -> (p of holds, p of fails, the estimate in words)


def evaluate(
    store: Store,
    cells: Mapping[tuple[str, int], Mapping[str, MethodCell]],
    decisions: Sequence[Decision],
    spec_of,
    chance: Mapping[str, float],
) -> list[RuleResult]:
    """Every rule at every (task, budget) of ``cells``; ``chance``: task -> its primary metric's chance level on the
    test labels (a rule that needs it is not tested without it)."""
    by_tb = {(d.task, d.budget): d for d in decisions}
    pending: list[_Pending | RuleResult] = []
    for (task, budget), group in sorted(cells.items()):
        spec = spec_of(task)
        pending.append(_lora_share(store, task, budget, group, spec, chance.get(task, math.nan)))
        pending.append(_full_vs_frozen(store, task, budget, group, spec))
        pending.append(_budget_rule(task, budget, by_tb.get((task, budget))))
        pending += _memory(task, budget, group)
    tested = [p for p in pending if isinstance(p, _Pending) and p.d is not None]
    tests = [p.decide(p.d) for p in tested]  # (p holds, p fails, text)
    adjusted = holm([t[0] for t in tests] + [t[1] for t in tests])
    n = len(tests)
    verdicts = {}
    for k, (p, (_, _, text)) in enumerate(zip(tested, tests, strict=True)):
        holds, fails = adjusted[k], adjusted[n + k]
        verdicts[id(p)] = (HOLDS if holds < 1 - LEVEL else FAILS if fails < 1 - LEVEL else INCONCLUSIVE, text)
    out = []
    for p in pending:
        if isinstance(p, RuleResult):
            out.append(p)
        elif p.d is None:
            out.append(RuleResult(p.rule, p.task, p.budget, p.claim, "too few seeds to estimate", NOT_TESTED))
        else:
            verdict, text = verdicts[id(p)]
            out.append(RuleResult(p.rule, p.task, p.budget, p.claim, text, verdict, p.d.low, p.d.high))
    return out


def _sf(x: float, d: Difference) -> float:
    """P(T > x) at the difference's degrees of freedom (x in standard errors)."""
    return _t_sf(x, d.df) if d.se > 0 else float(x < 0)


def _lora_share(store, task, budget, group, spec: TaskSpec, chance: float):
    claim = "LoRA reaches 95-99% of full fine-tuning"
    lora, full = group.get("lora"), group.get("full")
    if lora is None or full is None:
        return RuleResult("lora-95", task, budget, claim, "needs lora and full", NOT_TESTED)
    if math.isnan(chance):
        return RuleResult("lora-95", task, budget, claim, "the chance level is unknown (no test labels)", NOT_TESTED)
    gain_full = spec.sign * (full.primary.mean - chance)
    if not gain_full > 0:
        return RuleResult("lora-95", task, budget, claim, "full fine-tuning does not beat chance", NOT_TESTED)
    share = spec.sign * (lora.primary.mean - chance) / gain_full
    d = _contrast(store, lora, full, spec, weight=LORA_SHARE, offset=(1 - LORA_SHARE) * chance)

    def decide(d: Difference):
        z = spec.sign * d.diff / d.se if d.se > 0 else math.copysign(math.inf, spec.sign * d.diff)
        low, high = (d.low, d.high) if spec.higher_is_better else (-d.high, -d.low)
        kept = f"LoRA keeps {100 * share:.0f}% of full's gain over chance"
        text = f"{kept}; LoRA - 0.95 full - 0.05 chance: {spec.sign * d.diff:+.3f} [{low:+.3f}, {high:+.3f}]"
        return _sf(z, d), _sf(-z, d), text

    return _Pending("lora-95", task, budget, claim, d, decide)


def _full_vs_frozen(store, task, budget, group, spec: TaskSpec):
    claim = "full fine-tuning is 2-5 points above frozen features"
    full, frozen = group.get("full"), group.get("frozen")
    if full is None or frozen is None:
        return RuleResult("full-vs-frozen", task, budget, claim, "needs full and frozen", NOT_TESTED)
    d = _contrast(store, full, frozen, spec)
    lo, hi = FULL_VS_FROZEN

    def decide(d: Difference):
        diff = spec.sign * d.diff
        low, high = (d.low, d.high) if spec.higher_is_better else (-d.high, -d.low)
        se = d.se if d.se > 0 else 1e-12
        inside = max(_sf((diff - lo) / se, d), _sf((hi - diff) / se, d))  # both bounds at once
        outside = min(1.0, 2 * min(_sf((lo - diff) / se, d), _sf((diff - hi) / se, d)))  # either bound crossed
        return inside, outside, f"full - frozen: {100 * diff:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}] points"

    return _Pending("full-vs-frozen", task, budget, claim, d, decide)


def _budget_rule(task: str, budget: int, d: Decision | None) -> RuleResult:
    if budget == 0:
        return RuleResult("budget", task, budget, "the recommended method for the label budget", "the whole pool: "
                          "its size is the task's, not a budget", NOT_TESTED)  # fmt: skip
    recommended, claim = next(((r, c) for top, r, c in BUDGET_RULES if budget <= top), ((), "over 10,000 labels"))
    if d is None or d.best is None:
        return RuleResult("budget", task, budget, claim, "the decision map made no choice", NOT_TESTED)
    present = [m for m in recommended if m == d.best or m in d.diffs]
    if not present:
        return RuleResult("budget", task, budget, claim, "none of the recommended methods ran", NOT_TESTED)
    choice = f"choice {d.best}"
    if d.best in recommended and not d.better:
        return RuleResult("budget", task, budget, claim, f"{choice}, nothing better on test", HOLDS)
    as_good = [m for m in present if m in d.equivalent or m in d.better]
    if as_good:
        return RuleResult("budget", task, budget, claim, f"{choice}; {', '.join(as_good)} as good or better", HOLDS)
    worse = [m for m in present if m != d.best and m in d.worse]
    if d.best not in recommended and len(worse) == len(present):
        return RuleResult("budget", task, budget, claim, f"{choice}; {', '.join(worse)} worse on test", FAILS)
    return RuleResult("budget", task, budget, claim, f"{choice}; the test set cannot rank the rest", INCONCLUSIVE)


def _memory(task: str, budget: int, group: Mapping[str, MethodCell]) -> list:
    claim = "with limited memory, LoRA/QLoRA or frozen"
    full = group.get("full")
    out = []
    for method in LOW_MEMORY:
        cell = group.get(method)
        if cell is None or full is None:
            continue
        mine, theirs = _memory_values(cell), _memory_values(full)
        d = _welch(mine, theirs)
        if d is None:
            out.append(RuleResult("memory", task, budget, f"{claim} ({method})", "too few seeds", NOT_TESTED))
            continue
        ratio = float(np.mean(mine) / np.mean(theirs))

        def decide(d: Difference, method=method, ratio=ratio):
            z = d.diff / d.se if d.se > 0 else math.copysign(math.inf, d.diff)
            text = (
                f"{method}'s peak memory {100 * ratio:.0f}% of full's; difference {d.diff / 2**20:+.0f} "
                f"[{d.low / 2**20:+.0f}, {d.high / 2**20:+.0f}] MiB"
            )
            return _sf(-z, d), _sf(z, d), text

        out.append(_Pending("memory", task, budget, f"{claim} ({method})", d, decide))
    return out


def _memory_values(cell: MethodCell) -> list[float]:
    """Per seed: the cell's own memory increase where recorded (the process peak is mostly libraries on the CPU),
    else its peak."""
    out = []
    for r in cell.records:
        if r.cost is None:
            continue
        value = r.cost.peak_mem_delta_bytes if r.cost.peak_mem_delta_bytes is not None else r.cost.peak_mem_bytes
        if value is not None:
            out.append(float(value))
    return out


def _welch(a: Sequence[float], b: Sequence[float]) -> Difference | None:
    """mean(a) - mean(b) with Welch's t (two or more values each); no margin, no items."""
    if len(a) < 2 or len(b) < 2:
        return None
    var_a, var_b = float(np.var(a, ddof=1)) / len(a), float(np.var(b, ddof=1)) / len(b)
    return plain_difference(float(np.mean(a) - np.mean(b)), var_a, var_b, len(a), len(b), "peak memory")


def _contrast(store, a: MethodCell, b: MethodCell, spec: TaskSpec, weight: float = 1.0, offset: float = 0.0):
    if not (enough_seeds(a.method, a.primary.n) and enough_seeds(b.method, b.primary.n)):
        return None
    if not (a.has_predictions and b.has_predictions):
        return None
    try:
        return compare_records(store, a.records, b.records, spec.primary_metric, weight=weight, offset=offset)
    except ValueError:
        return None
