"""Methods across (task, budget) rows, in two views that do not reward a method for running in few rows.

The table at a glance averages each method's rank over the rows it ran in, so a method that ran in one row and won
it has mean rank 1. Here:

- **Performance profile** (Dolan & Moré, 2002, "Benchmarking optimization software with performance profiles",
  Math. Programming 91): per row, each method's gap to the row's best mean over seeds, in the primary metric's units
  and its better direction (``TaskSpec.sign``): ``gap = sign * (best - mean) >= 0``. A method's profile at ``tau`` is
  the share of *all* rows in which its gap is at most ``tau``; a row it did not run in counts as not within any
  ``tau``. At ``tau = 0`` it is the share of rows it is best in (ties count for each tied method). The gap is an
  absolute difference, not Dolan and Moré's ratio: the primary metrics are bounded scores (``bench.core.metrics``:
  [0, 1], or [-1, 1] for correlations and MCC), where a ratio would depend on where the scale starts.
- **Mean rank over common rows** (the quantity of a critical-difference diagram, Demšar 2006, JMLR 7): the methods
  compared and the rows are chosen together so that every compared method ran in every row used
  (``common_rows``). Its 95% interval is a two-level bootstrap: the rows are resampled with replacement, and within
  each drawn row every method's seeds are resampled with replacement before the row is ranked (ties share the
  average rank), so the interval holds both the choice of rows and the seed noise of each row's means.

Everything here is pure: rows in, numbers out (``profile_rows`` reads them from records).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bench import catalog
from bench.analysis.cells import method_cells
from bench.analysis.overview import method_rank, task_rank
from bench.core.record import Record

N_BOOT = 2000  # bootstrap replicates of the mean ranks
LEVEL = 0.95
TIES = 1e-12  # two means closer than this are tied (the same score written twice)


@dataclass(frozen=True)
class ProfileRow:
    """One (task, budget): each method's primary test metric per seed (methods with no score are absent)."""

    task: str
    budget: int
    metric: str
    higher_is_better: bool
    seeds: dict[str, tuple[float, ...]]

    @property
    def sign(self) -> float:
        return 1.0 if self.higher_is_better else -1.0

    def mean(self, method: str) -> float:
        return float(np.mean(self.seeds[method]))

    @property
    def best(self) -> float:
        """The row's best mean, in the metric's better direction."""
        return max(self.sign * self.mean(m) for m in self.seeds) * self.sign

    def gap(self, method: str) -> float:
        """How far the method's mean is from the row's best, >= 0 (inf: the method did not run here)."""
        if method not in self.seeds:
            return math.inf
        return max(self.sign * (self.best - self.mean(method)), 0.0)


def profile_rows(records: Sequence[Record], spec_of: Callable = catalog.spec) -> list[ProfileRow]:
    """A row per (task, budget) of the ok records of registered tasks, in the report's order (as the table at a
    glance); seeds with no primary score are left out, and a method with none is not in the row."""
    known = [r for r in records if r.ok and catalog.known(r.task)]
    rows = []
    for (task, budget), cells in sorted(
        method_cells(known, spec_of).items(), key=lambda kv: (task_rank(kv[0][0]), kv[0][1] == 0, kv[0][1])
    ):
        spec = spec_of(task)
        seeds = {}
        for method, cell in cells.items():
            values = tuple(v for v in (r.test_metric(spec.primary_metric) for r in cell.records) if not math.isnan(v))
            if values:
                seeds[method] = values
        if seeds:
            rows.append(ProfileRow(task, budget, spec.primary_metric, spec.higher_is_better, seeds))
    return rows


# ------------------------------------------------------------------------------------ performance profile
@dataclass(frozen=True)
class Profile:
    """Every method's gap in every row (inf where it did not run), and the profile read from them."""

    rows: tuple[ProfileRow, ...]
    methods: tuple[str, ...]  # in order of the area under the profile (largest first), then the usual order
    gaps: dict[str, tuple[float, ...]]  # method -> its gap per row, in ``rows`` order

    @property
    def tau_max(self) -> float:
        """The largest gap any method has in a row it ran in (from there on every profile is flat); at least 0.05."""
        finite = [g for gs in self.gaps.values() for g in gs if math.isfinite(g)]
        return max([0.05, *finite])

    def share(self, method: str, tau: float) -> float:
        """The share of all rows in which the method is within ``tau`` of the row's best."""
        return sum(g <= tau + TIES for g in self.gaps[method]) / len(self.rows)

    def ran(self, method: str) -> int:
        return sum(math.isfinite(g) for g in self.gaps[method])

    def area(self, method: str) -> float:
        """The mean of the profile over [0, tau_max]: 1 = best in every row; a row not run adds 0."""
        return _area(self.gaps[method], self.tau_max)

    def steps(self, method: str) -> tuple[list[float], list[float]]:
        """The profile as a step function from 0 to ``tau_max``: x where it changes, the share from there on."""
        finite = sorted(g for g in self.gaps[method] if math.isfinite(g))
        xs, ys = [0.0], [self.share(method, 0.0)]
        for g in finite:
            if g > xs[-1]:
                xs.append(g)
                ys.append(self.share(method, g))
        xs.append(self.tau_max)
        ys.append(ys[-1])
        return xs, ys


def _area(gaps: Sequence[float], tau_max: float) -> float:
    return float(np.mean([max(0.0, 1.0 - g / tau_max) if math.isfinite(g) else 0.0 for g in gaps]))


def performance_profile(rows: Sequence[ProfileRow]) -> Profile:
    """Every method of any row against every row (see the module docstring)."""
    methods = sorted({m for row in rows for m in row.seeds}, key=method_rank)
    gaps = {m: tuple(row.gap(m) for row in rows) for m in methods}
    finite = [g for gs in gaps.values() for g in gs if math.isfinite(g)]
    tau_max = max([0.05, *finite])
    methods.sort(key=lambda m: -_area(gaps[m], tau_max))  # stable: ties keep the usual order
    return Profile(tuple(rows), tuple(methods), gaps)


# ------------------------------------------------------------------------------------ ranks over common rows
@dataclass(frozen=True)
class RankView:
    """The mean rank (1 = best) of each compared method over the rows where all of them ran, with its bootstrap
    interval; the methods left out with the rows they ran in."""

    methods: tuple[str, ...]  # best mean rank first
    rows: tuple[ProfileRow, ...]
    mean_rank: dict[str, float]
    low: dict[str, float]
    high: dict[str, float]
    left_out: dict[str, int]  # method -> rows it ran in (of all rows)
    n_boot: int


def common_rows(rows: Sequence[ProfileRow]) -> tuple[list[str], list[int]]:
    """The compared methods and the rows (indices) where every one of them ran: for each threshold ``c`` on the
    number of rows a method ran in, the methods that ran in at least ``c`` rows and the rows where all of them ran;
    the threshold that compares the most (method, row) scores wins (ties: more rows). At least two methods over at
    least two rows, else nothing (([], []))."""
    ran = {m: sum(m in row.seeds for row in rows) for row in rows for m in row.seeds}
    best: tuple[tuple[int, int], list[str], list[int]] = ((0, 0), [], [])
    for c in sorted(set(ran.values()), reverse=True):
        methods = sorted((m for m, n in ran.items() if n >= c), key=method_rank)
        used = [i for i, row in enumerate(rows) if all(m in row.seeds for m in methods)]
        if len(methods) >= 2 and len(used) >= 2 and (len(methods) * len(used), len(used)) > best[0]:
            best = ((len(methods) * len(used), len(used)), methods, used)
    return best[1], best[2]


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, 1 = the largest; ties share the average."""
    from scipy.stats import rankdata

    return rankdata(-scores, axis=-1, method="average")


def rank_view(rows: Sequence[ProfileRow], n_boot: int = N_BOOT, seed: int = 0) -> RankView | None:
    """The mean ranks over ``common_rows`` with their two-level bootstrap interval (None: no two methods share
    two rows)."""
    methods, used = common_rows(rows)
    if not methods:
        return None
    chosen = [rows[i] for i in used]
    signed = [[row.sign * np.asarray(row.seeds[m], dtype=np.float64) for m in methods] for row in chosen]
    point = _ranks(np.array([[s.mean() for s in row] for row in signed])).mean(axis=0)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(chosen), size=(n_boot, len(chosen)))  # rows drawn per replicate
    ranks = np.empty((n_boot, len(chosen), len(methods)))
    for i, row in enumerate(signed):
        where = picks == i
        draws = int(where.sum())
        if not draws:
            continue
        means = np.stack([s[rng.integers(0, len(s), size=(draws, len(s)))].mean(axis=1) for s in row], axis=1)
        ranks[where] = _ranks(means)
    boot = ranks.mean(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(boot, tail, axis=0), np.percentile(boot, 100 - tail, axis=0)
    order = sorted(range(len(methods)), key=lambda j: (point[j], method_rank(methods[j])))
    everyone = {m for row in rows for m in row.seeds}
    return RankView(
        methods=tuple(methods[j] for j in order),
        rows=tuple(chosen),
        mean_rank={m: float(point[j]) for j, m in enumerate(methods)},
        low={m: float(low[j]) for j, m in enumerate(methods)},
        high={m: float(high[j]) for j, m in enumerate(methods)},
        left_out={m: sum(m in row.seeds for row in rows) for m in sorted(everyone - set(methods), key=method_rank)},
        n_boot=n_boot,
    )
