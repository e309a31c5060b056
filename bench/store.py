"""Records on disk: one JSON file per cell, ``results/<suite>/<key>.json``, written atomically.

A write goes to a temporary file in the same folder, is fsynced, then renamed over the target, so a crash or a
kill leaves either the old record or the new one, never a torn file. A record that is not ``ok`` never replaces an
``ok`` one: it is kept beside it under ``attempts/`` so no finished result is lost to a bad rerun. A record file
that cannot be read (truncated by a full disk, edited by hand) is remembered in ``Store.unreadable`` so the report
and the grid can name it; the grid reruns that cell.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

RESULTS_ROOT = Path(os.environ.get("ADAPTBENCH_RESULTS", Path(__file__).resolve().parent.parent / "results"))
SCHEMA_VERSION = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; records and reports are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Store:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else RESULTS_ROOT
        self.unreadable: dict[Path, str] = {}  # record files that could not be read, and why

    def suite_dir(self, suite: str) -> Path:
        return self.root / suite

    def path(self, suite: str, key: str) -> Path:
        return self.suite_dir(suite) / f"{key}.json"

    def get(self, suite: str, key: str) -> dict[str, Any] | None:
        """The record of a cell, or None when it has none or its file is unreadable (then named in
        ``self.unreadable``: such a cell counts as not done, is rerun and its file replaced atomically)."""
        path = self.path(suite, key)
        if not path.exists():
            return None
        return self._read(path)

    def _read(self, path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            self.unreadable[path] = f"{type(e).__name__}: {e}"
            return None
        if not isinstance(record, dict) or not {"key", "status"} <= set(record):
            self.unreadable[path] = "not a record (no key or status)"
            return None
        self.unreadable.pop(path, None)
        return record

    def has_ok(self, suite: str, key: str) -> bool:
        record = self.get(suite, key)
        return record is not None and record.get("status") == "ok"

    def write(self, record: dict[str, Any]) -> Path:
        suite, key = record["suite"], record["key"]
        text = json.dumps(record, indent=1, sort_keys=True, default=_jsonable)
        if record.get("status") != "ok" and self.has_ok(suite, key):
            stamp = record.get("created_at", "").replace(":", "").replace("-", "")
            path = self.suite_dir(suite) / "attempts" / f"{key}.{stamp}.{record['status']}.json"
        else:
            path = self.path(suite, key)
        atomic_write_text(path, text)
        return path

    def records(self, suite: str) -> list[dict[str, Any]]:
        """Every readable record of a suite; unreadable files are named in ``self.unreadable``, never dropped
        silently (see ``warnings``)."""
        folder = self.suite_dir(suite)
        out = []
        for f in sorted(folder.glob("*.json")) if folder.exists() else []:
            record = self._read(f)
            if record is not None:
                out.append(record)
        return out

    def warnings(self) -> list[str]:
        """One line per unreadable record file met so far (torn, truncated, not JSON)."""
        return [f"unreadable record {path}: {why}" for path, why in sorted(self.unreadable.items())]

    def frame(self, suite: str):
        """All records of a suite as a flat DataFrame (``metrics.test/auroc``, ``cost.peak_mem_bytes``, ...)."""
        import pandas as pd

        return pd.json_normalize(self.records(suite))

    def suites(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.json")))


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
