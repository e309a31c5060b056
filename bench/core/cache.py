"""Content-addressed caches under ``$ADAPTBENCH_CACHE`` (default ``~/.cache/adaptbench``), shared by every cell.

- ``features/``: a frozen backbone's pooled features, per example. The entry is named by what determines the
  numbers: the backbone, the sha256 of its weights (every tensor's bytes, ``bench.core.model.fingerprint``), the task
  and its version and settings (image size, max length: the preprocessing), the split, the precision and the
  device kind. Inside, features are stored by example id, so budgets and seeds of one task fill and reuse one
  entry: a 1024-example subset computes only what the 256-example subset of the same pool did not.
- ``probes/``: forgetting-probe results, keyed by probe, version, size and the weights' sha256 (``bench.probes``).
- ``models/`` (converted checkpoints), ``derived/`` (generated data such as CIFAR-10-C) and ``machine/`` (measured
  peaks) belong to their modules; ``adaptbench cache ls|clear`` shows and empties all of them.

Every entry carries the sha256 of its payload; one that fails the check or cannot be read at all (a torn write, an
edit, a disk error, a file that is not an ``.npz``) is deleted and recomputed, never trusted, with one warning that
names the file (``unreadable``). Writes are atomic (temporary file + rename), so concurrent cells at worst
compute the same features twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.store import atomic_write_bytes

FEATURES_VERSION = 1
KINDS = ("features", "probes", "models", "derived", "machine")
# every way reading a cache file can fail when the file is damaged (np.load of a cut, empty, foreign or edited file)
UNREADABLE = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    zipfile.BadZipFile,
    pickle.UnpicklingError,
    zlib.error,
    struct.error,
)
_warned: set[str] = set()
_warned_lock = threading.Lock()


def unreadable(path: Path, error: BaseException) -> str:
    """A damaged cache entry: delete it (the caller recomputes it) and warn once per file and process; returns the
    reason, ``<file>: <error>``, for the record."""
    why = " ".join(f"{type(error).__name__}: {error}".split())
    with contextlib.suppress(OSError):  # a file we cannot delete is still never read: it is recomputed, replaced
        path.unlink(missing_ok=True)
    with _warned_lock:
        first = str(path) not in _warned
        _warned.add(str(path))
    if first:  # on stdout: a grid shows it under the cell's line (a cell's stderr is kept only if the cell dies)
        print(f"warning: cache entry {path} is unreadable ({why}); deleted, recomputing it", flush=True)
    return f"{path.name}: {why}"


def cache_dir() -> Path:
    return Path(os.environ.get("ADAPTBENCH_CACHE", Path.home() / ".cache" / "adaptbench"))


def digest(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class FeatureCache:
    """Features of one (backbone weights, task, split, preprocessing) by example id; see the module docstring."""

    parts: dict[str, Any]  # what determines the features (the entry's name is their sha256)
    hits: int = 0  # examples served from the cache in this cell
    computed: int = 0  # examples computed (and added) in this cell
    rejected: list[str] = field(default_factory=list)  # entries found corrupt and recomputed

    def path(self, split: str) -> Path:
        name = digest({**self.parts, "split": split, "version": FEATURES_VERSION})[:32]
        return cache_dir() / "features" / f"{name}.npz"

    def _load(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        empty = (np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32))
        if not path.exists():
            return empty
        try:
            with np.load(path, allow_pickle=False) as z:
                ids, feats, check = z["ids"], z["features"], str(z["sha256"])
            if ids.ndim != 1 or feats.ndim != 2 or len(ids) != len(feats):
                raise ValueError(f"ids {ids.shape} and features {feats.shape} do not match")
            if hashlib.sha256(ids.tobytes() + feats.tobytes()).hexdigest() != check:
                raise ValueError("checksum mismatch")
        except UNREADABLE as e:
            self.rejected.append(unreadable(path, e))
            return empty
        return ids, feats

    def _save(self, path: Path, ids: np.ndarray, feats: np.ndarray) -> None:
        order = np.argsort(ids, kind="stable")
        ids, feats = np.ascontiguousarray(ids[order]), np.ascontiguousarray(feats[order])
        buf = io.BytesIO()
        check = hashlib.sha256(ids.tobytes() + feats.tobytes()).hexdigest()
        np.savez(buf, ids=ids, features=feats, sha256=np.array(check), parts=np.array(json.dumps(self.parts)))
        atomic_write_bytes(path, buf.getvalue())

    def features(self, split: str, ids: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """Features of the examples ``ids`` (in that order); ``compute(positions)`` encodes the examples at those
        positions of the split for the ids the cache lacks."""
        path = self.path(split)
        have_ids, have = self._load(path)
        where = {int(i): k for k, i in enumerate(have_ids)}
        missing = np.array([k for k, i in enumerate(ids) if int(i) not in where], dtype=np.int64)
        if len(missing):
            new = np.asarray(compute(missing), dtype=np.float32)
            all_ids = np.concatenate([have_ids, np.asarray(ids)[missing]])
            all_feats = new if not len(have_ids) else np.concatenate([have, new])
            self._save(path, all_ids, all_feats)
            have_ids, have = all_ids, all_feats
            where = {int(i): k for k, i in enumerate(have_ids)}
        self.computed += len(missing)
        self.hits += len(ids) - len(missing)
        return have[[where[int(i)] for i in ids]]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"hits": self.hits, "computed": self.computed}
        if self.rejected:
            out["rejected"] = self.rejected
        return out


# ------------------------------------------------------------------------------------------- ls / clear
def usage() -> list[tuple[str, int, int]]:
    """(kind, entries, bytes) for every cache kind, present or not."""
    rows = []
    for kind in KINDS:
        folder = cache_dir() / kind
        files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
        entries = len(list(folder.iterdir())) if folder.exists() else 0
        rows.append((kind, entries, sum(p.stat().st_size for p in files)))
    return rows


def clear(kinds: list[str] | None = None) -> list[str]:
    """Delete the given kinds (default: features and probes, which any cell recomputes); returns what went."""
    wanted = kinds or ["features", "probes"]
    unknown = sorted(set(wanted) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown cache kind {unknown[0]!r}; use one of {', '.join(KINDS)}")
    gone = []
    for kind in wanted:
        folder = cache_dir() / kind
        if folder.exists():
            shutil.rmtree(folder)
            gone.append(kind)
    return gone
