"""Suites: named lists of cells, declared in ``bench/suites/<name>.toml``, and the grid that runs them.

A suite file holds ``description``, ``seeds``, optional ``timeout_s`` and ``set`` (settings for every cell), and
one or more ``[[matrix]]`` blocks, each crossing ``tasks`` x ``methods`` x ``budgets`` (x seeds) with its own
optional ``set`` table. ``tasks`` and ``methods`` may be ``["*"]`` (the whole registry); ``budgets`` may be
``"task"`` (each task's own budgets) or ``"task+full"`` (those and the full training set, budget 0). The grid
skips every cell that already has an ``ok`` record, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import fnmatch
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.api import Cell, resolve_hparams
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


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ValueError(suggest(name_or_path, suite_names(), "suite"))
    elif not path.exists():
        raise ValueError(f"suite file {path} does not exist")
    try:
        spec = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"suite file {path} is not valid TOML: {e}") from e
    name = path.stem
    seeds = spec.get("seeds", [0])
    common: dict[str, Any] = spec.get("set", {})
    if not spec.get("matrix"):
        raise ValueError(f"suite {name}: no [[matrix]] block; add one with tasks, methods and budgets")
    load_all()
    cells: list[Cell] = []
    for i, block in enumerate(spec["matrix"]):
        missing = {"tasks", "methods", "budgets"} - set(block)
        if missing:
            raise ValueError(f"suite {name}: [[matrix]] block {i + 1} lacks {', '.join(sorted(missing))}")
        settings = {**common, **block.get("set", {})}
        tasks = TASKS.names() if block["tasks"] == ["*"] else block["tasks"]
        methods = METHODS.names() if block["methods"] == ["*"] else block["methods"]
        for task in tasks:
            budgets = _budgets(block["budgets"], task, name)
            for method in methods:
                for budget in budgets:
                    for seed in block.get("seeds", seeds):
                        cells.append(Cell(task, method, int(budget), int(seed), settings, suite=name))
    for cell in cells:  # fail on a typo now, not an hour into the run
        resolve_hparams(cell)
    return Suite(name, spec.get("description", ""), tuple(cells), float(spec.get("timeout_s", 3600)))


def _budgets(value: Any, task: str, suite: str) -> list[int]:
    if isinstance(value, list):
        return [int(b) for b in value]
    if value in ("task", "task+full"):
        own = list(TASKS.get(task).spec.budgets)
        return [*own, 0] if value == "task+full" else own
    raise ValueError(f"suite {suite}: budgets must be a list of numbers, 'task' or 'task+full', not {value!r}")


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


def run_grid(
    suite: Suite,
    store: Store,
    pattern: str | None = None,
    jobs: int = 1,
    data_root: str | None = None,
    device: str = "auto",
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    log = log or (lambda line: print(line, flush=True))  # progress shows up live even when piped to a file
    from concurrent.futures import ThreadPoolExecutor

    from bench.harness import run_cell

    todo, records = [], []
    for cell in select(suite.cells, pattern):
        key = resolve_hparams(cell).key
        if store.has_ok(suite.name, key):
            records.append(store.get(suite.name, key))
        else:
            todo.append(cell)
    log(f"suite {suite.name}: {len(records)} cells already done, {len(todo)} to run")
    start = time.perf_counter()

    def one(i_cell: tuple[int, Cell]) -> dict[str, Any]:
        i, cell = i_cell
        t0 = time.perf_counter()
        record = run_cell(cell, store=store, data_root=data_root, device=device, timeout_s=suite.timeout_s, quiet=True)
        log(f"[{i + 1}/{len(todo)}] {cell.describe()}: {summary_line(record)} ({time.perf_counter() - t0:.0f} s)")
        return record

    if jobs <= 1:
        records += [one(item) for item in enumerate(todo)]
    else:
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            records += list(pool.map(one, enumerate(todo)))
        finally:
            # on Ctrl-C or an error, start no new cell; running cells finish and keep their records
            pool.shutdown(wait=True, cancel_futures=True)
    log(f"suite {suite.name}: ran {len(todo)} cells in {time.perf_counter() - start:.0f} s")
    return records


def summary_line(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        first = (record.get("error") or "").strip().splitlines()
        return f"{record['status'].upper()}: {first[-1] if first else ''}"[:200]
    tests = {k: v for k, v in record["metrics"].items() if k.startswith("test")}
    return " ".join(f"{k}={v:.4f}" for k, v in tests.items())
