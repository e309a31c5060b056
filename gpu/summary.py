"""The GPU run's last step (gpu/check.sh): what the records say, per method, and whether the GPU agrees with the CPU.

For every (task, method, budget) of the records in ``<results>/<suite>/``: the seeds that finished, the primary test
metric (mean over seeds), and the median over seeds of training samples/s, peak GPU memory (allocated and reserved
by PyTorch's allocator), the record's own MFU (for fp32 cells on CUDA it is against the measured TF32 GEMM; its
basis is printed) and the MFU against the GPU's dense bf16 data-sheet peak (``bench.run.machine``), the figure
usually quoted. Then, per cell that a CPU baseline also ran with the same key (same settings and seed: the same
cell), the GPU's primary metric minus the CPU's. Everything is read from the records; nothing is typed in.

Usage: ``python gpu/summary.py --results results/gpu --suite default [--cpu results/baselines/default-A-cpu]
[--out DIR]``; writes ``summary.md`` into ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.catalog import TASKS  # noqa: E402
from bench.core.record import Record  # noqa: E402
from bench.core.store import Store  # noqa: E402
from bench.run.machine import nominal_bf16_peak  # noqa: E402

MIB = 1 << 20


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(kept) if kept else None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def primary(record: Record) -> str:
    return TASKS.get(record.task).spec.primary_metric


def method_rows(records: list[Record]) -> list[str]:
    groups: dict[tuple[str, str, int], list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.task, r.method, r.budget)].append(r)
    lines = [
        "| task | method | budget | seeds | test metric (mean) | train samples/s | peak alloc MiB | peak reserved MiB "
        "| MFU (record's basis) | MFU vs dense bf16 peak | device |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (task, method, budget), rs in sorted(groups.items()):
        ok = [r for r in rs if r.ok]
        metric = primary(rs[0])
        scores = [r.test_metric(metric) for r in ok]
        costs = [r.cost for r in ok if r.cost is not None]
        gpu = next((r.env.gpu_name for r in ok if r.env is not None and r.env.gpu_name), None)
        peak = nominal_bf16_peak(gpu) if gpu else None
        achieved = [c.achieved_train_flops_per_s for c in costs]
        bf16_mfu = _median([a / peak if a is not None and peak else None for a in achieved])
        cuda = [c for c in costs if c.peak_mem_kind == "cuda_max_allocated"]
        alloc = _median([c.peak_mem_bytes / MIB for c in cuda if c.peak_mem_bytes is not None])
        reserved = _median([c.peak_mem_reserved_bytes / MIB for c in cuda if c.peak_mem_reserved_bytes is not None])
        bases = sorted({c.mfu_basis for c in costs if c.mfu_basis})
        seeds = ",".join(str(r.seed) for r in sorted(ok, key=lambda r: r.seed)) or "-"
        failed = len(rs) - len(ok)
        lines.append(
            f"| {task} | {method} | {budget} | {seeds}{f' (+{failed} not ok)' if failed else ''} "
            f"| {metric} {_fmt(statistics.fmean(scores) if scores else None, '.4f')} "
            f"| {_fmt(_median([c.train_samples_per_s for c in costs]), '.0f')} | {_fmt(alloc, '.0f')} "
            f"| {_fmt(reserved, '.0f')} | {_fmt(_median([c.mfu for c in costs]), '.2%')} {'; '.join(bases)} "
            f"| {_fmt(bf16_mfu, '.2%')} | {gpu or (costs[0].device if costs else '-')} |"
        )
    return lines


def agreement_rows(records: list[Record], cpu: Store, suite: str) -> list[str]:
    """GPU minus CPU primary metric for each cell both ran (same key: same settings and seed)."""
    lines = ["| cell | metric | GPU | CPU | GPU - CPU |", "|---|---|---:|---:|---:|"]
    diffs = []
    for r in sorted(records, key=lambda r: r.key):
        other = cpu.get(suite, r.key)
        if not r.ok or other is None or not other.ok:
            continue
        metric = primary(r)
        g, c = r.test_metric(metric), other.test_metric(metric)
        diffs.append(g - c)
        lines.append(f"| {r.task}/{r.method}/{r.budget}/{r.seed} | {metric} | {g:.4f} | {c:.4f} | {g - c:+.4f} |")
    if not diffs:
        return ["no cell of these records has an ok CPU record with the same key"]
    mean_abs = statistics.fmean(abs(d) for d in diffs)
    lines.append(f"\n{len(diffs)} cells; mean |GPU - CPU| {mean_abs:.4f}, largest {max(diffs, key=abs):+.4f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=REPO / "results" / "gpu")
    ap.add_argument("--suite", default="default")
    ap.add_argument("--cpu", type=Path, default=REPO / "results" / "baselines" / "default-A-cpu")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    records = Store(args.results).records(args.suite)
    text = [f"# GPU run: {len(records)} records in {args.results / args.suite}", ""]
    if records:
        envs = {(r.env.gpu_name, r.env.torch, r.env.cuda) for r in records if r.env is not None}
        text += [f"machine (gpu, torch, cuda): {sorted(envs, key=str)}", ""]
        text += method_rows(records)
        text += ["", f"## Same cell on the CPU ({args.cpu / args.suite})", ""]
        text += agreement_rows(records, Store(args.cpu), args.suite)
    out = "\n".join(text) + "\n"
    print(out)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "summary.md").write_text(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
