"""The report's records as a table beside the page: ``records.csv`` and ``records.parquet``, one row per record read,
and ``records.md``, their data dictionary (every column present, with its meaning, from ``COLUMNS``).

Columns: ``bench.core.record.flatten``'s (the one flattening of a record: identity, error, every metric, forgetting,
cost, parameters, environment, selection, the record's flags, hyperparameters, the sweep's choice, the record's
file), and three the report adds:

- ``role``: ``cell`` (a record the report's tables and lists show), ``sweep`` (a sweep cell: it tried one value for
  the cells a sweep tuned; the report shows the sweep's choice, not the cell) or ``outside-suite`` (a record of a
  cell no longer in the suite's current definition: earlier code versions, settings or budgets). A record not shown
  is a sweep cell when a tuned record's ``tuned_from`` names it (the sweeps the report's sweeps table reads,
  ``bench.analysis.sweeps``); ``df[df.role == "cell"]`` is what the page's tables are computed from;
- ``in_report``: ``role == "cell"`` (kept for earlier readers);
- ``cell_flags``: the flags the leaderboard shows for the record's (task, method, budget) row
  (``bench.report.leaderboard.board_flags``), ";"-joined, on the records of a row.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from bench.analysis.tables import Row
from bench.core.record import Record, flatten
from bench.core.store import atomic_write_bytes, atomic_write_text
from bench.report.leaderboard import board_flags

CELL, SWEEP, OUTSIDE = "cell", "sweep", "outside-suite"

# column (or family of columns: ``<name>`` stands for any name) -> its meaning; records.md lists every column present
# with the meaning of the first entry that matches it, and a column no entry matches is a test failure
COLUMNS: tuple[tuple[str, str], ...] = (
    ("task", "the task (dataset and metric set) the cell ran on"),
    ("method", "the adaptation method"),
    ("budget", "labelled training examples the cell could use (0 = the whole training pool)"),
    ("seed", "the cell's seed (training subset, initialisation, data order)"),
    ("status", "ok, or why there are no results: unsupported, failed, oom, killed, timeout, diverged"),
    (
        "role",
        "cell = a record the report shows; sweep = a sweep cell (it tried one value for the cells a sweep "
        "tuned: not in the tables); outside-suite = a cell no longer in the suite's current definition (not shown)",
    ),
    ("in_report", "whether the report shows the record (role == cell)"),
    ("backbone", "the pretrained model the method adapted (or the architecture trained from scratch)"),
    ("key", "the cell's identity: task, method, budget, seed and a hash of every setting that changes its result"),
    ("suite", "the suite the record was run for"),
    ("created_at", "when the record was written (UTC, ISO 8601)"),
    ("task_version", "the task's version (bumped when its data or metrics change)"),
    ("method_version", "the method's version (bumped when its behaviour changes)"),
    ("error", "the last line of the error of a cell that is not ok"),
    ("test/<metric>", "the metric on the test set, of the checkpoint selected on validation"),
    ("val/<metric>", "the metric on validation of the selected checkpoint (what chose it)"),
    ("test_ood/<metric>", "the metric on the out-of-domain test set of a shift task"),
    ("gap/<metric>", "test minus test_ood: positive = worse under the shift"),
    ("forgetting.probe", "the forgetting probe: a held-out task scored on the backbone before and after adaptation"),
    ("forgetting.before", "the probe on the untouched pretrained backbone"),
    ("forgetting.after", "the probe on the adapted backbone"),
    ("forgetting.drop", "before minus after, signed so that positive = forgot (whichever way the probe points)"),
    ("forgetting.held_out", "False when the probe reads the task's own data: its drop is not forgetting"),
    ("forgetting_extra/<probe>", "the drop on a further forgetting probe (positive = forgot)"),
    ("cost.wall_time_s", "seconds the whole cell took (loading, training, evaluation, probes)"),
    ("cost.device", "cpu or cuda"),
    ("cost.peak_mem_bytes", "peak memory in bytes (CPU: process peak RSS; GPU: CUDA max allocated)"),
    ("cost.peak_mem_delta_bytes", "the cell's own increase over the memory it started with, in bytes"),
    ("cost.peak_mem_kind", "what cost.peak_mem_bytes measures: process_peak_rss or cuda_max_allocated"),
    ("cost.train_samples_per_s", "training examples per second (warm-up steps excluded)"),
    ("cost.eval_samples_per_s", "evaluation examples per second"),
    (
        "cost.train_time_s",
        "seconds of training: the fit with its validation passes, and the refit if any (a method "
        "that does not train: its setup)",
    ),
    ("cost.feature_time_s", "cached-feature methods: seconds of the backbone pass over train and validation"),
    ("cost.feature_samples_per_s", "cached-feature methods: examples encoded per second (empty: all cached)"),
    ("cost.head_train_time_s", "cached-feature methods: seconds training the head on the features"),
    ("cost.feature_cache", "cached-feature methods: examples served from the cache and computed (JSON)"),
    ("cost.steps", "optimizer steps run"),
    ("cost.epochs", "passes over the training examples"),
    ("cost.fwd_flops_per_example", "forward FLOPs per example (cost.flops_method says how counted)"),
    ("cost.train_flops_per_example", "FLOPs per training example seen (forward and backward)"),
    ("cost.flops_method", "how FLOPs were counted: analytic-hooks or flopcounter (empty: FlopCounterMode)"),
    ("cost.flops_note", "why a FLOP count is missing, or the approximation it carries"),
    ("cost.achieved_train_flops_per_s", "cost.train_flops_per_example x cost.train_samples_per_s"),
    ("cost.machine_peak_flops_per_s", "the machine's measured GEMM peak (FLOP/s)"),
    ("cost.nominal_peak_flops_per_s", "the GPU's data-sheet dense bf16 peak (FLOP/s)"),
    ("cost.mfu", "model FLOPs utilisation: achieved over the peak cost.mfu_basis names"),
    ("cost.mfu_basis", "the peak cost.mfu divides by"),
    ("cost.peak_mem_reserved_bytes", "CUDA: peak memory reserved by the allocator, cache included (bytes)"),
    ("cost.compiled", "whether torch.compile was in use"),
    ("cost.compile_time_s", "seconds the warm-up steps took over timed steps (compilation, mostly)"),
    ("cost.compile_error", "why torch.compile failed (the cell ran eagerly)"),
    ("cost.eval_samples_per_s_unmerged", "evaluation examples per second with the adapter kept apart"),
    ("cost.eval_samples_per_s_merged", "evaluation examples per second with the adapter merged into the weights"),
    ("cost.merge_max_abs_diff", "largest output difference between the merged and unmerged adapter"),
    ("cost.merge_error", "why the adapter could not be merged"),
    ("cost.tuning_steps", "nested tuning: optimizer steps over every candidate, fold and refit"),
    ("cost.tuning_time_s", "nested tuning: seconds of that training"),
    ("params.total", "parameters of the model"),
    ("params.trainable", "parameters the method trained"),
    ("params.trainable_no_head", "trainable parameters outside the task head"),
    ("params.adapter_bytes", "bytes that must be saved beside the base model (changed or added tensors)"),
    ("params.quantized_weights", "weights stored quantized"),
    ("params.quantized_fraction", "share of the weights stored quantized"),
    ("env.git_sha", "the commit the cell ran"),
    ("env.dirty", "whether the checkout had uncommitted changes"),
    ("env.python", "Python version"),
    ("env.torch", "torch version"),
    ("env.transformers", "transformers version"),
    ("env.peft", "peft version"),
    ("env.timm", "timm version"),
    ("env.bitsandbytes", "bitsandbytes version"),
    ("env.cuda", "CUDA version (empty: CPU)"),
    ("env.gpu_name", "the GPU (empty: CPU)"),
    ("env.cpu", "the CPU's architecture or platform name"),
    ("env.cpu_model", "the CPU model (/proc/cpuinfo)"),
    ("env.cpu_count", "CPU cores of the machine"),
    ("env.threads", "torch threads the cell used"),
    ("env.hostname", "the machine's name"),
    ("env.machine", "a hash of what the arithmetic depends on (CPU, GPU, threads, library versions)"),
    ("env.machine_class", "the machine class: CPU model, float instruction sets, torch kernels and version, threads"),
    ("selection.on", "the validation metric that chose the checkpoint"),
    ("selection.best_step", "the optimizer step of the selected checkpoint"),
    (
        "selection.stopped_by",
        "why training stopped: schedule end, cap (max_steps) or patience (empty in older records: the schedule's end)",
    ),
    ("selection.stopped_at", "the last step run"),
    ("selection.validation", "where validation came from: oracle (the task's own set) or budget (carved out of it)"),
    ("retry.reason", "why the cell ran a second time (out of memory: half the micro-batch, same effective batch)"),
    ("record_flags", "the record's own flags, ;-joined (degenerate: every test prediction the same)"),
    ("record_flag_notes", "why each of record_flags was raised"),
    (
        "cell_flags",
        "the flags the report raises for the record's (task, method, budget) row, ;-joined (see the "
        "page's legend: did-not-learn, negative-transfer, still-improving k/n, ...)",
    ),
    ("hparams", "every hyperparameter the cell ran with, as JSON"),
    ("hparams.<section>.<name>", "one hyperparameter the cell ran with (section: method, train or task)"),
    ("tuned_from", "the sweep that chose this cell's swept hyperparameters"),
    ("tuned.<name>", "the value the sweep chose"),
    ("record_file", "the record's JSON file (its predictions lie beside it)"),
)


def _pattern(name: str) -> re.Pattern:
    parts = re.split(r"(<[a-z]+>)", name)
    return re.compile("".join(".+" if p.startswith("<") else re.escape(p) for p in parts) + "$")


_PATTERNS = [(_pattern(name), name, meaning) for name, meaning in COLUMNS]


def meaning(column: str) -> str | None:
    """The meaning of a column (a family's prefixed with the family's name); None: no entry describes it."""
    for pattern, name, text in _PATTERNS:
        if pattern.match(column):
            return text if name == column else f"({name}) {text}"
    return None


def sweep_keys(records: Sequence[Record]) -> set[str]:
    """Keys of the sweep cells the records' ``tuned_from`` name (the cells of every sweep that chose a value)."""
    return {
        key
        for r in records
        if r.tuned_from
        for row in r.tuned_from.get("scores") or []
        for key in row.get("cells") or {}
    }


def records_frame(
    records: Sequence[Record],
    shown: Collection[str] | None = None,
    tables: Mapping[str, Sequence[Row]] | None = None,
):
    """One row per record (see the module docstring); ``shown``: the keys the report shows (None: all); ``tables``:
    the report's rows (for ``cell_flags``). A column no record has a value for is left out."""
    import pandas as pd

    swept = sweep_keys(records)
    flags = {r.key: ";".join(board_flags(row)) for rows in (tables or {}).values() for row in rows for r in row.records}
    lines = []
    for r in records:
        flat = flatten(r)
        role = CELL if shown is None or r.key in shown else SWEEP if r.key in swept else OUTSIDE
        line = {}
        for name, value in flat.items():
            line[name] = value
            if name == "status":
                line["role"], line["in_report"] = role, role == CELL
            elif name == "record_flags":
                line["cell_flags"] = flags.get(r.key, "") if role == CELL else None
        lines.append(line)
    frame = pd.DataFrame(lines)
    if frame.empty:
        return frame
    frame = frame.dropna(axis=1, how="all")
    for name in frame.columns:  # one type per column: a mixed column (ints and text) becomes text
        kinds = {type(v) for v in frame[name] if v is not None and v == v}
        if len(kinds) > 1 and kinds != {int, float}:
            frame[name] = frame[name].map(lambda v: None if v is None or v != v else str(v))
    return frame


def data_dictionary(columns: Sequence[str]) -> str:
    """records.md: what a row is, how to get the page's numbers, and every column with its meaning."""
    lines = [
        "# records.csv and records.parquet: data dictionary",
        "",
        "One row per record read (one cell: task x method x budget x seed), every status included. The page's "
        'tables are computed from the rows with `role == "cell"`: with pandas, '
        '`df[(df.role == "cell") & (df.status == "ok")].groupby(["task", "method", "budget"])` gives the '
        "leaderboards' rows (metric columns: mean over seeds as on the page; costs on the page are medians). Rows "
        "with another role are sweep cells and records of cells no longer in the suite: leave them out of any mean.",
        "",
        "| column | meaning |",
        "|---|---|",
    ]
    for column in columns:
        text = meaning(column) or "(not described: bench/report/exports.py COLUMNS lacks it)"
        lines.append(f"| `{column}` | {text.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def write_exports(
    records: Sequence[Record],
    folder: Path,
    shown: Collection[str] | None = None,
    tables: Mapping[str, Sequence[Row]] | None = None,
) -> list[Path]:
    """``records.csv``, ``records.parquet`` and their data dictionary ``records.md`` in ``folder``, written
    atomically (``shown`` and ``tables`` as in ``records_frame``)."""
    import io

    frame = records_frame(records, shown, tables)
    csv_path, parquet_path, md_path = folder / "records.csv", folder / "records.parquet", folder / "records.md"
    atomic_write_text(csv_path, frame.to_csv(index=False))
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(parquet_path, buf.getvalue())
    atomic_write_text(md_path, data_dictionary(list(frame.columns)))
    return [csv_path, parquet_path, md_path]
