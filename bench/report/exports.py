"""The report's records as a table beside the page: ``records.csv`` and ``records.parquet``, one row per record.

Columns: the cell's identity (task, method, budget, seed, status, backbone, key, suite, created_at, versions),
the last line of a failure's error, every metric under its own name (``test/auroc``), the forgetting probe and its
drop (and each extra probe's drop as ``forgetting_extra/<probe>``), every scalar cost field (``cost.<field>``),
the parameter counts (``params.<field>``), the code and machine (``env.<field>``), flags, the hyperparameters as
one JSON string and one column per value (``hparams.<section>.<name>``), the sweep's choice (``tuned.<name>``) and
the record's file, and ``in_report``: whether the report shows it (sweep-only cells and cells outside the suite's
current definition are exported too, marked False). Dictionaries and lists become JSON text so every column has
one type.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from bench.core.record import Record
from bench.core.store import atomic_write_bytes, atomic_write_text

IDENTITY = ("task", "method", "budget", "seed", "status", "backbone", "key", "suite", "created_at")


def record_row(r: Record) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(r, name) for name in IDENTITY}
    row["task_version"], row["method_version"] = r.task_version, r.method_version
    lines = (r.error or "").strip().splitlines()
    row["error"] = lines[-1] if lines else None
    row.update({name: float(v) if v is not None else None for name, v in sorted(r.metrics.items())})
    f = r.forgetting
    row["forgetting.probe"] = f.probe if f else None
    for name in ("before", "after", "drop"):
        row[f"forgetting.{name}"] = getattr(f, name) if f else None
    row["forgetting.held_out"] = f.held_out is not False if f else None
    for probe, extra in sorted(r.forgetting_extra.items()):
        row[f"forgetting_extra/{probe}"] = extra.drop
    for prefix, section in (("cost", r.cost), ("params", r.params), ("env", r.env)):
        if section is not None:
            for fld in dataclasses.fields(section):
                if fld.name != "extra":
                    row[f"{prefix}.{fld.name}"] = _scalar(getattr(section, fld.name))
    row["flags"] = ",".join(r.flags)
    row["hparams"] = json.dumps(r.hparams, sort_keys=True)
    for section, values in sorted(r.hparams.items()):
        if isinstance(values, dict):
            for name, value in sorted(values.items()):
                row[f"hparams.{section}.{name}"] = _scalar(value)
    chosen = (r.tuned_from or {}).get("selected") or {}
    row["tuned_from"] = (r.tuned_from or {}).get("sweep")
    for name, value in sorted(chosen.items()):
        row[f"tuned.{name}"] = _scalar(value)
    row["record_file"] = str(r.source) if r.source is not None else None
    return row


def records_frame(records: Sequence[Record], shown: Collection[str] | None = None):
    """One row per record (see the module docstring); ``shown``: the keys the report shows (None: all). A column
    no record has a value for is left out."""
    import pandas as pd

    frame = pd.DataFrame([{**record_row(r), "in_report": shown is None or r.key in shown} for r in records])
    if frame.empty:
        return frame
    frame = frame.dropna(axis=1, how="all")
    for name in frame.columns:  # one type per column: a mixed column (ints and text) becomes text
        kinds = {type(v) for v in frame[name] if v is not None and v == v}
        if len(kinds) > 1 and kinds != {int, float}:
            frame[name] = frame[name].map(lambda v: None if v is None or v != v else str(v))
    return frame


def write_exports(records: Sequence[Record], folder: Path, shown: Collection[str] | None = None) -> list[Path]:
    """``records.csv`` and ``records.parquet`` in ``folder``, written atomically (``shown`` as in
    ``records_frame``)."""
    import io

    frame = records_frame(records, shown)
    csv_path, parquet_path = folder / "records.csv", folder / "records.parquet"
    atomic_write_text(csv_path, frame.to_csv(index=False))
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(parquet_path, buf.getvalue())
    return [csv_path, parquet_path]


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True, default=str)
