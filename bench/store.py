"""Records on disk: one JSON file per cell, ``results/<suite>/<key>.json``, written atomically.

A write goes to a temporary file in the same folder, is fsynced, then renamed over the target, so a crash or a
kill leaves either the old record or the new one, never a torn file. A record that is not ``ok`` never replaces an
``ok`` one: it is kept beside it under ``attempts/`` so no finished result is lost to a bad rerun.
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

    def suite_dir(self, suite: str) -> Path:
        return self.root / suite

    def path(self, suite: str, key: str) -> Path:
        return self.suite_dir(suite) / f"{key}.json"

    def get(self, suite: str, key: str) -> dict[str, Any] | None:
        path = self.path(suite, key)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return None  # unreadable = not done; it will be rerun and replaced atomically

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
        folder = self.suite_dir(suite)
        out = []
        for f in sorted(folder.glob("*.json")) if folder.exists() else []:
            try:
                out.append(json.loads(f.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                continue
        return out

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
