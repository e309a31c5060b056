"""A grid's progress: cells done out of the grid's total, the cell running now, the time elapsed and the time left,
for a person at a terminal and for a CI log alike.

The total counts every cell this grid runs: the sweep cells and the fixed and tuned cells together (cells that
already have an ok record are skipped and not counted). How many tuned cells remain is known only once their sweep
has chosen (a tuned cell at the sweep's own budget and seed is the chosen sweep cell, reused), so while the sweeps
run the total holds an estimate for the cells after them, made exact when those start. The ETA is the cells not yet
finished times the mean wall time of the cells this grid has finished (less what the running cells have already
spent, each at most that mean), divided by the cells that run at once; "ETA unknown" until the first cell finishes.

One set of events, two displays:
- plain (``log``, default: print; what a CI log or a pipe gets): lines only, never a carriage return. Before a cell
  ``[3/18] running <cell> (elapsed 1m12s, ETA 4m48s)``; while it runs, its validation passes, indented; after it
  ``[3/18] <cell>: <test metrics or status> (36 s; elapsed 1m48s, ETA 4m12s)``.
- <cell> is short (``cell_names``): ``glue-sst2 x lora @ 256 (seed 0, settings 2) lr=0.001``, the values that tell
  it apart from its neighbours (a sweep's ``lr``) and a label for the rest of its settings (a suite's ``[set]``,
  often ~150 characters shared by a whole block), which is written out once, on its own line
  ``settings 2: batch_size=16 epochs=1 ...``, before the first cell that has it (under ``quiet`` too).
- live (stdout is a terminal and no ``log`` is given): the same lines, with a rich progress bar below them that
  shows done/total, elapsed time, the ETA and the running cell.
``quiet`` keeps only the result lines, errors and the final summary: no running lines, validation passes or bar.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.core.api import Cell

MAX_BAR_CELLS = 4  # running cells the bar names (with --jobs above that: "and N more")
INLINE_SETTINGS = 40  # characters of a cell's shared settings shown on its lines; longer ones get a label


def duration(seconds: float) -> str:
    """``36s``, ``4m05s``, ``1h02m``: short enough for a status line."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _values(overrides: dict[str, Any], keys: Sequence[str]) -> str:
    return " ".join(f"{k}={overrides[k]}" for k in sorted(keys))  # as ``Cell.describe`` writes them


def cell_names(cells: Sequence[Cell], labels: dict[str, str]) -> list[tuple[str, tuple[str, str] | None]]:
    """Each cell's name on the progress lines and its settings (label, text), or None when it has none left. The name
    is ``task x method @ budget (seed N, settings K)`` and the values that differ between the cells of its (task,
    method, budget) here (a sweep's ``lr=0.001``); the rest of its settings, the same for its whole block, is
    labelled rather than repeated when longer than ``INLINE_SETTINGS`` characters: ``labels`` maps each settings
    text to its label ("1", "2", ... in order of first use; the caller keeps it across phases)."""
    groups: dict[tuple[str, str, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.task, cell.method, cell.budget), []).append(cell)
    varying: dict[tuple[str, str, int], set[str]] = {}
    for group, members in groups.items():
        keys = set().union(*(c.overrides for c in members))
        varying[group] = {k for k in keys if len({repr(c.overrides.get(k, ...)) for c in members}) > 1}
    out = []
    for cell in cells:
        apart = varying[(cell.task, cell.method, cell.budget)]
        rest = _values(cell.overrides, [k for k in cell.overrides if k not in apart])
        if len(rest) <= INLINE_SETTINGS:  # short enough to stay on the line
            apart, rest = set(cell.overrides), ""
        own = _values(cell.overrides, [k for k in cell.overrides if k in apart])
        label = labels.setdefault(rest, str(len(labels) + 1)) if rest else None
        budget = "all" if cell.budget == 0 else cell.budget
        name = f"{cell.task} x {cell.method} @ {budget} (seed {cell.seed}{f', settings {label}' if label else ''})"
        out.append((name + (f" {own}" if own else ""), (label, rest) if label else None))
    return out


@dataclass
class _Running:
    name: str  # "sweep glue-sst2 x lora @ 256 (seed 0) lr=0.0001"
    ident: str  # "glue-sst2/lora/256/0": prefixes its validation lines when cells run at once
    started: float
    last: str = ""  # its latest validation line, for the bar


def _print(line: str) -> None:
    print(line, flush=True)  # flushed: a log piped to a file shows each cell when it ends


class GridProgress:
    """Counts and clock of one grid, and the lines (and bar) that show them; safe to call from the grid's threads."""

    def __init__(
        self,
        log: Callable[[str], None] | None = None,
        *,
        quiet: bool = False,
        live: bool | None = None,
        jobs: int = 1,
        clock: Callable[[], float] = time.perf_counter,
        console: Any = None,
    ) -> None:
        self.log = log or _print
        self.quiet, self.jobs, self.clock = quiet, max(1, jobs), clock
        if live is None:  # a bar only for a person at a terminal; a given log or a pipe gets lines only
            live = log is None and not quiet and sys.stdout.isatty()
        self.started_at = clock()
        self.done = 0  # cells finished in this grid (any status)
        self.started = 0  # cells started in this grid
        self.queued = 0  # cells of the phases begun so far, not finished yet (the running ones included)
        self.later = 0  # estimated cells of the phase still to begin (the tuned cells, while the sweeps run)
        self.times: list[float] = []  # wall time of each finished cell
        self.running: dict[int, _Running] = {}
        self.said: set[str] = set()  # settings labels written out so far
        self._tokens = itertools.count()
        self._lock = threading.RLock()
        self._bar = _Bar(self, console) if live and not quiet else None

    @property
    def total(self) -> int:
        return self.done + self.queued + self.later

    # ------------------------------------------------------------------------------------- events
    def add(self, cells: int, later: int = 0) -> None:
        """A phase begins with ``cells`` to run; ``later``: the estimate for the cells of phases still to come."""
        with self._lock:
            self.queued += cells
            self.later = later
            self._refresh()

    def start(self, name: str, ident: str, settings: tuple[str, str] | None = None) -> int:
        """A cell starts; returns the token its lines and its end are reported with. ``settings``: its label and
        text (``cell_names``), written out on a line of its own the first time (quiet or not: result lines name
        it)."""
        with self._lock:
            if settings is not None and settings[0] not in self.said:
                self.said.add(settings[0])
                self._emit(f"settings {settings[0]}: {settings[1]}")
            self.started += 1
            token = next(self._tokens)
            now = self.clock()
            self.running[token] = _Running(name, ident, now)
            if not self.quiet:
                self._emit(f"[{self.started}/{self.total}] running {name} ({self.status(now)})")
            self._refresh()
            return token

    def line(self, token: int, text: str) -> None:
        """A line the running cell printed (a validation pass), shown indented under it."""
        if self.quiet:
            return
        with self._lock:
            cell = self.running.get(token)
            if cell is None:
                return
            cell.last = text.strip()
            prefix = f"[{cell.ident}] " if self.jobs > 1 else ""  # cells at once: say whose line it is
            self._emit(f"    {prefix}{cell.last}")

    def finish(self, token: int, summary: str) -> None:
        """The cell ended with a record: its result line, with the counts and the new ETA."""
        with self._lock:
            now = self.clock()
            cell = self.running.pop(token)
            seconds = now - cell.started
            self.times.append(seconds)
            self.done += 1
            self.queued -= 1
            self._emit(f"[{self.done}/{self.total}] {cell.name}: {summary} ({seconds:.0f} s; {self.status(now)})")
            self._refresh()

    def skip(self, name: str, why: str | None = None) -> None:
        """A cell of the plan this grid will not run after all (another grid holds it, or finished it meanwhile):
        it leaves the total; ``why`` is said in its one line."""
        with self._lock:
            self.queued -= 1
            if why:
                self._emit(f"[{self.done}/{self.total}] {name}: {why}")
            self._refresh()

    def info(self, text: str) -> None:
        """What the grid is doing (phases, sweep choices): left out under ``quiet``."""
        if not self.quiet:
            with self._lock:
                self._emit(text)

    def error(self, text: str) -> None:
        """Errors, warnings and the final summary: always shown."""
        with self._lock:
            self._emit(text)

    def close(self) -> None:
        """Stop the bar (also after Ctrl-C: the terminal is left clean); the lines stay."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -------------------------------------------------------------------------------------- state
    def eta(self, now: float | None = None) -> float | None:
        """Seconds left (see the module docstring); None before the first cell finishes."""
        if not self.times:
            return None
        now = self.clock() if now is None else now
        mean = sum(self.times) / len(self.times)
        left = self.total - self.done
        if left <= 0:
            return 0.0
        spent = sum(min(now - c.started, mean) for c in list(self.running.values()))
        return max(0.0, left * mean - spent) / min(self.jobs, left)

    def status(self, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        eta = self.eta(now)
        left = "ETA unknown" if eta is None else f"ETA {duration(eta)}"
        return f"elapsed {duration(now - self.started_at)}, {left}"

    def bar_text(self) -> str:
        """The bar's text: counts and times, then a line per running cell with its latest validation line. Read
        without the lock (the bar's thread renders it while the grid's threads may hold it)."""
        running = list(self.running.values())
        lines = [f"{self.done}/{self.total} cells  {self.status()}"]
        lines += [f"running {c.name}" + (f"  {c.last}" if c.last else "") for c in running[:MAX_BAR_CELLS]]
        if len(running) > MAX_BAR_CELLS:
            lines.append(f"and {len(running) - MAX_BAR_CELLS} more")
        return "\n".join(lines)

    def _emit(self, line: str) -> None:
        if self._bar is not None:
            self._bar.print(line)
        else:
            self.log(line)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.update(self.done, self.total)


class _Bar:
    """The live display on a terminal: rich's progress bar, kept below the lines the grid prints."""

    def __init__(self, owner: GridProgress, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn
        from rich.text import Text

        class Status(ProgressColumn):
            def render(self, task: Any) -> Text:
                return Text(owner.bar_text(), no_wrap=True, overflow="ellipsis")

        self.rich = Progress(
            SpinnerColumn(), BarColumn(bar_width=30), Status(), console=console or Console(), transient=True
        )
        self.task = self.rich.add_task("grid", total=None)
        self.rich.start()

    def print(self, line: str) -> None:
        self.rich.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def update(self, done: int, total: int) -> None:
        self.rich.update(self.task, completed=done, total=max(total, done, 1), refresh=True)

    def stop(self) -> None:
        self.rich.stop()
