"""The Ray executor (``grid --executor ray``): each cell of a grid is a Ray task on a Ray cluster.

Ray is the engine: it places each task on a node that has the resources the cell declares, starts and reuses the
worker processes, and reports a lost worker or node. Nothing here schedules, queues or talks to other machines
itself. The grid (``bench.suite``) is the one the local executor uses: it claims a cell before submitting it, keeps
``slots`` cells submitted at once (each waited on by one of its threads), shows progress, files the record, then
releases the claim and calls ``on_record``.

What a cell asks Ray for:
- ``num_cpus``: its ``threads`` setting (torch's CPU threads: 2 unless a suite or ``--set threads=N`` says more);
- ``num_gpus``: 1 when it runs on CUDA (``--device cuda``, or ``auto`` on a cluster that has GPUs), so a GPU cell
  never shares its GPU; else 0, and the cell runs on the CPU. Ray does not hide the GPUs from a task that asked for
  none, so the device is decided here and passed to the cell, never left to ``auto`` on the worker;
- ``memory``: ``--cell-memory`` GiB (default 4: the largest peak RSS of the committed CPU baselines is 3.8 GiB);
  Ray starts a cell only on a node where that much of its memory is not reserved by other cells.

On the worker the task calls ``bench.run.harness.run_cell``, as the local executor does: the cell runs in its own
process (forked from that Ray worker's fork server, which imported torch and friends once), under the harness's
timeout, out-of-memory retry and statuses. The record and its per-example predictions are written to a temporary
folder on the worker and come back as the task's result; the driver writes them into its results folder
(atomically, ``bench.core.store``). So only the driver needs the results folder; every node needs the code, the venv and
the data (checked on the worker before the cell starts).

What can go wrong, and the record it gives (never a silent gap):
- the cell itself crashes, is killed, runs out of memory or of time: the harness's record, as on one machine;
- the task is lost (its Ray worker process died, its node died or left the cluster, Ray's memory monitor killed it,
  its result was lost): the driver submits it again, ``ATTEMPTS`` times in all. A record that needed another attempt
  lists the lost ones in ``executor.lost``; when every attempt is lost the driver writes a ``failed`` record
  (``oom`` when Ray's memory monitor killed each one) whose error starts ``ray worker died:`` and names each loss;
- the task raised on the worker (the node lacks the data or the code): a ``failed`` record with that error, not
  retried (it would raise again).
"""

from __future__ import annotations

import os
import time
from typing import Any

import bench
from bench.catalog import resolve
from bench.core.api import Resolved, TrainConfig
from bench.core.data import DataRoot
from bench.core.record import Cost, Record, new_record
from bench.core.store import Store
from bench.run import harness
from bench.run.harness import check_inputs

ATTEMPTS = 3  # submissions of a cell whose task is lost before it is recorded as failed
DEFAULT_CELL_MEMORY_GIB = 4.0
# the driver's settings a cell's behaviour depends on, passed to every worker (paths must hold on every node)
FORWARDED_ENV = (
    "ADAPTBENCH_DATA",
    "ADAPTBENCH_CACHE",
    "ADAPTBENCH_OFFLINE",
    "ADAPTBENCH_DEBUG",
    "HF_HOME",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
)
INSTALL_HINT = "`make setup-ray` (or `pip install 'adaptbench[ray]'`)"


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(f"--executor ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


class RayExecutor:
    """Connects to a Ray cluster (``address``: ``auto`` = the one started on this machine with ``ray start``,
    ``ray://host:10001`` = Ray Client, ``host:6379`` = a cluster's GCS; None = ``$RAY_ADDRESS``, or else a new Ray
    instance on this machine alone) and runs cells there. ``jobs``: cells submitted at once (default: as many as
    the cluster holds at once, at the default threads and ``cell_memory_gib``)."""

    def __init__(
        self,
        address: str | None = None,
        jobs: int | None = None,
        cell_memory_gib: float = DEFAULT_CELL_MEMORY_GIB,
        device: str = "auto",
        attempts: int = ATTEMPTS,
    ) -> None:
        if not cell_memory_gib > 0:
            raise ValueError(f"--cell-memory must be a positive number of GiB, not {cell_memory_gib}")
        ray = import_ray()
        self.memory = int(cell_memory_gib * 2**30)
        self.attempts = max(1, attempts)
        self._connected_here = not ray.is_initialized()
        if self._connected_here:
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            try:  # worker output stays in Ray's logs: the grid's lines and the records say what happened
                ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env} if env else None)
            except ConnectionError as e:
                raise ValueError(f"cannot reach the Ray cluster at {address or '$RAY_ADDRESS'}: {e}") from None
        self.resources = ray.cluster_resources()
        self.gpus = int(self.resources.get("GPU", 0))
        if device == "cuda" and not self.gpus:
            print("warning: --device cuda, and the Ray cluster has no GPU now: cells wait until a GPU node joins")
        self.device, self.num_gpus = ("cuda", 1) if device == "cuda" or (device == "auto" and self.gpus) else ("cpu", 0)
        self.slots = jobs or self.capacity(TrainConfig.threads)
        self._task = ray.remote(run_on_worker)

    def capacity(self, cpus: int) -> int:
        """How many cells of ``cpus`` CPUs (and a GPU, on CUDA) the cluster runs at once, by its resources now."""
        fits = [self.resources.get("CPU", 0) // cpus, self.resources.get("memory", 0) // self.memory]
        if self.num_gpus:
            fits.append(self.gpus)
        return max(1, int(min(fits)))

    def describe(self) -> str:
        cpus, memory = self.resources.get("CPU", 0), self.resources.get("memory", 0) / 2**30
        return (
            f"ray: {cpus:g} CPUs, {self.gpus} GPUs, {memory:.0f} GiB; each cell asks for its threads as CPUs, "
            f"{self.num_gpus} GPU and {self.memory / 2**30:g} GiB; {self.slots} cells at once"
        )

    def options(self, res: Resolved) -> dict[str, Any]:
        """The resources Ray reserves for the cell (see the module docstring)."""
        return {
            "num_cpus": res.train.threads,
            "num_gpus": self.num_gpus,
            "memory": self.memory,
            "max_retries": 0,  # a lost task is submitted again by ``run``, which keeps each loss's reason
            "retry_exceptions": False,
            "name": f"adaptbench:{res.key}",
        }

    def run(self, res, store, *, data_root, device, timeout_s, on_line=None) -> Record:
        """Run the resolved cell ``res`` on the cluster and return its record, written to ``store``. ``device`` is
        decided once for the cluster (see ``__init__``); the cell's validation lines are not followed (``on_line`` is
        unused)."""
        import ray
        from ray import exceptions as rx

        res = resolve(res)  # the grid's Resolved as it is (a Cell from a direct caller is resolved once)
        options, started, lost, oom = self.options(res), time.perf_counter(), [], 0
        for _ in range(self.attempts):
            ref = self._task.options(**options).remote(res, data_root, self.device, timeout_s)
            try:
                record = ray.get(ref)
            except rx.RayTaskError as e:  # our code raised on the worker: submitting again would raise again
                cause = e.cause if isinstance(e.cause, BaseException) else e
                error = f"the cell's Ray task raised on its worker: {type(cause).__name__}: {cause}"
                return self._write_lost(store, res, "failed", error, started, lost)
            except (rx.WorkerCrashedError, rx.NodeDiedError, rx.LocalRayletDiedError, rx.ObjectLostError) as e:
                lost.append(f"{type(e).__name__}: {_first_line(e)}")
                continue
            except rx.OutOfMemoryError as e:  # Ray's memory monitor killed the worker to save its node
                oom += 1
                lost.append(f"{type(e).__name__}: {_first_line(e)}")
                continue
            except rx.RayError as e:  # cancelled, unschedulable, runtime env failed, ...: not a lost worker
                error = f"ray could not run the cell: {type(e).__name__}: {_first_line(e)}"
                return self._write_lost(store, res, "failed", error, started, lost)
            if lost:
                record.executor = {**(record.executor or {}), "lost": lost}
            store.write(record)
            return record
        status = "oom" if oom == len(lost) else "failed"
        error = f"ray worker died: each of the {len(lost)} attempts at this cell was lost: " + "; ".join(
            f"attempt {i + 1}: {why}" for i, why in enumerate(lost)
        )
        return self._write_lost(store, res, status, error, started, lost)

    def _write_lost(self, store: Store, res: Resolved, status: str, error: str, started: float, lost: list[str]):
        record = new_record(res, status, error)
        record.cost = Cost(wall_time_s=time.perf_counter() - started)
        record.executor = {"kind": "ray", "lost": lost} if lost else {"kind": "ray"}
        store.write(record)
        return record

    def close(self) -> None:
        """Disconnect from the cluster (a Ray instance this executor started for itself stops with it)."""
        import ray

        if self._connected_here and ray.is_initialized():
            ray.shutdown()


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__


# ---------------------------------------------------------------------------------------------- worker
_POOL_SIZES: dict[str, int] = {}  # a Ray worker process checks a task's training pool once


def run_on_worker(res: Resolved, data_root: str | None, device: str, timeout_s: float) -> Record:
    """The Ray task: check the cell's data on this node, run it in its own process (``bench.run.harness.run_cell``)
    with a temporary results folder, and return its record with the per-example predictions in ``arrays`` for the
    driver to write."""
    import tempfile
    from pathlib import Path

    import ray

    check_inputs(res, DataRoot.resolve(data_root), _POOL_SIZES)
    with tempfile.TemporaryDirectory(prefix="adaptbench-ray-") as tmp:
        store = Store(tmp)
        record = harness.run_cell(
            res, store=store, data_root=data_root, device=device, timeout_s=timeout_s, quiet=True, checked=True
        )
        if record.predictions:
            record.arrays, record.predictions = store.predictions(record), None
    record.executor = {
        "kind": "ray",
        "node": ray.util.get_node_ip_address(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "checkout": str(Path(bench.__file__).resolve().parent.parent),
    }
    return record
