"""What each hyperparameter sweep tried and chose, read from the tuned records' ``tuned_from`` (written by
``bench.suite.select_sweep``), for the report and ``adaptbench summary``.

One row per sweep: the values tried, each value's validation score (mean over the sweep's seeds), the value chosen,
and a flag when the choice is the smallest or largest value tried, where the best setting may lie outside the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.analysis.flags import tuned_still_improving
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


@dataclass(frozen=True)
class TuningRow:
    """Nested tuning at one task, method and budget: what each seed chose (``Record.tuning``, bench.run.tuning)."""

    task: str
    method: str
    budget: int
    space: str
    chosen: tuple[tuple[int, str], ...]  # (seed, values chosen)
    selection: str
    widened: int  # seeds whose grid widened at an edge
    at_edge: int  # seeds whose choice sits at an edge the widening limit stopped
    lengthened: int  # seeds whose chosen run was lengthened
    still_improving: int
    steps: float  # mean optimizer steps of the whole tuning per seed

    def describe(self) -> str:
        picks = ", ".join(f"{v} (s{s})" for s, v in self.chosen)
        notes = [f"{self.selection}", f"~{self.steps:.0f} steps per seed in all"]
        if self.widened:
            notes.append(f"grid widened in {self.widened}/{len(self.chosen)}")
        if self.at_edge:
            notes.append(f"AT THE EDGE after widening in {self.at_edge}/{len(self.chosen)}")
        if self.lengthened:
            notes.append(f"lengthened in {self.lengthened}/{len(self.chosen)}")
        if self.still_improving:
            notes.append(f"STILL IMPROVING in {self.still_improving}/{len(self.chosen)}")
        return f"{self.task} x {self.method} @ {self.budget}: {self.space} -> {picks}; {'; '.join(notes)}"


def tuning_rows(records: Sequence[Record]) -> list[TuningRow]:
    """One row per (task, method, budget) of tuned records, sorted."""
    groups: dict[tuple[str, str, int], list[Record]] = {}
    for r in records:
        if r.tuning:
            groups.setdefault((r.task, r.method, r.budget), []).append(r)
    rows = []
    for (task, method, budget), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r.seed)
        infos = [r.tuning for r in rs]
        space = infos[0].get("space") or {}
        rows.append(
            TuningRow(
                task=task,
                method=method,
                budget=budget,
                space=values_text(space) if space else "(no space: selection and lengthening only)",
                chosen=tuple(
                    (r.seed, values_text(i.get("chosen") or {}) or "-") for r, i in zip(rs, infos, strict=True)
                ),
                selection=infos[0].get("selection", "?"),
                widened=sum(any(c.get("added") == "edge" for c in i.get("candidates", [])) for i in infos),
                at_edge=sum(any(v != "inside" for v in (i.get("edge") or {}).values()) for i in infos),
                lengthened=sum(any(c.get("added") == "longer" for c in i.get("candidates", [])) for i in infos),
                still_improving=sum(tuned_still_improving(i) for i in infos),
                steps=sum(i.get("steps", 0) for i in infos) / len(infos),
            )
        )
    return rows
