"""Executors: how the grid runs one cell. The grid (``bench.suite``) owns everything else, the same for every
executor: the order (sweep cells first, then the cells they tune), resume, claims, progress and ``on_record``.

- ``local`` (the default, no extra dependency): ``bench.run.harness.run_cell`` on this machine, ``--jobs`` at once,
  each cell in its own process, which writes its record to the results folder.
- ``ray`` (``grid --executor ray``, ``make setup-ray``): each cell is a Ray task on a Ray cluster, packed by the
  resources it declares (``bench.run.ray_executor``). Ray is imported only then.

An executor's ``run`` returns the cell's record once it is written to ``store``, whatever happened to the cell
(a crash, a kill, a lost machine: a record with that status and the reason, never an exception) unless the grid is
stopping (``stop``, optional: the grid calls it on Ctrl-C or SIGTERM; then ``run`` may raise and record nothing);
``slots`` is how many cells the grid keeps running at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from bench.run import harness
from bench.run.ray_executor import DEFAULT_CELL_MEMORY_GIB, RayExecutor

if TYPE_CHECKING:
    from bench.core.api import Resolved
    from bench.core.record import Record
    from bench.core.store import Store

EXECUTORS = ("local", "ray")


class Executor(Protocol):
    slots: int

    def describe(self) -> str: ...

    def run(
        self,
        res: Resolved,
        store: Store,
        *,
        data_root: str | None,
        device: str,
        timeout_s: float,
        on_line: Callable[[str], None] | None,
    ) -> Record: ...

    def close(self) -> None: ...


class LocalExecutor:
    """Each cell in its own process on this machine (``bench.run.harness.run_cell``), ``jobs`` at once; ``on_line``
    gets the cell's lines (its validation passes) as it prints them. ``stop`` (a grid stopped by Ctrl-C or SIGTERM)
    ends the cells' processes at once, records nothing for them and starts no other."""

    def __init__(self, jobs: int = 1) -> None:
        self.slots = max(1, jobs)
        self.inflight = harness.InFlight()

    def describe(self) -> str:
        return f"local, {self.slots} cells at once" if self.slots > 1 else "local"

    def run(self, res, store, *, data_root, device, timeout_s, on_line):
        follow = {} if on_line is None else {"on_line": on_line}
        return harness.run_cell(
            res,
            store=store,
            data_root=data_root,
            device=device,
            timeout_s=timeout_s,
            quiet=True,
            checked=True,
            inflight=self.inflight,
            **follow,
        )

    def stop(self) -> None:
        self.inflight.stop()

    def close(self) -> None:
        pass


def make_executor(
    name: str,
    jobs: int | None = None,
    address: str | None = None,
    cell_memory_gib: float | None = None,
    device: str = "auto",
) -> Executor:
    """The executor ``grid --executor NAME`` asked for; options of another executor are refused (ValueError)."""
    if name == "local":
        options = (("--address", address), ("--cell-memory", cell_memory_gib))
        given = [flag for flag, value in options if value is not None]
        if given:
            raise ValueError(f"{' and '.join(given)}: only with --executor ray")
        return LocalExecutor(jobs or 1)
    if name == "ray":
        memory = DEFAULT_CELL_MEMORY_GIB if cell_memory_gib is None else cell_memory_gib
        return RayExecutor(address=address, jobs=jobs, cell_memory_gib=memory, device=device)
    raise ValueError(f"unknown executor {name!r}; use one of: {', '.join(EXECUTORS)}")
