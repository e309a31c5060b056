"""Benchmark (not a test): the fixed cost of a cell around its own work, for a cached backbone. A trivial ``frozen``
cell (budget 64, 10 head steps, one validation pass, val/test cut to 32 examples, probes on 32 examples) runs
through ``harness.run_cell`` (a process forked from the preloaded fork server) after an untimed warm-up cell has
filled the probe cache, and its time is broken down:

- parent, before the process: ``resolve`` + ``check_inputs`` (timed again in the parent);
- process: start and end of an empty process forked from the same fork server (``time.sleep(0)``); the fork
  server's own start (preload imports) is paid once per grid and reported apart;
- the cell's ``execute`` wall time (``record.cost.wall_time_s``) against the parent's clock; the rest is the
  child's resolve, record write and the parent's reading of it;
- inside ``execute``, in a real fork-server child with timers around what it calls (``_overhead.child_profile``):
  imports the fork server did not preload, data reading and checksum, backbone load, probes from cache, hashes of
  the weights, the cell's own ``Runner.fit`` and evaluation, FLOPs, environment, record write.

Run: `make benchmark`; reduced: `ADAPTBENCH_BENCH_ROUNDS=2`. Printed and stored in extra_info; nothing asserted
about speed.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import pytest
from _speed import THREADS, fix_threads, load_average, rounds

from bench.catalog import resolve
from bench.core.api import Cell

TRIVIAL = {"eval_limit": 32, "probe_limit": 32, "min_steps": 10, "epochs": 1, "max_evals": 1}


def _process_round_trip(ctx, target, args=()) -> float:
    t0 = time.perf_counter()
    proc = ctx.Process(target=target, args=args)
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark helper process exited with {proc.exitcode}")
    return time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["glue-sst2", "pneumonia-mnist"])
def test_trivial_cell_overhead(benchmark, data, task, tmp_path):
    from bench.core.store import Store
    from bench.run.harness import _cell_context, check_inputs, run_cell

    threads = fix_threads()
    ctx = _cell_context()
    server_start_s = _process_round_trip(ctx, time.sleep, (0,))  # the first process starts the fork server
    cell = Cell(task, "frozen", 64, 0, dict(TRIVIAL))
    store = Store(tmp_path / "results")
    warm = run_cell(cell, store=store, data_root=data.path, quiet=True)  # fills the probe cache
    assert warm.status == "ok", warm.error

    def one_cell() -> dict:
        t0 = time.perf_counter()
        res = resolve(cell)
        res.unsupported_reason()
        check_inputs(res, data)
        pre_s = time.perf_counter() - t0
        empty_s = _process_round_trip(ctx, time.sleep, (0,))
        t0 = time.perf_counter()
        record = run_cell(cell, store=store, data_root=data.path, quiet=True)
        total_s = time.perf_counter() - t0
        assert record.status == "ok", record.error
        return {"pre_s": pre_s, "empty_process_s": empty_s, "run_cell_s": total_s, "wall_s": record.cost.wall_time_s}

    n_rounds = rounds()
    runs = benchmark.pedantic(lambda: [one_cell() for _ in range(n_rounds)], rounds=1, iterations=1)

    # the breakdown inside a real fork-server child
    out = tmp_path / "profile.json"
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import _overhead; "
        f"_overhead.child_profile({cell.__dict__!r}, {str(store.root)!r}, {str(data.path)!r}, {str(out)!r}, "
        f"{dict(os.environ)!r})"
    )
    profile_process_s = _process_round_trip(ctx, exec, (code,))
    profile = json.loads(out.read_text())

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    overhead = med("run_cell_s") - med("wall_s")
    info = {
        "task": task,
        "cell": cell.describe(),
        "rounds": n_rounds,
        "threads": threads,
        "load_average_1min_end": load_average(),
        "fork_server_start_s": server_start_s,
        "run_cell_s": med("run_cell_s"),
        "execute_wall_s": med("wall_s"),
        "parent_pre_start_s": med("pre_s"),
        "empty_process_s": med("empty_process_s"),
        "outside_execute_s": overhead,
        "child_profile": profile,
        "profile_process_s": profile_process_s,
        "runs": runs,
    }
    benchmark.extra_info.update(info)
    own = profile["parts_s"].get("cell's own work: Runner.fit", 0.0) + profile["parts_s"].get(
        "  evaluate (val in fit, test)", 0.0
    )
    lines = [
        f"\ntrivial cell {cell.describe()}: {n_rounds} rounds, {threads} threads (requested {THREADS}), "
        f"load {load_average():.1f}",
        f"  fork server start (once per grid): {server_start_s:.2f} s",
        f"  run_cell, parent clock: {info['run_cell_s']:.2f} s = execute {info['execute_wall_s']:.2f} s "
        f"+ outside execute {overhead:.2f} s (of which parent checks {info['parent_pre_start_s']:.2f} s, an empty "
        f"fork-server process {info['empty_process_s']:.2f} s)",
        f"  inside one fork-server child ({profile['child_total_s']:.2f} s; imports not preloaded "
        f"{profile['imports_s']:.2f} s: {', '.join(profile['not_preloaded']) or 'none'}; "
        f"resolve {profile['resolve_s']:.2f} s; execute {profile['execute_s']:.2f} s):",
    ]
    for label, seconds in sorted(profile["parts_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"    {label:45s} {seconds:6.2f} s  ({profile['calls'][label]} calls)")
    lines.append(f"  the cell's own work (fit + evaluate; evaluate is also inside fit): <= {own:.2f} s")
    print("\n".join(lines))
