"""The report's records as a table beside the page: ``records.csv`` and ``records.parquet``, one row per record.

Columns: ``bench.core.record.flatten``'s (the one flattening of a record: identity, error, every metric, forgetting,
cost, parameters, environment, selection, flags, hyperparameters, the sweep's choice, the record's file), and
``in_report``: whether the report shows it (sweep-only cells and cells outside the suite's current definition are
exported too, marked False).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from bench.core.record import Record, flatten
from bench.core.store import atomic_write_bytes, atomic_write_text


def records_frame(records: Sequence[Record], shown: Collection[str] | None = None):
    """One row per record (see the module docstring); ``shown``: the keys the report shows (None: all). A column
    no record has a value for is left out."""
    import pandas as pd

    frame = pd.DataFrame([{**flatten(r), "in_report": shown is None or r.key in shown} for r in records])
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
