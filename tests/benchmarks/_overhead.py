"""Runs inside a process forked from the harness's fork server (``child_profile``): the body of a cell process
(``harness.child_main``'s steps: resolve, data root, ``execute``, store write) with timers wrapped around the
functions ``execute`` calls, so the per-cell overhead can be broken down where it is actually paid (a fork-server
child: nothing verified, nothing cached in memory, only ``harness.PRELOAD`` imported)."""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections import defaultdict

# what execute imports at call time; whatever the fork server did not preload is imported by every cell
EXECUTE_IMPORTS = (
    "bench.backbones",
    "bench.core.cache",
    "bench.run.flops",
    "bench.run.loop",
    "bench.run.meters",
    "bench.core.model",
    "bench.probes",
    "bench.core.store",
)


def _wrap(owner, name: str, label: str, totals: dict, counts: dict) -> None:
    original = getattr(owner, name)

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[label] += time.perf_counter() - t0
            counts[label] += 1

    setattr(owner, name, timed)


def child_profile(cell: dict, results: str, data_root: str | None, out: str, env: dict) -> None:
    os.environ.clear()
    os.environ.update(env)
    started = time.perf_counter()
    missing = [m for m in EXECUTE_IMPORTS if m not in sys.modules]
    before = set(sys.modules)
    for m in EXECUTE_IMPORTS:
        importlib.import_module(m)
    imports_s = time.perf_counter() - started

    import bench.backbones.text
    import bench.backbones.vision
    import bench.core.api
    import bench.core.cache
    import bench.core.data
    import bench.core.model
    import bench.core.store
    import bench.run.cell
    import bench.run.flops
    import bench.run.forgetting
    import bench.run.loop
    import bench.run.meters
    from bench.catalog import resolve
    from bench.core.api import Cell
    from bench.core.data import DataRoot
    from bench.core.store import Store

    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for owner, name, label in [
        (bench.core.api.Task, "splits", "data: task.splits (read + verify files)"),
        (bench.core.data, "sha256", "  of which: sha256 of data files"),
        (bench.backbones.text.HFEncoder, "load", "backbone load"),
        (bench.backbones.vision.TimmBackbone, "load", "backbone load"),
        (bench.run.forgetting, "run_probe", "probes (cached: fingerprint + read)"),
        (bench.core.model, "tensor_digests", "hash of every weight (tensor_digests)"),
        (bench.run.loop.Runner, "fit", "cell's own work: Runner.fit"),
        (bench.run.loop.Runner, "evaluate", "  evaluate (val in fit, test)"),
        (bench.core.cache.FeatureCache, "features", "frozen features (cache read or compute)"),
        (bench.run.flops, "cell_flops", "FLOPs count + machine peak (cached)"),
        (bench.run.meters, "environment", "environment (versions, git)"),
        (Store, "write", "record write"),
    ]:
        _wrap(owner, name, label, totals, counts)

    t0 = time.perf_counter()
    store = Store(results)
    res = resolve(Cell(**cell))
    data = DataRoot.resolve(data_root)
    resolve_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    record = bench.run.cell.execute(res, data, "cpu")
    execute_s = time.perf_counter() - t0
    store.write(record)
    report = {
        "imports_s": imports_s,
        "not_preloaded": missing,
        "modules_imported_by_cell": len(set(sys.modules) - before),
        "resolve_s": resolve_s,
        "execute_s": execute_s,
        "record_wall_time_s": record.cost.wall_time_s,
        "record_train_time_s": record.cost.train_time_s,
        "parts_s": dict(totals),
        "calls": dict(counts),
        "child_total_s": time.perf_counter() - started,
    }
    with open(out, "w") as f:
        json.dump(report, f)
