"""adaptbench command line (also ``python -m bench``). Heavy libraries load only in the commands that need them."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.analysis.allocation import next_look
from bench.analysis.claims import HOLDS, agreement, check, claims
from bench.analysis.decision_map import decision_map
from bench.analysis.gate import check_same_suite, compare, load_run, machines
from bench.analysis.references import references_text
from bench.catalog import METHODS, TASKS, resolve, support_matrix, task_files, task_name
from bench.catalog import spec as task_spec
from bench.core import cache
from bench.core.api import Cell
from bench.core.backbone import BACKBONES, BackboneUnavailable
from bench.core.data import DataError, DataRoot
from bench.core.registry import UnknownNameError
from bench.core.store import RESULTS_ROOT, Located, Store, locate
from bench.recommend import Constraints, parse_size, parse_time, recommend
from bench.report.gate_text import report_text
from bench.report.page import write_report
from bench.report.text import format_record, rule_text, summary_text
from bench.run import harness
from bench.run.executor import make_executor
from bench.run.grid import check_filter, check_weights, plan, run_grid
from bench.run.limits import is_memory_fault, memory_fault_text
from bench.run.plan_cmd import add_arguments as plan_arguments
from bench.run.plan_cmd import dry_run_estimates, run_plan
from bench.run.stop import Stopped, signum_of, sigterm_raises
from bench.run.wandb_log import WandbLogger
from bench.suite import current_records, load_suite, shown_records, suite_names

if TYPE_CHECKING:
    pass

EPILOG = """examples:
  adaptbench ls
  adaptbench run --task pneumonia-mnist --method lora --budget 256 --seed 0 --set r=16
  adaptbench grid --suite default                  # resumes: cells with an ok record are skipped
  adaptbench grid --suite default --filter 'glue-sst2/*'
  adaptbench grid --suite default --wandb          # also log each cell to W&B (offline: `wandb sync` later)
  adaptbench grid --suite default --dry-run        # the cells, sweep cells first, which are done, estimates
  adaptbench plan --suite default --jobs 2 --gpu h100  # estimated wall time and peak memory, before running
  adaptbench grid --suite proxy --quiet            # CI logs: one line per cell, errors, the summary
  adaptbench grid --suite full --executor ray --address auto  # each cell a Ray task on a cluster (make setup-ray)
  adaptbench report --suite default                # -> reports/default/index.html, summary.md, records.csv
  adaptbench report --results results/baselines/default-cpu  # any folder of records -> reports/default-cpu/
  adaptbench summary --suite default --memory-cap 8  # decision map and per-task tables, as text
  adaptbench data verify                           # checksums, and which tasks can run offline
  adaptbench data fetch --task blood-mnist         # online: fill the data root from the publishers
  adaptbench claims --suite default --against other/results  # which claims a rerun confirms
  adaptbench compare --baseline results/baselines/proxy-cpu --suite proxy  # CI gate: exit 1 on a regression
  adaptbench references                            # whole-training-set cells vs published scores (MedMNIST v2)
  adaptbench cache ls                              # shared caches: frozen features, probe results, ...
"""


WANDB_HELP = (
    "also log each cell run now as a Weights & Biases run (offline unless WANDB_MODE or WANDB_API_KEY is set; the "
    "records stay the source of truth)"
)
MAX_SEED = 2**32 - 1  # numpy's seed range


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``adaptbench: error: ...``, exit 2) instead of the usage text."""

    def error(self, message: str):  # type: ignore[override]
        print(f"adaptbench: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _int_in(low: int, high: int | None, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer ({what})") from None
        if value < low or (high is not None and value > high):
            bound = f"from {low} to {high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be {bound} ({what})")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    return _positive_number(text, "a number of seconds")


def _seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2``: distinct seeds, each from 0 to MAX_SEED."""
    parse = _int_in(0, MAX_SEED, "a seed")
    seeds = [parse(part.strip()) for part in text.split(",") if part.strip()]
    if not seeds:
        raise argparse.ArgumentTypeError(f"{text!r} names no seed; use a comma-separated list, e.g. 0,1,2")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} repeats a seed; name each once, e.g. 0,1,2")
    return seeds


def _positive_number(text: str, what: str = "a number") -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value:g} is not a positive {what.removeprefix('a ')}")
    return value


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: use key=value, e.g. --set lr=1e-4")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cmd_ls(args: argparse.Namespace) -> int:
    sets = _parse_sets(args.set)
    if sets and not args.matrix:
        raise ValueError("ls --set applies to the support matrix: add --matrix (e.g. ls --matrix --set backbone=...)")
    if args.matrix:
        return _print_matrix(sets)
    print("tasks:")
    for name in TASKS:
        spec = TASKS.get(name).spec
        budgets = ",".join(str(b) for b in spec.budgets)
        print(
            f"  {name:20s} {spec.modality:6s} {spec.primary_metric:9s} backbone={spec.backbone:18s} "
            f"budgets={budgets:12s} {spec.description}"
        )
    print("  + your own data: --task <declaration.toml | data file | image folder> (see README 'Your own data')")
    print("methods:")
    for name in METHODS:
        print(f"  {name:20s} {METHODS.get(name).description}")
    print("  peft:<ConfigClass or short name> | peft:<adapter_config.json>  (any PEFT method by its config, no code)")
    print("backbones:")
    for name in BACKBONES:
        b = BACKBONES.get(name)
        print(f"  {name:20s} {b.modality:6s} probes={','.join(b.probes):28s} {b.description}")
    print("  " + ", ".join(f"{p}:<model>" for p in sorted(BACKBONES.families)) + "  (any model of a family, no code)")
    print("suites:")
    for name in suite_names():
        print(f"  {name}")
    return 0


def _print_matrix(settings: dict[str, str] | None = None) -> int:
    """The task x method support grid (``support_matrix``, with ``settings`` in every cell: ``--set backbone=...``),
    every column as wide as its longest entry plus two spaces, and a numbered note per gap saying why (one note for
    a task's methods that share a reason)."""
    methods = METHODS.names()
    notes: dict[tuple[str, str, str], list[str]] = {}  # (task, backbone, reason) -> its methods
    by_task: dict[str, dict[str, str]] = {}
    for task, method, backbone, reason in support_matrix(settings=settings):
        row = by_task.setdefault(task, {})
        if reason:
            notes.setdefault((task, backbone, reason), []).append(method)
            row[method] = f"- [{list(notes).index((task, backbone, reason)) + 1}]"
        else:
            row[method] = "ok"
    if settings:
        print("with " + " ".join(f"--set {k}={v}" for k, v in settings.items()))
    first = max(len("task"), *(len(t) for t in by_task)) + 2
    widths = {m: max(len(m), *(len(row.get(m, "")) for row in by_task.values())) + 2 for m in methods}
    print(("task".ljust(first) + "".join(m.ljust(widths[m]) for m in methods)).rstrip())
    for task, row in by_task.items():
        print((task.ljust(first) + "".join(row.get(m, "").ljust(widths[m]) for m in methods)).rstrip())
    for i, ((task, backbone, reason), gaps) in enumerate(notes.items(), 1):
        print(f"  [{i}] {task} x {', '.join(gaps)} ({backbone}): {reason}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    cell = Cell(task_name(args.task), args.method, args.budget, args.seed, _parse_sets(args.set), suite=args.suite)
    res = resolve(cell)
    check_weights(res)  # weights that are nowhere here: one paragraph, exit 2, before any process or record
    try:
        record = harness.run_cell(
            res,
            store=Store(args.results),
            data_root=args.data_root,
            device=args.device,
            timeout_s=args.timeout,
            quiet=args.quiet,
        )
    except KeyboardInterrupt as e:
        signum = signum_of(e)
        raise Stopped(
            signum,
            f"interrupted by {Stopped(signum).name} before {cell.describe()} finished; nothing was recorded for it: "
            "rerun the same command to run it",
        ) from None
    print(format_record(record))
    wandb = _wandb_logger(args)
    if wandb is not None:
        wandb(record)  # after the record is written; a W&B failure only warns
        print(wandb.describe())
    return 0 if record.status in ("ok", "unsupported") else 1


def _wandb_logger(args: argparse.Namespace):
    """``--wandb``: a ``bench.run.wandb_log.WandbLogger`` (wandb itself is imported at the first record); else None."""
    if not args.wandb:
        return None

    return WandbLogger()


def cmd_grid(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite, seeds=args.seeds, replicate=args.replicate)
    check_filter(suite, args.filter)
    store = Store(args.results)
    if suite.replicate:
        print(f"suite {suite.name}, replicate {suite.replicate} (of {', '.join(suite.replicates)})")
    if args.dry_run:
        estimates = dry_run_estimates(suite, store, args.jobs)
        lines = plan(suite, store, args.filter, estimate=estimates.note)
        sweeps = sum(line.lstrip().startswith("sweep") for line in lines)
        unsupported = sum(line.split()[1] == "unsupported" for line in lines)
        gaps = f", {unsupported} unsupported: recorded as such, not run" if unsupported else ""
        print(
            f"suite {suite.name}: {len(lines)} cells ({sweeps} sweep cells{gaps}); nothing is run; "
            f"{estimates.summary()}"
        )
        print("\n".join(lines))
        return 0

    executor = make_executor(args.executor, args.jobs, args.address, args.cell_memory, args.device)
    wandb = _wandb_logger(args)
    try:
        result = run_grid(
            suite,
            store,
            args.filter,
            data_root=args.data_root,
            device=args.device,
            quiet=args.quiet,
            on_record=wandb,
            executor=executor,
            extend=(lambda records, look: next_look(suite, store, records, look)) if suite.adaptive else None,
        )
    finally:
        executor.close()
    if wandb is not None:
        print(wandb.describe())
    bad = [r for r in result.records if r.status not in ("ok", "unsupported")]
    for r in bad:
        print(f"  {r.status}: {r.task} x {r.method} @ {r.budget} seed {r.seed} ({r.key})")
    for line in store.warnings():
        print(f"warning: {line}", file=sys.stderr)
    if result.refused:
        print(
            f"adaptbench: error: {len(result.refused)} tasks not run ({', '.join(result.refused)}); "
            "see the reasons above (for data: `adaptbench data verify` lists what each task has)",
            file=sys.stderr,
        )
        return 2
    return 0 if result.ok else 1


def cmd_plan(args: argparse.Namespace) -> int:
    return run_plan(args)


def cmd_report(args: argparse.Namespace) -> int:
    found = locate(args.results, args.suite, "report")
    print(found.found)
    suite = args.suite if args.suite and args.suite.endswith(".toml") else found.suite
    path = write_report(suite, found.store, args.out, all_records=args.all_records, folder=found.folder)
    for line in found.store.warnings():
        print(f"warning: {line} (not in the report; rerun the grid to recompute the cell)", file=sys.stderr)
    print(f"report: {path} (with summary.md, records.csv, records.parquet and records.md, its data dictionary)")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from pathlib import Path

    store = Store(args.results)
    suite_file = None
    if args.suite and args.suite.endswith(".toml"):  # a path, as `grid` takes it: records are filed under its stem
        suite_file = args.suite
    suites = [Path(args.suite).stem if suite_file else args.suite] if args.suite else store.suites()
    folders = dict(zip(suites, suites, strict=True))
    if store.root.is_dir() and (args.suite or any(store.root.glob("*.json"))):  # a folder of records, or renamed
        found = locate(args.results, args.suite, "summary")
        store, suites, folders = found.store, [found.suite], {found.suite: found.folder}
    texts = []
    for suite in suites:
        records = [r for r in store.records(folders[suite]) if r.suite == suite or folders[suite] == suite]
        records, notes = shown_records(suite, records, suite_file, store.suite_dir(folders[suite]))
        if records:
            texts.append("\n".join([summary_text(store, suite, records, args.memory_cap), *notes]))
    for line in store.warnings():
        print(f"warning: {line} (left out; rerun the grid to recompute the cell)", file=sys.stderr)
    if not texts:
        where = store.suite_dir(suites[0]) if len(suites) == 1 else store.root
        raise ValueError(
            f"no records to summarise under {where}; run `adaptbench grid --suite <name>` first "
            f"(suites with records: {', '.join(store.suites()) or 'none'})"
        )
    print("\n\n".join(texts))
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    def load(folder: str | None, name: str | None) -> tuple[Located, list]:
        found = locate(folder, name, "claims")  # a folder of suite folders or of records (baselines)
        suite_file = name if name and name.endswith(".toml") else None
        records = found.records()
        kept = current_records(found.suite, records, suite_file)[0]
        if not kept:
            raise ValueError(f"none of the records under {found.path} belong to {name or found.suite}'s current cells")
        return found, kept

    mine, records = load(args.results, args.suite)
    mine_map = decision_map(mine.store, [r for r in records if r.ok])
    stated = claims(mine_map)
    print(f"suite {mine.suite}: {len(stated)} claims from {mine.path}. {rule_text()}")
    if args.against is None:
        for claim in stated:
            print(f"  {claim.describe()}")
        return 0
    theirs, other = load(args.against, args.against_suite or args.suite or mine.suite)
    rows = agreement(mine_map, decision_map(theirs.store, [r for r in other if r.ok]))
    same = sum(row.agrees for row in rows)
    print(f"verdicts against {theirs.path}: {same} of {len(rows)} (task, budget) agree")
    for row in rows:
        print(f"  {row.describe()}")
    checks = check(stated, theirs.store, other)
    held = sum(c.outcome == HOLDS for c in checks)
    print(f"held against {theirs.path}: {held} of {len(checks)} claims hold")
    for c in checks:
        print(f"  {c.describe()}")
    return 0 if held == len(checks) else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    suite = Path(args.suite).stem if args.suite else None  # a name, or a suite file's path as `grid` takes it
    base_dir, base, warnings = load_run(
        args.baseline,
        suite,
        "baseline",
        "make one with `adaptbench grid --suite {suite} --seeds 0,1,2 --results {folder}` (3 seeds: the tolerances "
        "come from their spread)",
    )
    cand_folder = args.candidate or args.results or RESULTS_ROOT
    cand_dir, cand, more = load_run(
        cand_folder,
        suite or base_dir.name,
        "candidate",
        "run `adaptbench grid --suite {suite} --results {folder}` first",
    )
    check_same_suite(base, cand)
    for line in [*warnings, *more]:
        print(f"warning: {line} (left out of the comparison)", file=sys.stderr)
    result = compare(base, cand, k=args.tolerance_k)
    print(f"baseline  {base_dir}: {len(base)} records, measured on {machines(base)}")
    print(f"candidate {cand_dir}: {len(cand)} records, measured on {machines(cand)}")
    print(
        f"rule: a cell fails when its primary metric falls, its forgetting rises or its peak memory grows by more "
        f"than k = {args.tolerance_k:g} sigma (sigma: the baseline's seed sd or the measurement's floor), when its "
        "trainable parameters or status change, or when it is missing; seeds are paired where both ran "
        "(`adaptbench compare --help`)"
    )
    old = result.superseded
    if any(old):
        print(
            f"note: {old[0]} baseline and {old[1]} candidate records were older records of a cell and seed (left out)"
        )
    print()
    print(report_text(result, str(base_dir), str(cand_dir)))
    return 1 if result.failed else 0


def cmd_references(args: argparse.Namespace) -> int:
    store = Store(args.results)
    if args.suite or (store.root.is_dir() and any(store.root.glob("*.json"))):  # one suite, or a folder of records
        try:
            found = locate(args.results, args.suite, "references")
        except ValueError as e:
            raise ValueError(f"{e} (`adaptbench grid --suite anchors` runs the whole-training-set cells)") from None
        print(found.found)
        records = found.records()
    else:
        records = [r for suite in store.suites() for r in store.records(suite)]
    print(references_text(records))
    return 0


def _gib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of GiB") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value:g} is not a positive number of GiB")
    return value * 2**30


def cmd_data(args: argparse.Namespace) -> int:
    root = DataRoot.resolve(args.data_root)
    print(f"data root: {root.path}")
    if args.action == "fetch":
        failed = 0
        for task, files in task_files(args.task).items():
            for rel in files:
                try:
                    root.file(rel)  # downloads from the publisher when missing and online, then verifies
                    print(f"  ok       {task}: {rel}")
                except DataError as e:
                    failed += 1
                    print(f"  FAILED   {task}: {e}")
        print(f"{failed} files could not be obtained" if failed else "every file is present and verified")
        return 1 if failed else 0
    rows = root.verify_all()
    for rel, status in rows:
        print(f"  {status:8s} {rel}")
    bad = [r for r in rows if r[1] == "MISMATCH"]
    print(f"{sum(s == 'ok' for _, s in rows)} ok, {sum(s == 'missing' for _, s in rows)} missing, {len(bad)} corrupt")
    print("tasks (ready = every file present and verified; missing ones need `adaptbench data fetch` online):")
    checked = dict(rows)
    for task, files in task_files(args.task).items():
        corrupt = [rel for rel in files if checked.get(rel) == "MISMATCH"]
        missing = [rel for rel in files if not (root.path / rel).exists()]
        if corrupt:
            status, detail = "corrupt", f": {', '.join(corrupt)} fails its checksum (replace it: see the list above)"
        elif missing:
            status, detail = "missing", f": {', '.join(missing)}"
        else:
            status, detail = "ready", ""
        print(f"  {status:8s} {task}{detail}")
    return 1 if bad else 0


def cmd_cache(args: argparse.Namespace) -> int:
    print(f"cache: {cache.cache_dir()}")
    if args.action == "clear":
        gone = cache.clear(args.kind)
        print(f"cleared: {', '.join(gone) if gone else 'nothing (already empty)'}")
        return 0
    for kind, entries, size in cache.usage():
        print(f"  {kind:9s} {entries:6d} entries {size / 2**20:10.1f} MiB")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    constraints = Constraints(
        max_memory_bytes=parse_size(args.max_memory) if args.max_memory else None,
        max_adapter_mb=args.max_adapter_mb,
        max_latency_ms=args.max_latency,
    )
    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else None
    if budgets and any(b <= 0 for b in budgets):
        raise ValueError(f"--budgets {args.budgets}: positive numbers of labels, e.g. 64,256")
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    rec = recommend(
        args.task,
        budgets,
        parse_time(args.time),
        out=Path(args.out) if args.out else None,
        constraints=constraints,
        methods=methods,
        target=args.target,
        jobs=args.jobs,
        data_root=args.data_root,
        quiet=not args.verbose,
    )
    print((rec.out / "recommendation.md").read_text())
    if args.export and rec.decisions:
        from bench.run.export import export

        last = rec.decisions[-1]
        winners = [r for r in rec.records if r.method == last.best and r.budget == last.budget]
        if winners:
            best = max(winners, key=lambda r: r.metrics.get(f"val/{task_spec(r.task).primary_metric}", 0))
            export(best, Store(rec.out / "results"), rec.out / "model", data_root=args.data_root)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.run.export import export, find_record

    store = Store(args.results)
    record = find_record(store, args.record)
    export(record, store, Path(args.out or f"exports/{record.key}"), data_root=args.data_root)
    return 0


def _version() -> str:
    """The installed distribution's version (``pyproject.toml``), or "unknown" when run from an uninstalled tree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("adaptbench")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-root",
        default=None,
        help="data folder (default: $ADAPTBENCH_DATA, else ../shared/data, else ~/.cache/adaptbench)",
    )
    common.add_argument("--results", default=None, help="records folder (default: results/ in the checkout)")
    common.add_argument("--debug", action="store_true", help="show the traceback of an error (records keep it too)")
    parser = Parser(
        prog="adaptbench",
        description="Benchmark adaptation strategies: tasks x methods x budgets x seeds.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"adaptbench {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("ls", parents=[common], help="list tasks, methods, backbones, suites")
    p.add_argument("--matrix", action="store_true", help="task x method grid with the reason for every gap")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="with --matrix: the matrix for cells with this setting (repeatable), e.g. --set backbone=timm:resnet18",
    )
    p.set_defaults(fn=cmd_ls)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="run one cell and print its record",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--task", required=True)
    p.add_argument("--method", required=True)
    p.add_argument(
        "--budget",
        type=_int_in(0, None, "labelled training examples, 0 = the whole pool"),
        required=True,
        help="labelled training examples (0 = all; more than the task's training pool is refused)",
    )
    p.add_argument("--seed", type=_int_in(0, MAX_SEED, "a seed"), default=0, help=f"0 to {MAX_SEED}")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a task, method or training setting (repeatable), e.g. --set lr=1e-4",
    )
    p.add_argument("--suite", default="adhoc", help="where the record is filed (results/<suite>/)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--timeout", type=_positive_seconds, default=3600.0, help="seconds before the cell is killed")
    p.add_argument("--quiet", action="store_true", help="no line per validation pass: only the record's summary")
    p.add_argument("--wandb", action="store_true", help=WANDB_HELP)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("grid", parents=[common], help="run every cell of a suite (resumes)")
    p.add_argument("--suite", required=True, help="a name from `adaptbench ls` or a path to a .toml file")
    p.add_argument("--filter", default=None, help="glob or substring over task/method/budget/seed")
    p.add_argument(
        "--replicate",
        default=None,
        help="which of the suite's [replicates] to run (default: the first): its own seeds, tuning and test half",
    )
    p.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        metavar="S,S,...",
        help="run every block at these seeds instead of the suite's own (a block's sweep_seeds stay; otherwise its "
        "sweep runs on the first of these), e.g. --seeds 0,1,2 for the 3-seed baseline of `adaptbench compare`",
    )
    p.add_argument(
        "--jobs",
        type=_int_in(1, None, "cells at once"),
        default=None,
        help="cells at once, each in its own process (default 1; with --executor ray: as many as the cluster holds)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--executor",
        default="local",
        choices=["local", "ray"],
        help="local: cells run on this machine (default); ray: each cell is a Ray task on a Ray cluster "
        "(`make setup-ray`; see the README)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="with --executor ray: the cluster (auto = the one `ray start` runs on this machine, ray://host:10001, "
        "or host:6379); default $RAY_ADDRESS, else a new Ray instance on this machine alone",
    )
    p.add_argument(
        "--cell-memory",
        type=float,
        default=None,
        metavar="GIB",
        help="with --executor ray: memory Ray reserves for each cell (default 4 GiB)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the cells (sweep cells, the cells they tune, the rest) and which have a record; run nothing",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="for CI logs: one result line per cell, errors and the final summary; no running or validation lines, "
        "no progress bar",
    )
    p.add_argument("--wandb", action="store_true", help=WANDB_HELP)
    p.set_defaults(fn=cmd_grid)

    p = sub.add_parser(
        "plan",
        help="estimate a suite's wall time and peak memory per cell and in total, before running it (--against: "
        "plan vs a run's actual records)",
    )
    plan_arguments(p)
    p.set_defaults(fn=cmd_plan)

    p = sub.add_parser("report", parents=[common], help="write reports/<suite>/index.html from the records")
    p.add_argument(
        "--suite",
        default=None,
        help="a suite name or a .toml path (default: the only suite in --results); --results may also be a folder "
        "of records, such as results/baselines/default-cpu",
    )
    p.add_argument("--out", default=None, help="output folder (default reports/<records folder name>)")
    p.add_argument(
        "--all-records", action="store_true", help="also show records of cells no longer in the suite's definition"
    )
    p.set_defaults(fn=cmd_report)

    p = sub.add_parser(
        "summary",
        parents=[common],
        help="print the decision map and per-task tables (mean, 95%% interval, seeds, flags) from the records",
    )
    p.add_argument("--suite", default=None, help="a suite name or .toml path (default: every suite with records)")
    p.add_argument(
        "--memory-cap",
        type=_gib,
        default=None,
        metavar="GIB",
        help="leave out methods whose mean peak memory exceeds this many GiB (2^30 bytes)",
    )
    p.set_defaults(fn=cmd_summary)

    p = sub.add_parser(
        "claims",
        parents=[common],
        help="list the claims (A beats B, paired test) a suite's records support; --against: do they hold there?",
    )
    p.add_argument("--suite", default=None, help="a suite name or .toml path (default: the only suite in --results)")
    p.add_argument(
        "--against",
        default=None,
        metavar="RESULTS",
        help="another records folder of the same suite (a rerun): exit 1 unless every claim holds there",
    )
    p.add_argument(
        "--against-suite",
        default=None,
        metavar="SUITE",
        help="the rerun's suite definition when it differs (e.g. a copy of the file with other seeds; default --suite)",
    )
    p.set_defaults(fn=cmd_claims)

    p = sub.add_parser(
        "compare",
        parents=[common],
        help="CI regression gate: hold a run's records against a baseline's, cell by cell; exit 1 on a regression",
        description="""Hold a candidate run's records against a baseline run's, cell by cell (task, method,
budget and settings; seeds paired where both ran), and print what moved: primary metric, forgetting,
trainable parameters, peak memory, throughput.

Exit 1 when a primary metric falls, forgetting rises or peak memory grows by more than k sigma, sigma the
larger of the baseline's across-seed sd and the measurement's floor (the score's sampling error on its
test items; for memory, the seed spread pooled over every baseline cell); when trainable parameters or a
status change; or when a baseline cell has no record. Throughput is shown, never gated. Exit 2 on bad
input. The rule in full: bench/analysis/gate.py.""",
        epilog="examples:\n"
        "  adaptbench grid --suite proxy --seeds 0,1,2 --results results/baselines/proxy-cpu   # the baseline\n"
        "  adaptbench grid --suite proxy                                                     # a candidate\n"
        "  adaptbench compare --baseline results/baselines/proxy-cpu --suite proxy           # the gate (make gate)\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--baseline",
        required=True,
        metavar="DIR",
        help="the reference run: a results folder (DIR/<suite>/*.json), 3 or more seeds per cell",
    )
    p.add_argument(
        "--candidate",
        default=None,
        metavar="DIR",
        help="the run to check: a results folder (default: --results, i.e. results/ in the checkout)",
    )
    p.add_argument(
        "--suite", default=None, help="the suite folder to compare on both sides (default: the baseline's one suite)"
    )
    p.add_argument(
        "--tolerance-k",
        type=_positive_number,
        default=3.0,
        metavar="K",
        help="how many sigmas a quantity may move the wrong way before the gate fails (default 3)",
    )
    p.set_defaults(fn=cmd_compare)

    p = sub.add_parser(
        "references",
        parents=[common],
        help="hold whole-training-set cells against published scores (MedMNIST v2, ...): reproduced or not, and why",
    )
    p.add_argument("--suite", default=None, help="records of this suite only (default: every suite with records)")
    p.set_defaults(fn=cmd_references)

    p = sub.add_parser("cache", parents=[common], help="show or empty the shared caches (features, probes, ...)")
    p.add_argument("action", choices=["ls", "clear"], help="ls: entries and size per kind; clear: delete")
    p.add_argument(
        "--kind",
        action="append",
        choices=["features", "probes", "models", "derived", "machine"],
        help="with clear: only these kinds (repeatable; default: features and probes, which cells recompute)",
    )
    p.set_defaults(fn=cmd_cache)

    p = sub.add_parser(
        "recommend",
        parents=[common],
        help="which method for your dataset, budgets and time: runs the adaptive protocol, writes a verdict report",
    )
    p.add_argument("--task", required=True, help="a declared dataset: a .toml declaration, a data file or folder")
    p.add_argument("--budgets", default=None, help="label budgets, e.g. 64,256 (default: the declaration's)")
    p.add_argument("--time", default="30m", help="time budget for the runs, e.g. 30m, 1h (default 30m)")
    p.add_argument("--max-memory", default=None, help="rule out methods whose measured peak memory passes this (8G)")
    p.add_argument("--max-adapter-mb", type=float, default=None, help="rule out adaptations larger than this (MiB)")
    p.add_argument("--max-latency", type=float, default=None, help="rule out methods slower than this per example (ms)")
    p.add_argument("--methods", default=None, help="candidate methods (default: frozen,lora,full then bitfit,...)")
    p.add_argument("--target", type=float, default=None, help="a score to reach: labels needed, extrapolated")
    p.add_argument("--out", default=None, help="folder for the suite, records and report (default recommend/<name>)")
    p.add_argument("--jobs", type=int, default=2, help="cells at once (default 2: one per core of a 2-core CPU)")
    p.add_argument("--export", action="store_true", help="also export the largest budget's chosen model")
    p.add_argument("--verbose", action="store_true", help="show every cell's progress lines")
    p.set_defaults(fn=cmd_recommend)

    p = sub.add_parser(
        "export",
        parents=[common],
        help="save a record's adapted model (adapter or weights, head, preprocessing) with a model card",
    )
    p.add_argument("--record", required=True, help="the record's key (its file name without .json)")
    p.add_argument("--out", default=None, help="folder to write (default: exports/<key>); must be new or empty")
    p.set_defaults(fn=cmd_export)

    p = sub.add_parser("data", parents=[common], help="data root: verify checksums, fetch from publishers")
    p.add_argument(
        "action",
        choices=["verify", "fetch"],
        help="verify: sha256 of every file + what each task has; "
        "fetch: download what is missing from the original publishers (needs internet)",
    )
    p.add_argument("--task", action="append", help="only these tasks (repeatable; default: every task and probe)")
    p.set_defaults(fn=cmd_data)

    return parser


WRITES_RECORDS = ("run", "grid")  # commands whose --results folder is created when missing


def _check_folders(args: argparse.Namespace) -> None:
    """``--results`` and ``--data-root`` name folders: a file there is refused before anything runs (a grid would
    otherwise run a cell and then fail to file its record)."""
    results = getattr(args, "results", None)
    if isinstance(results, str) and Path(results).is_file():  # `plan --results` is a list, and may name files
        created = " (it is created if missing)" if args.command in WRITES_RECORDS else " of records"
        raise ValueError(f"--results {results} is a file; give a folder{created}")
    data_root = getattr(args, "data_root", None)
    if data_root and Path(data_root).expanduser().is_file():
        raise ValueError(
            f"--data-root {data_root} is a file; give the data folder (default: $ADAPTBENCH_DATA, else ../shared/data)"
        )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with sigterm_raises():
            _check_folders(args)
            if args.data_root:
                os.environ["ADAPTBENCH_DATA"] = args.data_root
            if args.debug:
                os.environ["ADAPTBENCH_DEBUG"] = "1"  # cells' records keep the traceback of data errors too
            return args.fn(args)
    except (UnknownNameError, ValueError, DataError, BackboneUnavailable) as e:
        return _error(args, str(e))
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (bench.run.stop): one line, the shell's code for the signal
        stop = e if isinstance(e, Stopped) else Stopped(signum_of(e))
        print(f"adaptbench: {' '.join(str(stop).split())}", file=sys.stderr)
        return stop.code
    except (MemoryError, ImportError, OSError) as e:
        if not is_memory_fault(e):
            raise
        return _error(args, memory_fault_text(e))


def _error(args: argparse.Namespace, message: str) -> int:
    """A user-level error: one paragraph on stderr (and the traceback with --debug), exit 2."""
    if args.debug:
        traceback.print_exc()
    message = " ".join(message.split())  # one paragraph, whatever line breaks the message had
    print(f"adaptbench: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
