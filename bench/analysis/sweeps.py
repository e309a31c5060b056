"""What each hyperparameter sweep tried and chose, read from the tuned records' ``tuned_from`` (written by
``bench.suite.select_sweep``), for the report and ``adaptbench summary``.

One row per sweep: the values tried, each value's validation score (mean over the sweep's seeds), the value chosen,
and a flag when the choice is the smallest or largest value tried, where the best setting may lie outside the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.core.record import Record
from bench.suite import values_text


@dataclass(frozen=True)
class SweepRow:
    task: str
    method: str
    on: str  # the validation metric the choice was made on
    budget: int
    seeds: tuple[int, ...]
    tried: tuple[tuple[str, float | None], ...]  # (values as text, mean validation score or None = diverged / none)
    chosen: str
    at_edge: bool  # the chosen value is the smallest or the largest of a numeric one-key sweep
    cells: int  # sweep cells behind the row

    def describe(self) -> str:
        scores = ", ".join(f"{v}: {'–' if s is None else f'{s:.3f}'}" for v, s in self.tried)
        seeds = ",".join(map(str, self.seeds))
        edge = " [at the grid's edge: the best value may lie outside it]" if self.at_edge else ""
        return (
            f"{self.task} x {self.method}: {self.chosen} chosen on mean {self.on} at budget {self.budget}, "
            f"seed(s) {seeds} ({scores}){edge}"
        )


def _at_edge(scores: list[dict], selected: dict) -> bool:
    if len(selected) != 1 or len(scores) < 3:
        return False
    ((name, chosen),) = selected.items()
    values = [row["values"].get(name) for row in scores]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return False
    return chosen in (min(values), max(values))


def sweep_rows(records: Sequence[Record]) -> list[SweepRow]:
    """One row per sweep named in the records' ``tuned_from`` (records of failed or waiting sweeps carry no
    choice and give no row), sorted by task and method."""
    rows: dict[str, SweepRow] = {}
    for r in records:
        t = r.tuned_from
        if not t or "selected" not in t or t.get("sweep") in rows:
            continue
        scores = t.get("scores", [])
        rows[t["sweep"]] = SweepRow(
            task=r.task,
            method=r.method,
            on=t.get("on", "?"),
            budget=int(t.get("budget", 0)),
            seeds=tuple(t.get("seeds", ())),
            tried=tuple((values_text(row["values"]), row.get("mean")) for row in scores),
            chosen=values_text(t["selected"]),
            at_edge=_at_edge(scores, t["selected"]),
            cells=sum(len(row.get("cells", {})) for row in scores),
        )
    return sorted(rows.values(), key=lambda row: (row.task, row.method))
