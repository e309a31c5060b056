"""The grid: run a suite's cells that have no ok record, first its sweep cells, then the fixed cells and the cells the
sweeps tuned, each through an executor (``bench.run.executor``), with claims on a shared results folder
(``bench.run.locks``), resume and progress (``bench.run.progress``). What the cells are is the suite's business
(``bench.suite``); running them is this module's. ``plan`` is ``grid --dry-run``.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from bench.catalog import resolve
from bench.core.api import Cell, Resolved
from bench.core.backbone import BackboneUnavailable, get_backbone
from bench.core.data import DataError, DataRoot
from bench.core.record import Record, result_line
from bench.core.store import Store
from bench.run.executor import LocalExecutor
from bench.run.harness import check_inputs, check_recorded_data
from bench.run.locks import Claims
from bench.run.progress import GridProgress, cell_names
from bench.run.stop import Stopped, signum_of
from bench.suite import Suite, Sweep, SweepOutcome, pending_records, select, select_sweep, values_text, wanted


@dataclass
class GridResult:
    """What a grid did: the records of its cells (run now or earlier), the cells it left to another grid that
    holds their claims, the tasks it could not run (their data is missing or corrupt, or a budget is too big), and
    the sweeps whose block cells wait for sweep cells without a record (claimed by another grid)."""

    records: list[Record] = field(default_factory=list)
    claimed: dict[str, list[Cell]] = field(default_factory=dict)  # "pid P on host H" -> cells it holds
    refused: dict[str, str] = field(default_factory=dict)  # task -> why its cells were not run
    sweeps: list[SweepOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused and all(r.status in ("ok", "unsupported") for r in self.records)


@dataclass
class _Grid:
    """What the phases of one grid share."""

    suite: Suite
    store: Store
    result: GridResult
    claims: Any  # bench.run.locks.Claims
    data: Any  # bench.core.data.DataRoot
    executor: Any  # bench.run.executor.Executor: how one cell runs (on this machine, or on a Ray cluster)
    data_root: str | None
    device: str
    progress: GridProgress
    pool_sizes: dict[str, int] = field(default_factory=dict)
    on_record: Callable[[Record], None] | None = None
    extend: Callable[[list[Record], int], list[Cell]] | None = None
    before: set[str] = field(default_factory=set)  # keys of cells found with an ok record, not run by this grid
    recorded: set[str] = field(default_factory=set)  # keys of cells this grid ran and recorded
    weights: dict[str, bool] = field(default_factory=dict)  # backbone -> its pretrained weights are here
    labels: dict[str, str] = field(default_factory=dict)  # settings text -> its label on progress lines

    def stopped_text(self, signum: int) -> str:
        """The line a stopped grid ends with: how far it got, what it recorded, how to go on."""
        progress = self.progress
        done, total = len(self.before) + progress.done, len(self.before) + progress.total
        running = len(progress.running)
        dropped = f"; the {running} running were stopped and have no record" if running > 1 else ""
        dropped = "; the running one was stopped and has no record" if running == 1 else dropped
        return (
            f"interrupted by {Stopped(signum).name} after {done} of {total} cells ({progress.done} recorded this "
            f"run{dropped}); rerun the same command to resume"
        )


def run_grid(
    suite: Suite,
    store: Store,
    pattern: str | None = None,
    jobs: int = 1,
    data_root: str | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
    quiet: bool = False,
    live: bool | None = None,
    on_record: Callable[[Record], None] | None = None,
    executor: Any = None,
    extend: Callable[[list[Record], int], list[Cell]] | None = None,
) -> GridResult:
    """Run a suite's cells that have no ok record: first the sweep cells, then the fixed cells and the sweeps'
    block cells with the values the sweeps chose. Progress (bench.run.progress) goes to ``log`` as lines (default:
    stdout, with a live bar when it is a terminal, unless ``live`` says otherwise); ``quiet`` keeps only each
    cell's result line, errors and the final summary. ``on_record`` is called with the record of each cell run now,
    once it is written (from a worker thread when cells run at once), e.g. ``bench.run.wandb_log.WandbLogger``.
    ``executor`` (``bench.run.executor``) runs each cell, ``executor.slots`` at once; default: this machine, ``jobs``
    at once. The caller closes an executor it passes.

    ``extend`` makes the grid adaptive (a suite's ``[adaptive]`` table): once the suite's cells have run it is called
    with every record so far and the next look's number (2, 3, ...) and returns the cells of that look (more seeds where
    a comparison is still open, each cell's ``allocation`` saying why; ``bench.analysis.allocation`` decides), and the
    grid runs them, until it returns none or the next look's estimated cost (the recorded wall time of the same
    task, method and budget, per slot) would pass the suite's ``minutes``, counted from the grid's start.

    Ctrl-C (or SIGTERM, raised as ``bench.run.stop.Stopped`` by the command line) ends the running cells' processes
    with no record (a rerun runs them; every record written is whole) and raises ``Stopped`` whose message says how
    many cells are done and how to resume."""
    seen: dict[str, str] = {}  # a declared dataset changed under records of its name: refused before any cell runs
    for cell in {c.task: c for c in [*suite.cells, *suite.sweep_cells()]}.values():
        check_recorded_data(resolve(cell), store, seen)
    executor = executor or LocalExecutor(jobs)
    progress = GridProgress(log, quiet=quiet, live=live, jobs=executor.slots)
    claims = Claims(store.suite_dir(suite.name), suite.timeout_s)
    data = DataRoot.resolve(data_root)
    g = _Grid(suite, store, GridResult(), claims, data, executor, data_root, device, progress, on_record=on_record)
    g.extend = extend
    if not isinstance(executor, LocalExecutor):
        progress.info(f"executor {executor.describe()}")
    try:
        return _run_grid(g, pattern)
    except KeyboardInterrupt as e:
        progress.close()  # the bar goes before the line that says what happened
        raise Stopped(signum_of(e), g.stopped_text(signum_of(e))) from None
    finally:
        progress.close()


def _run_grid(g: _Grid, pattern: str | None) -> GridResult:
    suite, store, result, progress = g.suite, g.store, g.result, g.progress
    start, ran = time.perf_counter(), 0
    sweeps = [s for s in suite.sweeps if wanted(s, pattern)]
    if sweeps:
        cells = [c for s in sweeps for c in s.cells()]
        progress.info(f"suite {suite.name}: {len(sweeps)} sweeps, {len(cells)} sweep cells")
        ran += _run_cells(g, cells, "sweep ", later=_cells_after_sweeps(suite, store, sweeps, pattern))
    tuned = []
    for sweep in sweeps:
        outcome = select_sweep(sweep, lambda key: store.get(suite.name, key))
        result.sweeps.append(outcome)
        block = select(sweep.dependents(), pattern)
        if sweep.task in result.refused:
            continue
        if outcome.status == "selected":
            progress.info(outcome.describe())
            tuned += select(sweep.dependents(outcome.chosen, outcome.tuned_from), pattern)
        elif outcome.status in ("failed", "unsupported"):
            say = progress.error if outcome.status == "failed" else progress.info  # unsupported is an answer
            say(outcome.describe())
            for record in pending_records(outcome, block):
                store.write(record)
                result.records.append(record)
            say(f"{len(block)} cells of {sweep.name}: {outcome.status}, not run ({outcome.reason})")
        else:
            progress.error(outcome.describe())
            progress.error(f"{len(block)} cells of {sweep.name} not run: {outcome.reason}")
    cells = [*select(suite.cells, pattern), *tuned]
    ran += _run_cells(g, cells, "", later=0)
    result.records = list({r.key: r for r in result.records}.values())  # a tuned cell may be a sweep cell too
    if g.extend is not None:
        ran += _looks(g, pattern, start)
    progress.error(f"suite {suite.name}: ran {ran} cells in {time.perf_counter() - start:.0f} s")
    for holder, held in result.claimed.items():
        progress.error(
            f"skipped {len(held)} cells claimed by {holder} (another grid on this results folder is running them)"
        )
    for task, why in result.refused.items():
        progress.error(f"skipped task {task}: {why}")
    return result


def _looks(g: _Grid, pattern: str | None, start: float) -> int:
    """The adaptive grid's later looks (see ``run_grid``); returns how many cells they ran."""
    suite, result, progress = g.suite, g.result, g.progress
    budget_s = suite.adaptive.minutes * 60 if suite.adaptive is not None else math.inf
    ran, look = 0, 2
    while True:
        cells = select(g.extend(list(result.records), look), pattern)
        todo = [c for c in cells if not g.store.has_ok(suite.name, resolve(c).key)]
        if not cells:
            progress.info(f"look {look}: no comparison is open where more seeds could decide it; the grid is done")
            break
        slots = max(1, g.executor.slots)
        ends = list(itertools.accumulate(c / slots for c in _costs(result.records, todo)))  # seconds, cumulative
        estimate = ends[-1] if ends else 0.0
        # the suite's compute so far: this grid's time, or the recorded cells' (a grid resumed after a stop)
        spent = max(time.perf_counter() - start, _recorded(result.records) / slots)
        if spent + estimate > budget_s:  # the cells come by priority: run the ones that fit
            fits = [c for c, end in zip(todo, ends, strict=True) if spent + end <= budget_s]
            progress.error(
                f"look {look}: {len(todo)} cells (~{estimate / 60:.0f} min) would pass the suite's "
                f"{suite.adaptive.minutes:g} min ({spent / 60:.0f} min spent): running the {len(fits)} that fit; "
                "the comparisons left open stay undecided at this compute"
            )
            if not fits:
                break
            cells, estimate = fits, ends[len(fits) - 1]
        progress.info(f"look {look}: {len(cells)} cells where comparisons are open (~{estimate / 60:.1f} min)")
        ran += _run_cells(g, cells, f"look {look} ", later=0)
        result.records = list({r.key: r for r in result.records}.values())
        look += 1
    return ran


def _recorded(records: list[Record]) -> float:
    """Seconds the records' cells took (their wall times, summed)."""
    return sum(r.cost.wall_time_s or 0.0 for r in records if r.cost is not None)


def _costs(records: list[Record], cells: list[Cell]) -> list[float]:
    """Seconds each of the ``cells`` should take on one slot: the mean recorded wall time of its (task, method,
    budget) (of all records when none matches)."""
    times: dict[tuple[str, str, int], list[float]] = {}
    for r in records:
        wall = r.cost.wall_time_s if r.cost is not None else None
        if wall:
            times.setdefault((r.task, r.method, r.budget), []).append(wall)
    every = [t for ts in times.values() for t in ts] or [60.0]
    mean_all = sum(every) / len(every)
    means = {k: sum(ts) / len(ts) for k, ts in times.items()}
    return [means.get((c.task, c.method, c.budget), mean_all) for c in cells]


def _cells_after_sweeps(suite: Suite, store: Store, sweeps: list[Sweep], pattern: str | None) -> int:
    """How many cells the grid will run once its sweeps have run, as far as records tell before they do: the fixed
    cells and the tuned cells without an ok record (a sweep that has not chosen yet: its block's cells, less those
    at the sweep's budget and seeds, which will be its chosen sweep cells). The count the progress starts from."""
    keys = {resolve(c).key for c in select(suite.cells, pattern)}
    unchosen = 0
    for sweep in sweeps:
        outcome = select_sweep(sweep, lambda key: store.get(suite.name, key))
        if outcome.status == "selected":
            keys |= {resolve(c).key for c in select(sweep.dependents(outcome.chosen), pattern)}
        else:
            block = select(sweep.dependents(), pattern)
            unchosen += sum(not (c.budget == sweep.budget and c.seed in sweep.seeds) for c in block)
    return sum(not store.has_ok(suite.name, key) for key in keys) + unchosen


def _reuse(store: Store, suite: str, key: str, cell: Cell) -> Record:
    """An ok record found for a cell; a tuned cell that coincides with a sweep cell gets its ``tuned_from``."""
    record = store.get(suite, key)
    if cell.tuned_from is not None and record.tuned_from != cell.tuned_from:
        record.tuned_from = cell.tuned_from
        store.write(record)
    return record


def _run_cells(g: _Grid, cells: list[Cell], label: str, later: int) -> int:
    """Run the cells without an ok record (each once, in order), adding every record to ``g.result``; returns how
    many ran (not those another grid finished meanwhile). ``later``: the estimate of the cells the grid runs after
    these, for the progress's total."""
    suite, store, result, progress = g.suite, g.store, g.result, g.progress
    todo, seen, already, refused = [], set(), 0, 0
    for cell in cells:
        res = resolve(cell)  # once: the Resolved travels to the executor, the harness and the cell's process
        if res.key in seen:
            continue
        seen.add(res.key)
        if store.has_ok(suite.name, res.key):
            result.records.append(_reuse(store, suite.name, res.key, cell))
            already += 1
            if res.key not in g.recorded:
                g.before.add(res.key)
            continue
        if cell.task in result.refused:
            refused += 1
            continue
        try:  # once per task and settings: files are verified once per process, pool sizes are cached
            check_inputs(res, g.data, g.pool_sizes)
            _check_weights_once(g, res)
        except (DataError, ValueError, BackboneUnavailable) as e:
            result.refused[cell.task] = str(e)
            progress.error(f"error: {cell.task}: its cells will not run: {e}")
            refused += 1
            continue
        todo.append(res)
    kept = [r for r in todo if r.cell.task not in result.refused]
    refused += len(todo) - len(kept)
    for res in kept:
        if store.path(suite.name, res.key) in store.unreadable:
            progress.error(f"unreadable record {store.path(suite.name, res.key)}: will be recomputed")
    todo = kept
    tasks = sorted({c.task for c in cells if c.task in result.refused})
    skipped = f", {refused} not run (task {', '.join(tasks)} refused, above)" if refused else ""
    progress.info(f"suite {suite.name}: {already} {label}cells already done, {len(todo)} to run{skipped}")
    progress.add(len(todo), later=later)
    names = dict(zip((r.key for r in todo), cell_names([r.cell for r in todo], g.labels), strict=True))

    def one(res: Resolved) -> tuple[Record, bool] | None:
        """The cell's record and whether this grid ran it (None: another grid holds it)."""
        cell, key = res.cell, res.key
        short, settings = names[key]  # the block's long settings once, on their own line (bench.run.progress)
        name = f"{label}{short}"
        holder = g.claims.acquire(key)
        if holder is not None:
            result.claimed.setdefault(holder.describe(), []).append(cell)
            progress.skip(name, f"skipped, claimed by {holder.describe()}")
            return None
        try:
            if store.has_ok(suite.name, key):  # another grid finished it between our look and our claim
                progress.skip(name, "done meanwhile by another grid (its record is kept)")
                g.before.add(key)
                return _reuse(store, suite.name, key, cell), False
            token = progress.start(name, f"{cell.task}/{cell.method}/{cell.budget}/{cell.seed}", settings)
            # the cell's stdout (a line per validation pass) comes back line by line, unless quiet discards it
            follow = None if progress.quiet else lambda line: progress.line(token, line)
            record = g.executor.run(
                res, store, data_root=g.data_root, device=g.device, timeout_s=suite.timeout_s, on_line=follow
            )
        finally:
            g.claims.release(key)  # after the record is written
        g.recorded.add(key)
        store.unreadable.pop(store.path(suite.name, key), None)  # replaced by the record just written
        progress.finish(token, result_line(record))
        if g.on_record is not None:
            g.on_record(record)
        return record, True

    if g.executor.slots <= 1:
        done = [one(res) for res in todo]  # Ctrl-C reaches the running cell's harness, which ends its process
    else:
        pool = ThreadPoolExecutor(max_workers=g.executor.slots)
        try:
            done = list(pool.map(one, todo))
        except KeyboardInterrupt:
            _stop(g.executor)  # end the running cells now, with no record, rather than wait for them
            raise
        finally:
            # on Ctrl-C or an error, start no new cell; running cells end (see above) or finish with their record
            pool.shutdown(wait=True, cancel_futures=True)
    result.records += [d[0] for d in done if d is not None]
    return sum(d is not None and d[1] for d in done)


def check_weights(res: Resolved) -> None:
    """Refuse a cell whose backbone's pretrained weights are nowhere here (``BackboneUnavailable``, one paragraph
    naming the fix) before its process starts: offline, a cell would otherwise fail inside it, with a traceback and
    a ``failed`` record. An unsupported cell needs none (its record says why it cannot run)."""
    if res.unsupported_reason() is None:
        get_backbone(res.backbone).check_weights()


def _check_weights_once(g: _Grid, res: Resolved) -> None:
    """``check_weights``, its answer kept per backbone: a second task refused for the same missing weights points to
    the first one's paragraph rather than repeating it."""
    if res.unsupported_reason() is not None:
        return
    name = res.backbone
    if name not in g.weights:
        try:
            get_backbone(name).check_weights()
        except BackboneUnavailable:
            g.weights[name] = False
            raise
        g.weights[name] = True
    elif not g.weights[name]:
        raise BackboneUnavailable(f"the pretrained weights of {name} are not here (the fix: above)")


def _stop(executor: Any) -> None:
    """Tell an executor that can (the local one) to end its running cells and start none."""
    stop = getattr(executor, "stop", None)
    if stop is not None:
        stop()


def check_filter(suite: Suite, pattern: str | None) -> None:
    """A ``--filter`` that keeps none of the suite's cells (fixed, sweep or tuned) is a mistake, not an empty run."""
    if not pattern:
        return
    cells = [*suite.cells, *(c for s in suite.sweeps for c in (*s.cells(), *s.dependents()))]
    if select(cells, pattern):
        return
    names = list(dict.fromkeys(f"{c.task}/{c.method}/{c.budget}/{c.seed}" for c in cells))
    first: dict[str, str] = {}
    for name in names:
        first.setdefault(name.split("/")[1], name)
    by_method = list(first.values())  # one per method, then the rest
    examples = list(dict.fromkeys([*by_method, *names]))[:4]
    raise ValueError(
        f"--filter {pattern!r} matches none of suite {suite.name}'s {len(names)} cells (a glob or a substring of "
        f"task/method/budget/seed); e.g. {', '.join(examples)}"
    )


def plan(
    suite: Suite, store: Store, pattern: str | None = None, estimate: Callable[[Cell], str] | None = None
) -> list[str]:
    """``grid --dry-run``: one line per cell the grid would consider and whether it has an ok record: the sweep
    cells first, then the cells their sweeps tune (with the chosen values, once the sweep records allow a choice),
    then the fixed cells. ``estimate(cell)``, when given, is appended to each line (``bench.run.plan_cmd``). A cell
    ``run`` would record as unsupported (``Resolved.unsupported_reason``, the same check) says so, with the reason,
    instead of "to run"."""

    def line(kind: str, cell: Cell, swept: dict[str, Any] | None = None, note: str = "") -> str:
        res = resolve(cell)
        values = f" {values_text(swept)}" if swept else ""
        name = f"{cell.task}/{cell.method}/{cell.budget}/{cell.seed}{values}{note}"
        if store.has_ok(suite.name, res.key):
            state = "done"
        elif (reason := res.unsupported_reason()) is not None:
            return f"  {kind:6s} {'unsupported':11s} {name}  ({reason})"  # recorded as such at once; nothing runs
        else:
            state = "to run"
        cost = estimate(cell) if estimate is not None else ""
        return f"  {kind:6s} {state:11s} {name}{cost}"

    out = []
    sweeps = [s for s in suite.sweeps if wanted(s, pattern)]
    for sweep in sweeps:
        out += [line("sweep", c, {f: c.overrides[f] for f in sweep.fields}, f"  ({sweep.name})") for c in sweep.cells()]
    for sweep in sweeps:
        outcome = select_sweep(sweep, lambda key: store.get(suite.name, key))
        if outcome.status == "selected":
            cells = select(sweep.dependents(outcome.chosen), pattern)
            out += [line("tuned", c, outcome.chosen, f"  (chosen by the sweep of {sweep.name})") for c in cells]
            continue
        why = "waits for its sweep" if outcome.status == "waiting" else f"not run: {outcome.reason}"
        for c in select(sweep.dependents(), pattern):
            cost = estimate(c) if estimate is not None else ""
            out.append(f"  {'tuned':6s} {'-':11s} {c.task}/{c.method}/{c.budget}/{c.seed}  ({sweep.name}: {why}){cost}")
    out += [line("cell", c) for c in select(suite.cells, pattern)]
    return out
