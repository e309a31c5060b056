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
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.record import Record

RESULTS_ROOT = Path(os.environ.get("ADAPTBENCH_RESULTS", Path(__file__).resolve().parents[2] / "results"))
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; records and reports are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# task -> the spec a record of a declared dataset carries: a report reads such records without the declaration
# (``bench.catalog.spec`` falls back to it)
RECORDED_SPECS: dict[str, dict[str, Any]] = {}


class Store:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root else RESULTS_ROOT
        self.unreadable: dict[Path, str] = {}  # record files that could not be read, and why

    def suite_dir(self, suite: str) -> Path:
        return self.root / suite

    def path(self, suite: str, key: str) -> Path:
        return self.suite_dir(suite) / f"{key}.json"

    def get(self, suite: str, key: str) -> Record | None:
        """The record of a cell, or None when it has none or its file is unreadable (then named in
        ``self.unreadable``: such a cell counts as not done, is rerun and its file replaced atomically)."""
        path = self.path(suite, key)
        if not path.exists():
            return None
        return self._read(path)

    def _read(self, path: Path) -> Record | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            self.unreadable[path] = f"{type(e).__name__}: {e}"
            return None
        if not isinstance(data, dict):
            self.unreadable[path] = "not a record (not a JSON object)"
            return None
        try:
            record = Record.from_json(data)
        except (TypeError, ValueError) as e:
            self.unreadable[path] = f"not a record ({e})"
            return None
        self.unreadable.pop(path, None)
        record.source = path
        if record.dataset and isinstance(record.dataset.get("spec"), dict):
            RECORDED_SPECS.setdefault(record.task, record.dataset["spec"])
        return record

    def has_ok(self, suite: str, key: str) -> bool:
        record = self.get(suite, key)
        return record is not None and record.ok

    def write(self, record: Record) -> Path:
        """Write a record; its per-example predictions (``record.arrays``) go first, beside it, so a record on
        disk always has its predictions."""
        if not record.ok and self.has_ok(record.suite, record.key):
            stamp = record.created_at.replace(":", "").replace("-", "")
            path = self.suite_dir(record.suite) / "attempts" / f"{record.key}.{stamp}.{record.status}.json"
        else:
            path = self.path(record.suite, record.key)
        if record.arrays:
            record.predictions = self._write_predictions(path, self.suite_dir(record.suite), record.arrays)
        atomic_write_text(path, record.dumps())
        return path

    def _write_predictions(self, path: Path, suite_dir: Path, arrays: dict[str, dict]) -> dict:
        import hashlib
        import io

        import numpy as np

        flat = {f"{split}/{name}": np.asarray(v) for split, parts in arrays.items() for name, v in parts.items()}
        flat = {
            k: v.astype(np.float32) if v.dtype == np.float64 and k.endswith("/outputs") else v for k, v in flat.items()
        }
        buf = io.BytesIO()
        np.savez_compressed(buf, **flat)
        data = buf.getvalue()
        target = path.with_suffix(".preds.npz")
        atomic_write_bytes(target, data)
        digest = hashlib.sha256(data).hexdigest()
        return {"file": str(target.relative_to(suite_dir)), "sha256": digest, "splits": sorted(arrays)}

    def predictions(self, record: Record) -> dict[str, dict]:
        """A record's per-example test outputs: split -> {"ids", "outputs", "labels"}, checked against the sha256
        the record holds (ValueError when missing or altered: the paired statistics must not use them)."""
        import hashlib
        import io

        import numpy as np

        if not record.predictions:
            raise ValueError(f"record {record.key} has no stored predictions (written before they were kept)")
        folder = self.suite_dir(record.suite)
        if record.source is not None:  # read from a file: its suite folder, even when renamed (baselines)
            parent = Path(record.source).parent
            folder = parent.parent if parent.name == "attempts" else parent
        path = folder / record.predictions["file"]
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ValueError(f"predictions of {record.key}: {e}") from None
        if hashlib.sha256(data).hexdigest() != record.predictions["sha256"]:
            raise ValueError(f"predictions file {path} does not match its record's checksum")
        out: dict[str, dict] = {}
        with np.load(io.BytesIO(data)) as z:
            for name in z.files:
                split, part = name.split("/", 1)
                out.setdefault(split, {})[part] = z[name]
        return out

    def records(self, suite: str) -> list[Record]:
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
        """One line per unreadable record file met so far (torn, truncated, not JSON) that is still unreadable: a
        file a grid has since replaced with a whole record (or removed) is no longer named."""
        for path in list(self.unreadable):
            if not path.exists():
                self.unreadable.pop(path, None)
            else:
                self._read(path)  # forgets the file when it reads now
        return [f"unreadable record {path}: {why}" for path, why in sorted(self.unreadable.items())]

    def suites(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("*.json")))


# ------------------------------------------------------------------------------------- finding a suite's records
@dataclass(frozen=True)
class Located:
    """Where a suite's records are: ``store.suite_dir(folder)``, holding records of ``suite``."""

    store: Store
    folder: str
    suite: str
    found: str  # what was found, in one line (the CLI prints it)

    @property
    def path(self) -> Path:
        return self.store.suite_dir(self.folder)

    def records(self) -> list[Record]:
        """The readable records of ``suite`` in the folder (a folder may hold records of another suite too)."""
        return [r for r in self.store.records(self.folder) if r.suite == self.suite]


def locate(results: str | Path | None, suite: str | None, command: str = "report") -> Located:
    """The records a command should read. ``results`` is a folder of suite folders (``results/``) or itself a
    folder of records (``results/baselines/default-cpu``); ``suite`` a suite name, a ``.toml`` path or None (the
    only suite there). A suite filed under a folder of another name (baselines) is found by the records' own
    ``suite``. A ValueError names what the folder holds and the command that works."""
    root = Path(results) if results else RESULTS_ROOT
    name = Path(suite).stem if suite and suite.endswith(".toml") else suite
    shown = str(results) if results else "results"

    def form(folder: str | Path, s: str) -> str:
        return f"`adaptbench {command} --results {folder} --suite {s}`"

    if not root.is_dir():
        raise ValueError(
            f"no folder {root}: --results takes a folder of suite folders or a folder of records, e.g. "
            f"`adaptbench {command} --results results/baselines/default-cpu`"
        )
    if any(root.glob("*.json")):  # a folder of records
        counts = Counter(r.suite for r in Store(root.parent).records(root.name))
        held = ", ".join(f"{n} records of suite {s}" for s, n in sorted(counts.items())) or "no readable records"
        if name is None and len(counts) == 1:
            name = next(iter(counts))
        if name not in counts:
            raise ValueError(
                f"{root} holds {held}"
                + (f", none of suite {name!r}" if name else "")
                + "; "
                + " or ".join(form(shown, s) for s in sorted(counts))
            )
        found = f"found {held} in {root}" + (f"; reporting suite {name}" if len(counts) > 1 else "")
        return Located(Store(root.parent), root.name, name, found)
    store = Store(root)
    folders = {f: _suite_of(root / f) or f for f in store.suites()}

    def holds(f: str) -> str:
        return f"{root / f} ({_count(root / f)} records of suite {folders[f]})"

    held = ", ".join(holds(f) for f in sorted(folders))
    if not folders:
        deeper = sorted({p.parent for p in root.glob("*/*/*.json")})[:5]  # e.g. results/baselines/default-cpu
        hint = f"run `adaptbench grid --suite {name or 'default'}{f' --results {shown}' if results else ''}` first"
        if deeper:
            suite_arg = f" --suite {suite}" if suite else ""
            hint = "folders of records below it: " + " or ".join(
                f"`adaptbench {command} --results {p}{suite_arg}`" for p in deeper
            )
        raise ValueError(f"no records under {root} (neither *.json records nor folders of them); {hint}")
    if name is None:
        if len(folders) > 1:
            raise ValueError(f"{root} holds records of several suites: {held}; pick one: {form(shown, min(folders))}")
        name = next(iter(folders))
    others = f" (also there: {', '.join(holds(f) for f in sorted(folders) if f != name)})" if len(folders) > 1 else ""
    if name in folders:
        return Located(store, name, folders[name], f"found {holds(name)}{others}")
    same = sorted(f for f, s in folders.items() if s == name)
    if len(same) == 1:
        others = f" (also there: {', '.join(holds(f) for f in sorted(folders) if f != same[0])})" if others else ""
        return Located(store, same[0], name, f"found {holds(same[0])}{others}")
    forms = " or ".join(form(root / f, name) for f in same) or " or ".join(form(shown, f) for f in sorted(folders))
    raise ValueError(f"no folder {root / name}: {root} holds {held}; {forms}")


def _suite_of(folder: Path) -> str | None:
    """The suite named by the first readable record of a folder (a folder may be named otherwise, as baselines)."""
    for f in sorted(folder.glob("*.json")):
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("suite"), str):
            return data["suite"]
    return None


def _count(folder: Path) -> int:
    return sum(1 for _ in folder.glob("*.json"))
