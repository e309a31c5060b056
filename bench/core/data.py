"""The data root: where files are, proof they are the right files, and how to get them when they are missing.

One layout serves the offline mirror and downloads alike (``vision/medmnist/pneumoniamnist.npz``,
``nlp/glue/SST-2/train.tsv``, ...). The root is, in order: ``--data-root``, ``$ADAPTBENCH_DATA``, the mirror
``../shared/data`` beside the checkout, ``~/.cache/adaptbench/data``. Every file is checked against the sha256
pinned in ``checksums.txt``; files that a fetcher had to convert from the publisher's format are checked against
the sum recorded at fetch time in ``<root>/LOCAL_SHA256SUMS`` instead. A missing file is fetched from its original
publisher unless ``ADAPTBENCH_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``); when that is impossible the error names the
file, the root and the fix.

Budget subsets (``nested_subset``) and validation carved out of a budget (``holdout_subset``) live here too: one
function each, so every task gets the same guarantees.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

ENV_VAR = "ADAPTBENCH_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_SUMS = "LOCAL_SHA256SUMS"


class DataError(RuntimeError):
    """A data file is missing, corrupt or unobtainable; the message says which and how to fix it."""


@dataclass(frozen=True)
class Source:
    """How to obtain one file of the layout from its original publisher."""

    fetch: Callable[[Path], None]  # writes the file at the given path
    how: str  # one line a human can follow


SOURCES: dict[str, Source] = {}


def register_source(rel: str, fetch: Callable[[Path], None], how: str) -> None:
    SOURCES[rel] = Source(fetch, how)


@cache
def pinned_sums() -> dict[str, str]:
    text = (Path(__file__).resolve().parents[1] / "checksums.txt").read_text()
    return {rel.strip(): digest for digest, rel in (line.split(None, 1) for line in text.splitlines() if line)}


def default_root() -> Path:
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    for candidate in (REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return Path.home() / ".cache" / "adaptbench" / "data"


def offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("ADAPTBENCH_OFFLINE", "HF_HUB_OFFLINE"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class DataRoot:
    path: Path

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> DataRoot:
        return cls(Path(path).expanduser() if path else default_root())

    def local_sums(self) -> dict[str, str]:
        f = self.path / LOCAL_SUMS
        if not f.exists():
            return {}
        return {rel.strip(): d for d, rel in (line.split(None, 1) for line in f.read_text().splitlines() if line)}

    def expected_sum(self, rel: str) -> str | None:
        return self.local_sums().get(rel) or pinned_sums().get(rel)

    def file(self, rel: str) -> Path:
        """Path of a verified file of the layout, fetching it first if it is missing and we may."""
        path = self.path / rel
        if not path.exists():
            self._fetch(rel, path)
        _verify(path, rel, self.expected_sum(rel), self.path)
        return path

    def _fetch(self, rel: str, path: Path) -> None:
        # the module that reads a file registers its source on import (tasks, probes), so a file whose reader ran
        # has one; what no imported module registered has "no publisher download"
        source = SOURCES.get(rel)
        how = source.how if source else "no publisher download is known for this file"
        fix = (
            f"Fix: point --data-root or ${ENV_VAR} at a folder holding the offline mirror (see its README.md), "
            f"or obtain it: {how}"
        )
        if source is None or offline():
            why = "offline mode is on" if source else "nothing to download it from"
            raise DataError(f"data file {rel} is not available offline: missing under {self.path} ({why}). {fix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part")
        try:
            source.fetch(tmp)
        except Exception as e:  # any download or conversion error becomes one clear message
            tmp.unlink(missing_ok=True)
            raise DataError(f"data file {rel} is missing under {self.path} and the download failed ({e}). {fix}") from e
        digest = sha256(tmp)
        pinned = pinned_sums().get(rel)
        if pinned is not None and digest != pinned:
            # Converted from the publisher's format (different bytes, same content): remember what we made.
            with (self.path / LOCAL_SUMS).open("a") as f:
                f.write(f"{digest}  {rel}\n")
        os.replace(tmp, path)

    def verify_all(self) -> list[tuple[str, str]]:
        """(file, status) for every pinned file: ok | missing | MISMATCH."""
        rows = []
        for rel in sorted(pinned_sums()):
            path = self.path / rel
            if not path.exists():
                rows.append((rel, "missing"))
                continue
            try:
                _verify(path, rel, self.expected_sum(rel), self.path, use_cache=False)
                rows.append((rel, "ok"))
            except DataError:
                rows.append((rel, "MISMATCH"))
        return rows


_verified: dict[tuple[str, int, float], str] = {}


def _verify(path: Path, rel: str, expected: str | None, root: Path, use_cache: bool = True) -> None:
    if expected is None:
        return
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime)
    digest = _verified.get(key) if use_cache else None
    if digest is None:
        digest = sha256(path)
    if digest != expected:
        raise DataError(
            f"data file {path} fails its checksum (sha256 {digest[:16]}..., expected {expected[:16]}...). "
            f"It is corrupt or a different version. Fix: replace it with the original (re-copy the mirror, or delete "
            f"it and rerun online to download it again), or point --data-root at a good copy."
        )
    _verified[key] = digest


def nested_subset(labels: np.ndarray, budget: int, seed: int, stratify: bool = True) -> np.ndarray:
    """Indices of a ``budget``-example training subset, nested across budgets for one seed.

    The order is a seeded permutation; the subset is its prefix, so the 64-example subset lies inside the
    256-example one. With ``stratify`` each class is spread evenly through the order (class c's i-th example sits
    at position ~ i / n_c), so every prefix keeps the class proportions and holds every class as early as
    possible: the first ``#classes`` positions hold one example of each.
    """
    n = len(labels)
    if not 0 < budget <= n:
        raise ValueError(f"Invalid budget: {budget} (the train pool has {n} examples)")
    rng = np.random.default_rng(seed)
    if not stratify:
        return np.sort(rng.permutation(n)[:budget])
    position = np.empty(n)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        order = rng.permutation(members)
        position[order] = (np.arange(len(order)) + rng.random()) / len(order)
        position[order[0]] = -1.0  # one example of every class leads, so any budget >= #classes holds them all
    ranked = np.lexsort((rng.random(n), position))
    return np.sort(ranked[:budget])


HOLDOUT_STREAM = 0x7A11  # a random stream of its own: the carved validation is not a prefix of the budget's order


def holdout_subset(labels: np.ndarray, fraction: float, seed: int, stratify: bool = True) -> np.ndarray:
    """Sorted positions of a validation subset carved out of a training budget (``validation=budget``).

    With ``stratify``, ``fraction`` of each class (rounded half up), at least one example of every class that has
    two or more and never a class's last one, so validation holds every class it can while training keeps them all;
    without, ``fraction`` of all examples (at least one, never all). Deterministic in ``seed`` (and the labels).
    """
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng([seed, HOLDOUT_STREAM])

    def share(m: int) -> int:
        return min(m - 1, max(1, int(np.floor(fraction * m + 0.5)))) if m >= 2 else 0

    if stratify:
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        picked = [rng.permutation(members)[: share(len(members))] for members in groups]
        held = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    else:
        held = rng.permutation(n)[: share(n)]
    if not len(held):
        raise ValueError(
            f"cannot carve a validation split out of a budget of {n} examples (no class has two): use a larger "
            "budget or validation=oracle"
        )
    return np.sort(held).astype(np.int64)


FOLD_STREAM = 0xF01D  # the folds' own random stream (not the budget's order, not the carved validation's)


def kfold_assignment(labels: np.ndarray, k: int, seed: int, stratify: bool = True) -> np.ndarray:
    """The fold (0 .. k-1) of each example of a budget, for k-fold selection on small budgets (``cv_folds``).

    With ``stratify`` each class is dealt round-robin over the folds from a seeded permutation (so every fold holds
    each class as evenly as the counts allow, and the folds' sizes differ by at most one per class); without, the
    whole budget is dealt the same way. Deterministic in ``seed`` and the labels."""
    labels = np.asarray(labels)
    if k < 2 or k > len(labels):
        raise ValueError(f"Invalid number of folds: {k} (2 to the budget's {len(labels)} examples)")
    rng = np.random.default_rng([seed, FOLD_STREAM])
    fold = np.empty(len(labels), dtype=np.int64)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(len(labels))]
    start = 0
    for members in groups:
        order = rng.permutation(members)
        fold[order] = (np.arange(len(order)) + start) % k
        start += len(order)  # the next class starts where this one stopped: fold sizes stay within one
    return fold


HALF_SEED = 0x4A1F  # fixed: the two test halves never depend on a cell's seed


def half_subset(labels: np.ndarray, half: int, stratify: bool = True) -> np.ndarray:
    """Sorted positions of half 1 or 2 of a test set: a fixed class-stratified split into two disjoint halves (each
    class split as evenly as its count allows), the same for every cell, so two replicates of a suite can be scored on
    different items (``test_half``)."""
    if half not in (1, 2):
        raise ValueError(f"Invalid test_half: {half} (1 or 2; 0 = the whole test set)")
    labels = np.asarray(labels)
    rng = np.random.default_rng(HALF_SEED)
    first = np.zeros(len(labels), dtype=bool)
    groups = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratify else [np.arange(len(labels))]
    for members in groups:
        order = rng.permutation(members)
        first[order[: (len(order) + 1) // 2]] = True
    return np.flatnonzero(first if half == 1 else ~first).astype(np.int64)
