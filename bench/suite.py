"""Suites: named lists of cells, declared in ``bench/suites/<name>.toml``, and the grid that runs them.

A suite file holds ``description``, ``seeds``, optional ``timeout_s`` and ``set`` (settings for every cell), and
one or more ``[[matrix]]`` blocks, each crossing ``tasks`` x ``methods`` x ``budgets`` (x seeds) with its own
optional ``set`` table. ``tasks`` and ``methods`` may be ``["*"]`` (the whole registry); ``budgets`` may be
``"task"`` (each task's own budgets) or ``"task+full"`` (those and the full training set, budget 0). The grid
skips every cell that already has an ``ok`` record, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import difflib
import fnmatch
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.api import Cell, resolve_hparams
from bench.record import Record
from bench.registry import METHODS, TASKS, load_all, suggest
from bench.store import Store

SUITES_DIR = Path(__file__).parent / "suites"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    cells: tuple[Cell, ...]
    timeout_s: float


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.toml"))


MAX_SEED = 2**32 - 1  # numpy's seed range
TOP_KEYS = ("description", "seeds", "timeout_s", "set", "matrix")
BLOCK_KEYS = ("tasks", "methods", "budgets", "seeds", "set")
WHOLE_POOL = ("task", "task+full")


def resolve_suite_path(name_or_path: str) -> Path:
    """A suite name (``bench/suites/<name>.toml``) or a path to a ``.toml`` file; the suite's name is its stem."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ValueError(suggest(name_or_path, suite_names(), "suite"))
    elif not path.exists():
        raise ValueError(f"suite file {path} does not exist")
    return path


def load_suite(name_or_path: str) -> Suite:
    path = resolve_suite_path(name_or_path)
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"suite file {path} is not valid TOML: {e}") from e
    name = path.stem
    where = f"suite file {path}"
    _check_keys(spec, TOP_KEYS, where)
    seeds = _seeds(spec.get("seeds", [0]), where)
    timeout = spec.get("timeout_s", 3600)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"{where}: timeout_s must be a positive number of seconds, not {timeout!r}")
    if not isinstance(spec.get("description", ""), str):
        raise ValueError(f"{where}: description must be a string")
    common = _table(spec.get("set", {}), f"{where}, [set]")
    blocks = spec.get("matrix")
    if not blocks:
        raise ValueError(f"{where}: no [[matrix]] block; add one with tasks, methods and budgets")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise ValueError(f"{where}: matrix must be [[matrix]] blocks (tables), not {type(blocks).__name__}")
    load_all()
    cells: list[Cell] = []
    for i, block in enumerate(blocks):
        here = f"{where}, [[matrix]] block {i + 1}"
        _check_keys(block, BLOCK_KEYS, here)
        missing = {"tasks", "methods", "budgets"} - set(block)
        if missing:
            raise ValueError(f"{here}: lacks {', '.join(sorted(missing))}")
        settings = {**common, **_table(block.get("set", {}), f"{here}, set")}
        tasks = _names(block["tasks"], TASKS, "task", here)
        methods = _names(block["methods"], METHODS, "method", here)
        block_seeds = _seeds(block["seeds"], here) if "seeds" in block else seeds
        budgets_value = _check_budgets(block["budgets"], here)
        first = len(cells)
        for task in tasks:
            budgets = _budgets(budgets_value, task)
            for method in methods:
                for budget in budgets:
                    for seed in block_seeds:
                        cells.append(Cell(task, method, budget, seed, settings, suite=name))
        for cell in cells[first:]:  # fail on a typo now, not an hour into the run
            try:
                resolve_hparams(cell)
            except ValueError as e:
                raise ValueError(f"{here}: {e}") from None
    return Suite(name, spec.get("description", ""), tuple(cells), float(timeout))


def _check_keys(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{where}: unknown key {key!r}.{hint} Allowed: {', '.join(allowed)}.")


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a table of settings (key = value), not {value!r}")
    return value


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: seeds must be a non-empty list of integers, e.g. seeds = [0, 1, 2], not {value!r}")
    for s in value:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise ValueError(f"{where}: seeds: {s!r} is not a seed (an integer from 0 to {MAX_SEED})")
    return list(value)


def _names(value: Any, registry, kind: str, where: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f'{where}: {kind}s must be a non-empty list of names, or ["*"] for all, not {value!r}')
    if value == ["*"]:
        return registry.names()
    for v in value:
        if v not in registry:
            raise ValueError(f"{where}: {suggest(v, registry.names(), kind)}")
    return list(value)


def _check_budgets(value: Any, where: str) -> list[int] | str:
    fix = f"budgets must be a non-empty list of example counts (0 = the whole pool), or one of {WHOLE_POOL}"
    if isinstance(value, str):
        if value not in WHOLE_POOL:
            raise ValueError(f"{where}: {fix}, not {value!r}")
        return value
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: {fix}, not {value!r}")
    for b in value:
        if isinstance(b, bool) or not isinstance(b, int) or b < 0:
            raise ValueError(f"{where}: budgets: {b!r} is not an example count; {fix}")
    return list(value)


def _budgets(value: list[int] | str, task: str) -> list[int]:
    if isinstance(value, list):
        return value
    own = list(TASKS.get(task).spec.budgets)
    return [*own, 0] if value == "task+full" else own


def select(cells: tuple[Cell, ...], pattern: str | None) -> list[Cell]:
    """Keep cells whose ``task/method/budget/seed`` matches a glob (``glue-*/lora/*``) or contains a substring."""
    if not pattern:
        return list(cells)
    out = []
    for c in cells:
        ident = f"{c.task}/{c.method}/{c.budget}/{c.seed}"
        if fnmatch.fnmatch(ident, pattern) or pattern in ident:
            out.append(c)
    return out


@dataclass
class GridResult:
    """What a grid did: the records of its cells (run now or earlier), the cells it left to another grid that
    holds their claims, and the tasks it could not run (their data is missing or corrupt, or a budget is too big)."""

    records: list[Record] = field(default_factory=list)
    claimed: dict[str, list[Cell]] = field(default_factory=dict)  # "pid P on host H" -> cells it holds
    refused: dict[str, str] = field(default_factory=dict)  # task -> why its cells were not run

    @property
    def ok(self) -> bool:
        return not self.refused and all(r.status in ("ok", "unsupported") for r in self.records)


def run_grid(
    suite: Suite,
    store: Store,
    pattern: str | None = None,
    jobs: int = 1,
    data_root: str | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> GridResult:
    log = log or (lambda line: print(line, flush=True))  # progress shows up live even when piped to a file
    from concurrent.futures import ThreadPoolExecutor

    from bench.claims import Claims
    from bench.data import DataError, DataRoot
    from bench.harness import check_inputs, run_cell

    result, todo = GridResult(), []
    data, pool_sizes = DataRoot.resolve(data_root), {}
    for cell in select(suite.cells, pattern):
        res = resolve_hparams(cell)
        if store.has_ok(suite.name, res.key):
            result.records.append(store.get(suite.name, res.key))
            continue
        if store.path(suite.name, res.key) in store.unreadable:
            log(f"unreadable record {store.path(suite.name, res.key)}: will be recomputed")
        if cell.task in result.refused:
            continue
        try:  # once per task and settings: files are verified once per process, pool sizes are cached
            check_inputs(res, data, pool_sizes)
        except (DataError, ValueError) as e:
            result.refused[cell.task] = str(e)
            log(f"error: {cell.task}: its cells will not run: {e}")
            continue
        todo.append(cell)
    todo = [c for c in todo if c.task not in result.refused]
    log(f"suite {suite.name}: {len(result.records)} cells already done, {len(todo)} to run")
    claims = Claims(store.suite_dir(suite.name), suite.timeout_s)
    start = time.perf_counter()

    def one(i_cell: tuple[int, Cell]) -> Record | None:
        i, cell = i_cell
        key = resolve_hparams(cell).key
        holder = claims.acquire(key)
        if holder is not None:
            result.claimed.setdefault(holder.describe(), []).append(cell)
            log(f"[{i + 1}/{len(todo)}] {cell.describe()}: skipped, claimed by {holder.describe()}")
            return None
        try:
            if store.has_ok(suite.name, key):  # another grid finished it between our look and our claim
                return store.get(suite.name, key)
            t0 = time.perf_counter()
            record = run_cell(
                cell,
                store=store,
                data_root=data_root,
                device=device,
                timeout_s=suite.timeout_s,
                quiet=True,
                checked=True,
            )
        finally:
            claims.release(key)  # after the record is written
        log(f"[{i + 1}/{len(todo)}] {cell.describe()}: {summary_line(record)} ({time.perf_counter() - t0:.0f} s)")
        return record

    if jobs <= 1:
        done = [one(item) for item in enumerate(todo)]
    else:
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            done = list(pool.map(one, enumerate(todo)))
        finally:
            # on Ctrl-C or an error, start no new cell; running cells finish and keep their records
            pool.shutdown(wait=True, cancel_futures=True)
    result.records += [r for r in done if r is not None]
    ran = sum(r is not None for r in done)
    log(f"suite {suite.name}: ran {ran} cells in {time.perf_counter() - start:.0f} s")
    for holder, cells in result.claimed.items():
        log(f"skipped {len(cells)} cells claimed by {holder} (another grid on this results folder is running them)")
    for task, why in result.refused.items():
        log(f"skipped task {task}: {why}")
    return result


def summary_line(record: Record) -> str:
    """One line per finished cell: its test metrics, or its status and the last paragraph of its error."""
    if not record.ok:
        error = (record.error or "").split("--- stderr tail ---")[0]  # the parent's own words come first
        paragraphs = [p for p in error.strip().split("\n\n") if p.strip()]
        last = paragraphs[-1] if paragraphs else ""
        if "\n" in last:  # a traceback: its last line holds the exception and its message
            last = last.strip().splitlines()[-1]
        return f"{record.status.upper()}: {last}"
    tests = {k: v for k, v in record.metrics.items() if k.startswith("test")}
    flags = "".join(f" [{f}]" for f in record.flags)
    return " ".join(f"{k}={v:.4f}" for k, v in tests.items()) + flags
