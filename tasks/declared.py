"""Declared datasets: a user's own data as a task, with no code (``--task my-data.toml``, ``--task reviews.csv``).

A declaration is a small TOML file (or a suite's ``[datasets.<name>]`` table) naming the data and how to read it::

    name = "airline"                        # lowercase-with-hyphens; the task's name in records and reports
    source = "data/airline.csv"             # a file, a folder, "hf:<hub name>" or a save_to_disk folder
    text = "reviews"                        # one text column, or two for a pair task: ["question", "answer"]
    label = "labels"                        # the label column (image folders: the sub-folder is the label)
    # optional: splits = { train = "train.csv", validation = "dev.csv", test = "test.csv" } (files or hub splits),
    # test_fraction = 0.2, ood_test = "other-domain.csv", metric = "auroc", kind = "regression",
    # label_names = ["negative", "positive"], label_words = [...], instruction = "...", budgets = [64, 256],
    # backbone = "hf:<model>", max_len = 128, image_size = 64, encoding = "utf-8", description = "..."

Sources: CSV / TSV / JSON Lines / JSON / Parquet files (read with pandas: small, exact error messages, no cache
folder written beside the user's data), a folder of such files (concatenated, in name order), an image folder with one
sub-folder per class (optionally ``train/``, ``validation/`` (or ``val/``) and ``test/`` above the class folders),
a ``save_to_disk`` folder or a Hugging Face hub dataset (read with the ``datasets`` library; a hub name needs the
network or the local hub cache).

Splits: the user's own train / validation / test when given; otherwise a fixed, seeded, class-stratified test split
(``test_fraction``) is carved first, then validation (a fifth of the rest, at most 500) from what remains, exactly as
the built-in tasks carve theirs (``nested_subset`` with a fixed seed, never the cell's). An example's id is its row
(its sorted place in an image folder) plus 10,000,000 times its file's place, so disjointness is provable. The data's
content fingerprint (sha256 of every file read) is part of every cell's key and lies in every record with the hash
of the test ids, so a rerun on the same bytes is the same split and a changed file under the same name is refused
before any cell runs (``adaptbench`` compares it with the records).

Labels: strings or integers are classes (sorted; names from ``label_names`` when the file holds integers), a column of
non-integral numbers (or ``kind = "regression"``) is regression. The primary metric defaults to AUROC for a binary
task whose smaller class is under 40% of the examples, accuracy for a balanced one, macro-F1 for an imbalanced
multi-class one, Spearman for regression. Prompting (few-/zero-shot) uses the label names as label words, unless they
are numbers (then declare ``label_words``).

Every problem with the data is a ``DataError`` naming the problem and the fix (missing column, a class with one
example, empty or non-UTF-8 file, undecodable images, missing labels), raised when the declaration is read, before
any cell runs.
Version history: 1 - first version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bench.core.api import CLASSIFICATION, REGRESSION, TEXT, VISION, PromptSpec, Split, Splits, Task, TaskSpec
from bench.core.data import DataError, DataRoot, nested_subset, sha256
from bench.core.registry import TASKS

VERSION = 1
SPLIT_SEED = 4242  # fixed: carved test and validation never depend on the cell's seed or budget
MAX_VAL = 500
TABLES = {".csv": "csv", ".tsv": "tsv", ".jsonl": "json", ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
IMAGES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
KEYS = {
    "name",
    "source",
    "text",
    "label",
    "splits",
    "test_fraction",
    "ood_test",
    "metric",
    "kind",
    "label_names",
    "label_words",
    "instruction",
    "budgets",
    "backbone",
    "max_len",
    "image_size",
    "encoding",
    "description",
    "hf_config",
}
SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "val", "valid", "dev"), "test": ("test",)}
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
DECLARED: dict[str, type[DeclaredTask]] = {}  # name -> class, for this process


def _fail(name: str, problem: str, fix: str) -> DataError:
    return DataError(f"dataset {name}: {problem}. Fix: {fix}")


# ------------------------------------------------------------------------------------------------ the declaration
@dataclass(frozen=True)
class Declaration:
    """A declared dataset, as the user wrote it, with its paths made absolute (``base``: the declaration's folder)."""

    name: str
    source: str
    text: tuple[str, ...] = ()
    label: str = "label"
    splits: tuple[tuple[str, str], ...] = ()
    test_fraction: float = 0.2
    ood_test: str = ""
    metric: str = ""
    kind: str = ""
    label_names: tuple[str, ...] = ()
    label_words: tuple[str, ...] = ()
    instruction: str = ""
    budgets: tuple[int, ...] = ()
    backbone: str = ""
    max_len: int = 128
    image_size: int = 64
    encoding: str = "utf-8"
    description: str = ""
    hf_config: str = ""

    @classmethod
    def parse(cls, table: dict[str, Any], base: Path, where: str) -> Declaration:
        unknown = sorted(set(table) - KEYS)
        if unknown:
            raise ValueError(
                f"{where}: unknown key(s) {', '.join(unknown)}. Fix: use the keys a declaration has: "
                f"{', '.join(sorted(KEYS))}"
            )
        name = table.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(
                f"{where}: name must be lowercase letters, digits and hyphens, e.g. 'support-tickets', not {name!r}"
            )
        if name in TASKS and name not in DECLARED:
            raise ValueError(f"{where}: name {name!r} is a built-in task; give your dataset a name of its own")
        source = table.get("source")
        if not isinstance(source, str) or not source:
            raise ValueError(f"{where}: source must name a file, a folder or hf:<dataset> (e.g. source = 'data.csv')")

        def path(value: str) -> str:
            if value.startswith("hf:"):
                return value
            p = Path(value).expanduser()
            return str(p if p.is_absolute() else (base / p).resolve())

        text = table.get("text", ())
        text = (text,) if isinstance(text, str) else tuple(text)
        if len(text) > 2 or not all(isinstance(t, str) for t in text):
            raise ValueError(f"{where}: text is one column name or two (a pair task), not {table.get('text')!r}")
        splits = table.get("splits", {})
        if not isinstance(splits, dict) or set(splits) - set(SPLIT_NAMES):
            raise ValueError(f"{where}: splits is a table with train, validation and/or test, not {splits!r}")
        if splits and "train" not in splits:
            raise ValueError(f"{where}: splits names no train; give splits = {{ train = ..., test = ... }}")
        hub = source.startswith("hf:")
        fraction = table.get("test_fraction", 0.2)
        if not isinstance(fraction, int | float) or not 0 < fraction < 1:
            raise ValueError(f"{where}: test_fraction must be in (0, 1), e.g. 0.2, not {fraction!r}")
        kind = table.get("kind", "")
        if kind not in ("", CLASSIFICATION, REGRESSION):
            raise ValueError(f"{where}: kind is 'classification' or 'regression', not {kind!r}")
        budgets = table.get("budgets", [])
        if not isinstance(budgets, list) or not all(isinstance(b, int) and b > 0 for b in budgets):
            raise ValueError(f"{where}: budgets must be a list of positive example counts, e.g. [64, 256]")
        return cls(
            name=name,
            source=path(source),
            text=text,
            label=str(table.get("label", "label")),
            splits=tuple(sorted((k, v if hub else path(v)) for k, v in splits.items())),
            test_fraction=float(fraction),
            ood_test=path(table["ood_test"]) if table.get("ood_test") else "",
            metric=str(table.get("metric", "")),
            kind=kind,
            label_names=tuple(str(v) for v in table.get("label_names", ())),
            label_words=tuple(str(v) for v in table.get("label_words", ())),
            instruction=str(table.get("instruction", "")),
            budgets=tuple(budgets),
            backbone=str(table.get("backbone", "")),
            max_len=int(table.get("max_len", 128)),
            image_size=int(table.get("image_size", 64)),
            encoding=str(table.get("encoding", "utf-8")),
            description=str(table.get("description", "")),
            hf_config=str(table.get("hf_config", "")),
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Declaration:
        tuples = {f.name for f in dataclasses.fields(cls) if isinstance(f.default, tuple)}
        return cls(
            **{
                k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if k in tuples else v)
                for k, v in d.items()
            }
        )


# ------------------------------------------------------------------------------------------------ reading
@dataclass
class Table:
    """Rows read from one source: inputs (texts, text pairs or uint8 images), raw labels, ids, and what was read."""

    inputs: Any
    labels: list[Any]
    ids: np.ndarray
    files: dict[str, str]  # path -> sha256 (or a hub fingerprint)


def _table_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TABLES)
    return files


def _read_frame(decl: Declaration, file: Path):
    import pandas as pd

    kind = TABLES.get(file.suffix.lower())
    if kind is None:
        raise _fail(
            decl.name,
            f"{file} is not a table file I can read ({file.suffix})",
            f"use one of {', '.join(sorted(TABLES))}, or an image folder",
        )
    if file.stat().st_size == 0:
        raise _fail(decl.name, f"{file} is empty (0 bytes)", "point source at the file that holds the data")
    try:
        if kind in ("csv", "tsv"):
            return pd.read_csv(
                file, sep="\t" if kind == "tsv" else ",", encoding=decl.encoding, dtype=str, keep_default_na=False
            )
        if kind == "json":
            lines = file.suffix.lower() == ".jsonl" or file.read_bytes().lstrip()[:1] != b"["
            return pd.read_json(file, lines=lines, encoding=decl.encoding, dtype=False)
        return pd.read_parquet(file)
    except UnicodeDecodeError as e:
        raise _fail(
            decl.name,
            f"{file} is not {decl.encoding} text (byte 0x{e.object[e.start]:02x} at position {e.start})",
            "re-save it as UTF-8 (e.g. `iconv -f latin1 -t utf-8`), or declare its encoding, e.g. encoding = 'latin-1'",
        ) from None
    except pd.errors.EmptyDataError:
        raise _fail(decl.name, f"{file} holds no rows", "point source at the file that holds the data") from None
    except (ValueError, pd.errors.ParserError) as e:
        raise _fail(
            decl.name,
            f"{file} cannot be read as {kind} ({' '.join(str(e).split())[:200]})",
            "check the file's format, or rename it with the right extension",
        ) from None


def _file_sums(files: list[Path]) -> dict[str, str]:
    return {str(f): _sha(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files}


@cache
def _sha(path: str, size: int, mtime: int) -> str:
    return sha256(Path(path))


def _from_frame(decl: Declaration, frame, where: str) -> tuple[Any, list[Any]]:
    columns = [str(c) for c in frame.columns]
    text = decl.text or tuple(c for c in ("text", "sentence", "review", "reviews") if c in columns)[:1]
    if not text:
        raise _fail(
            decl.name,
            f"no text column declared and none named text/sentence/review(s) in {where} "
            f"(columns: {', '.join(columns)})",
            'declare it, e.g. text = "body"',
        )
    for c in (*text, decl.label):
        if c not in columns:
            what = "label" if c == decl.label else "text"
            raise _fail(
                decl.name,
                f"{where} has no {what} column {c!r} (columns: {', '.join(columns)})",
                f"declare the right one, e.g. {what} = {columns[-1 if what == 'label' else 0]!r}",
            )
    if len(frame) == 0:
        raise _fail(decl.name, f"{where} holds no rows", "point source at the file that holds the data")
    labels = frame[decl.label].tolist()
    missing = [i for i, v in enumerate(labels) if v is None or v == "" or (isinstance(v, float) and math.isnan(v))]
    if missing:
        rows = ", ".join(str(i + 2) for i in missing[:5])
        raise _fail(
            decl.name,
            f"{len(missing)} rows of {where} have no label (file lines {rows}{', ...' if len(missing) > 5 else ''})",
            "fill them in or remove those rows",
        )
    cols = [
        frame[c].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)).tolist()
        for c in text
    ]
    inputs = cols[0] if len(cols) == 1 else list(zip(*cols, strict=True))
    return inputs, labels


def _read_tables(decl: Declaration, source: str, offset: int) -> Table:
    path = Path(source)
    if not path.exists():
        raise _fail(
            decl.name,
            f"source {path} does not exist",
            "correct the path (relative paths start at the declaration's folder) or copy the data there",
        )
    files = _table_files(path)
    if not files:
        raise _fail(
            decl.name,
            f"{path} holds no table file ({', '.join(sorted(TABLES))}) and no class folders of images",
            "point source at the data file or the image folder",
        )
    inputs, labels, ids = [], [], []
    for i, f in enumerate(files):
        x, y = _from_frame(decl, _read_frame(decl, f), str(f))
        inputs += x
        labels += y
        ids.append((offset * 100 + i) * 10_000_000 + np.arange(len(y)))
    return Table(inputs, labels, np.concatenate(ids), _file_sums(files))


def _is_image_folder(path: Path) -> bool:
    """A folder of class sub-folders holding images (directly, not through a train/ test/ level)."""
    return path.is_dir() and any(
        p.suffix.lower() in IMAGES for d in path.iterdir() if d.is_dir() for p in d.iterdir() if p.is_file()
    )


def _read_images(decl: Declaration, folder: Path, offset: int, size: int) -> Table:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    items = [(c, p) for c in classes for p in sorted((folder / c).iterdir()) if p.suffix.lower() in IMAGES]
    if not items:
        raise _fail(decl.name, f"{folder} holds no images in class sub-folders", "lay it out as <folder>/<class>/*.png")
    images, bad, modes = [], [], set()
    for _, p in items:
        try:
            with Image.open(p) as im:
                im.load()
                modes.add("L" if im.mode in ("L", "1", "I;16", "I") else "RGB")
                images.append(im.copy())
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            bad.append(f"{p.relative_to(folder)} ({type(e).__name__})")
    if bad:
        raise _fail(
            decl.name,
            f"{len(bad)} of {len(items)} images in {folder} do not decode: {', '.join(bad[:5])}"
            f"{', ...' if len(bad) > 5 else ''}",
            "remove or re-save those files",
        )
    mode = "L" if modes == {"L"} else "RGB"
    arrays = np.stack(
        [np.asarray(im.convert(mode).resize((size, size), Image.BILINEAR), dtype=np.uint8) for im in images]
    )
    files = [p for _, p in items]
    digest = hashlib.sha256()
    for f, s in _file_sums(files).items():
        digest.update(f"{Path(f).relative_to(folder)}\0{s}\n".encode())
    return Table(
        arrays,
        [c for c, _ in items],
        offset * 100 * 10_000_000 + np.arange(len(items)),
        {str(folder): digest.hexdigest()},
    )


def _read_hub(decl: Declaration, source: str) -> dict[str, Table]:
    """A save_to_disk folder or a hub dataset, through ``datasets``: split name -> table."""
    import datasets

    try:
        if source.startswith("hf:"):
            loaded = datasets.load_dataset(source[3:], decl.hf_config or None)
        else:
            loaded = datasets.load_from_disk(source)
    except Exception as e:  # any hub, network or format error becomes one clear message
        raise _fail(
            decl.name,
            f"{source} cannot be loaded ({type(e).__name__}: {' '.join(str(e).split())[:200]})",
            "check the name (online) or that it is in the local Hugging Face cache (offline), or save it "
            "with save_to_disk and point source at that folder",
        ) from None
    parts = loaded if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    out = {}
    for i, (split, ds) in enumerate(sorted(parts.items())):
        x, y = _from_frame(decl, ds.to_pandas(), f"{source} [{split}]")
        out[split] = Table(x, y, i * 10_000_000 + np.arange(len(y)), {f"{source}[{split}]": ds._fingerprint})
    return out


_READ: dict[Any, dict[str, Table]] = {}


def _stat(decl: Declaration) -> tuple:
    """What the files under a declaration look like now (path, size, mtime): a changed file reads again."""
    out = []
    for s in (decl.source, *(v for _, v in decl.splits), decl.ood_test):
        p = Path(s) if s and not s.startswith("hf:") else None
        if p is None or not p.exists():
            continue
        for f in [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()):
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(out)


def read_all(decl: Declaration, size: int) -> dict[str, Table]:
    """Every split the source gives: {"train": ...} plus "validation" / "test" / "test_ood" when given (read once
    per process while the files stay as they are)."""
    key = (decl, size, _stat(decl))
    if key not in _READ:
        _READ.clear()  # one dataset's arrays at a time: images can be large
        _READ[key] = _read_all(decl, size)
    return _READ[key]


def _read_all(decl: Declaration, size: int) -> dict[str, Table]:
    source = decl.source
    if (
        source.startswith("hf:")
        or (Path(source) / "dataset_dict.json").exists()
        or (Path(source) / "dataset_info.json").exists()
    ):
        found = _read_hub(decl, source)
        named = dict(decl.splits)
        out = {}
        for role, aliases in SPLIT_NAMES.items():
            hit = named.get(role) or next((a for a in aliases if a in found), None)
            if hit is not None:
                if hit not in found:
                    raise _fail(
                        decl.name,
                        f"{source} has no split {hit!r} (splits: {', '.join(found)})",
                        "name one of its splits",
                    )
                out[role] = found[hit]
        if "train" not in out:
            raise _fail(
                decl.name,
                f"{source} has no train split (splits: {', '.join(found)})",
                'declare splits = { train = "<its split>" }',
            )
    else:
        out = {}
        root = Path(source)
        given = dict(decl.splits)
        if not given and root.is_dir():
            for role, aliases in SPLIT_NAMES.items():  # train/ validation/ test/ above class folders
                hit = next((root / a for a in aliases if _is_image_folder(root / a)), None)
                if hit is not None:
                    given[role] = str(hit)
        if not given:
            given = {"train": source}
        for i, role in enumerate(("train", "validation", "test")):
            if role in given:
                out[role] = _read_one(decl, given[role], i, size)
    if decl.ood_test:
        out["test_ood"] = _read_one(decl, decl.ood_test, 3, size)
    return out


def _read_one(decl: Declaration, source: str, offset: int, size: int) -> Table:
    path = Path(source)
    if path.is_dir() and _is_image_folder(path):
        return _read_images(decl, path, offset, size)
    return _read_tables(decl, source, offset)


# ------------------------------------------------------------------------------------------------ the task
@dataclass(frozen=True)
class Facts:
    """What reading the data established: the task's shape and the data's identity."""

    modality: str
    kind: str
    label_names: tuple[str, ...]
    class_counts: tuple[int, ...]
    fingerprint: str
    files: tuple[tuple[str, str], ...]
    pool: int  # training pool size after the carving


def _norm(v: Any) -> str:
    """A label's canonical text: 1, 1.0 and "1" are one class."""
    return str(int(float(v))) if _is_number(v) and float(v).is_integer() else str(v)


def _labels(decl: Declaration, tables: dict[str, Table]) -> tuple[str, tuple[str, ...]]:
    every = [v for t in tables.values() for v in t.labels]
    numeric = all(_is_number(v) for v in every)
    values = [float(v) for v in every] if numeric else []
    integral = numeric and all(v.is_integer() for v in values)
    kind = decl.kind or (REGRESSION if numeric and (not integral or len(set(values)) > 20) else CLASSIFICATION)
    if kind == REGRESSION:
        if not numeric:
            bad = next(v for v in every if not _is_number(v))
            raise _fail(decl.name, f"kind is regression but label {bad!r} is not a number", "fix the label column")
        return kind, ()
    found = {_norm(v) for v in every}
    names = tuple(sorted(found, key=int) if integral else sorted(found))
    if not decl.label_names:
        return kind, names
    if found <= set(decl.label_names):
        return kind, decl.label_names
    if integral and all(0 <= int(v) < len(decl.label_names) for v in values):
        return kind, decl.label_names  # integers are positions in label_names
    raise _fail(
        decl.name,
        f"labels {sorted(found - set(decl.label_names))[:5]} are not in label_names {list(decl.label_names)}",
        "list every label, in class order",
    )


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _encode(kind: str, names: tuple[str, ...], labels: list[Any], decl: Declaration) -> np.ndarray:
    if kind == REGRESSION:
        return np.array([float(v) for v in labels], dtype=np.float32)
    index = {n: i for i, n in enumerate(names)}
    norms = [_norm(v) for v in labels]
    if all(n in index for n in norms):
        return np.array([index[n] for n in norms], dtype=np.int64)
    return np.array([int(n) for n in norms], dtype=np.int64)  # positions in label_names (checked in _labels)


def _default_metric(kind: str, counts: tuple[int, ...]) -> tuple[tuple[str, ...], str]:
    if kind == REGRESSION:
        return ("spearman", "pearson"), "spearman"
    if len(counts) == 2:
        minority = min(counts) / sum(counts)
        return ("auroc", "accuracy", "f1"), ("auroc" if minority < 0.4 else "accuracy")
    balanced = min(counts) / max(counts) >= 0.5
    return ("accuracy", "f1", "auroc"), ("accuracy" if balanced else "f1")


def _carve(decl: Declaration, train: Split, test: Split | None, val: Split | None, stratify: bool) -> Splits:
    pool = train
    if test is None:
        n_test = max(1, round(decl.test_fraction * len(pool)))
        held = np.sort(nested_subset(pool.labels, n_test, SPLIT_SEED, stratify=stratify))
        test = pool.take(held, name="test")
        test.pool = ""
        pool = pool.take(np.setdiff1d(np.arange(len(pool)), held))
    if val is None:
        n_val = max(1, min(MAX_VAL, len(pool) // 5))
        held = np.sort(nested_subset(pool.labels, n_val, SPLIT_SEED + 1, stratify=stratify))
        val = pool.take(held, name="val")
        val.pool = ""
        pool = pool.take(np.setdiff1d(np.arange(len(pool)), held))
    return Splits(pool, val, test)


@dataclass(frozen=True)
class DeclaredTask(Task):
    """Base of the classes built for declared datasets (one per declaration, see ``declare``)."""

    declaration: ClassVar[Declaration]
    facts: ClassVar[Facts]
    train_defaults: ClassVar[dict] = {"batch_size": 32, "epochs": 3, "min_steps": 60}

    def __reduce__(self):  # a cell's process rebuilds the class from the declaration (it is made at run time)
        return (_rebuild, (self.declaration.as_dict(), dataclasses.asdict(self.facts), dataclasses.asdict(self)))

    def files(self) -> tuple[str, ...]:
        return ()  # the user's files are outside the data root; they are checked by their fingerprint

    def load(self, data: DataRoot) -> Splits:
        decl, facts = self.declaration, self.facts
        size = getattr(self, "image_size", decl.image_size)
        tables = read_all(decl, size)
        fingerprint = _fingerprint(tables)
        if fingerprint != facts.fingerprint:
            raise _fail(
                decl.name,
                "its files changed while this run was being prepared (content fingerprint "
                f"{fingerprint[:12]} is not {facts.fingerprint[:12]})",
                "rerun",
            )
        return _splits(decl, facts, tables)

    def data_info(self) -> dict[str, Any]:
        return {
            "declared": self.declaration.as_dict(),
            "fingerprint": self.facts.fingerprint,
            "files": dict(self.facts.files),
            "label_names": list(self.facts.label_names),
            "class_counts": list(self.facts.class_counts),
            "test_ids_sha256": _test_ids(self.declaration, self.facts),
            "spec": spec_dict(self.spec),
        }

    def preflight(self, budget: int) -> None:
        if budget > self.facts.pool:
            raise _fail(
                self.declaration.name,
                f"budget {budget} is more than its {self.facts.pool}-example "
                "training pool (after the test and validation splits)",
                f"use budgets up to {self.facts.pool}, or 0 for the whole pool",
            )


@cache
def _test_ids(decl: Declaration, facts: Facts) -> str:
    splits = _splits(decl, facts, read_all(decl, decl.image_size))
    return hashlib.sha256(np.sort(splits.test.ids).astype(np.int64).tobytes()).hexdigest()


def _fingerprint(tables: dict[str, Table]) -> str:
    h = hashlib.sha256()
    for role in sorted(tables):
        for f, s in sorted(tables[role].files.items()):
            h.update(f"{role}\0{Path(f).name}\0{s}\n".encode())
    return h.hexdigest()


def _splits(decl: Declaration, facts: Facts, tables: dict[str, Table]) -> Splits:
    def split(role: str, name: str) -> Split | None:
        t = tables.get(role)
        if t is None:
            return None
        return Split(name, t.inputs, _encode(facts.kind, facts.label_names, t.labels, decl), t.ids)

    stratify = facts.kind == CLASSIFICATION
    out = _carve(decl, split("train", "train"), split("test", "test"), split("validation", "val"), stratify)
    ood = split("test_ood", "test_ood")
    return Splits(out.train, out.val, out.test, ood)


def spec_dict(spec: TaskSpec) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def spec_from_dict(d: dict[str, Any]) -> TaskSpec:
    """A TaskSpec from its recorded form (``data_info()["spec"]``): reports read records of declared datasets whose
    declaration this process never saw."""
    d = dict(d)
    prompt = d.pop("prompt", None)
    if prompt:
        variants = tuple(
            PromptSpec(tuple(v["label_words"]), v["instruction"], v["input_template"])
            for v in prompt.get("variants", ())
        )
        prompt = PromptSpec(tuple(prompt["label_words"]), prompt["instruction"], prompt["input_template"], variants)
    for k in ("metrics", "budgets"):
        d[k] = tuple(d[k])
    return TaskSpec(**d, prompt=prompt)


def _rebuild(declaration: dict, facts: dict, fields: dict) -> DeclaredTask:
    decl = Declaration.from_dict(declaration)
    facts = dict(facts)
    for k in ("label_names", "class_counts"):
        facts[k] = tuple(facts[k])
    facts["files"] = tuple(tuple(x) for x in facts["files"])
    cls = DECLARED.get(decl.name)
    if cls is None:
        cls = _make_class(decl, Facts(**facts))
        if decl.name not in TASKS:
            TASKS.register(decl.name)(cls)
    return cls(**fields)


def inspect(decl: Declaration) -> Facts:
    """Read the data once and establish the task's facts; every data problem is a DataError here."""
    tables = read_all(decl, decl.image_size)
    modality = VISION if isinstance(tables["train"].inputs, np.ndarray) else TEXT
    kind, names = _labels(decl, tables)
    facts = Facts(
        modality,
        kind,
        names,
        (),
        _fingerprint(tables),
        tuple(sorted((f, s) for t in tables.values() for f, s in t.files.items())),
        0,
    )
    train = _encode(kind, names, tables["train"].labels, decl)
    if kind == CLASSIFICATION:
        counts = tuple(int(c) for c in np.bincount(train, minlength=len(names)))
        if len(names) < 2:
            raise _fail(
                decl.name,
                f"every training example has the label {names[0]!r}",
                "a classifier needs two or more classes; check the label column",
            )
        lonely = [f"{n!r} ({c})" for n, c in zip(names, counts, strict=True) if c < 2]
        if lonely:
            raise _fail(
                decl.name,
                f"label{'s' if len(lonely) > 1 else ''} {', '.join(lonely[:5])} "
                f"{'have' if len(lonely) > 1 else 'has'} fewer than two training examples, too few to "
                "appear in both training and test",
                "add examples of it, merge it into another label, or remove its rows",
            )
    else:
        counts = ()
    facts = dataclasses.replace(facts, class_counts=counts)
    splits = _splits(decl, facts, tables)
    return dataclasses.replace(facts, pool=len(splits.train))


def _make_class(decl: Declaration, facts: Facts) -> type[DeclaredTask]:
    metrics, primary = _default_metric(facts.kind, facts.class_counts)
    if decl.metric:
        if decl.metric not in metrics:
            raise ValueError(
                f"dataset {decl.name}: metric {decl.metric!r} does not fit a {facts.kind} task "
                f"(use one of {', '.join(metrics)})"
            )
        primary = decl.metric
        metrics = (primary, *(m for m in metrics if m != primary))
    prompt = None
    words = decl.label_words or (facts.label_names if not all(_is_number(n) for n in facts.label_names) else ())
    if facts.modality == TEXT and facts.kind == CLASSIFICATION and words:
        if len(words) != len(facts.label_names):
            raise ValueError(f"dataset {decl.name}: {len(words)} label_words for {len(facts.label_names)} labels")
        pair = len(decl.text) == 2
        prompt = PromptSpec(
            tuple(w.lower() for w in words),
            decl.instruction or f"Classify the text as {', '.join(w.lower() for w in words)}.",
            "First: {text_a}\nSecond: {text_b}\nAnswer:" if pair else "Text: {text}\nAnswer:",
        )
    pool = facts.pool
    budgets = decl.budgets or tuple(b for b in (64, 256, 1024) if b <= pool) or (pool,)
    what = f"{facts.kind}, {len(facts.label_names)} classes" if facts.label_names else facts.kind
    spec = TaskSpec(
        name=decl.name,
        version=VERSION,
        modality=facts.modality,
        kind=facts.kind,
        num_labels=len(facts.label_names) if facts.kind == CLASSIFICATION else 1,
        metrics=metrics,
        primary_metric=primary,
        backbone=decl.backbone or ("efficientnet-lite0" if facts.modality == VISION else "minilm-l6"),
        budgets=tuple(budgets),
        description=decl.description or f"declared dataset {decl.name} ({what}; {Path(decl.source).name})",
        official_splits=bool(decl.splits),
        prompt=prompt,
    )
    digest = hashlib.sha256(
        json.dumps([decl.as_dict() | {"source": "", "description": ""}, facts.fingerprint], sort_keys=True).encode()
    ).hexdigest()[:12]
    size_field = ("image_size", int, decl.image_size) if facts.modality == VISION else ("max_len", int, decl.max_len)

    def post_init(self) -> None:
        if self.dataset != digest:
            raise ValueError(f"dataset {decl.name}: 'dataset' names the data's content and is not a setting")
        if self.spec.modality == VISION and not 16 <= self.image_size <= 512:
            raise ValueError(f"Invalid image_size: {self.image_size} (use 16..512)")
        if self.spec.modality == TEXT and not 8 <= self.max_len <= 512:
            raise ValueError(f"Invalid max_len: {self.max_len} (tokens, 8..512)")

    cls = dataclasses.make_dataclass(
        "Declared_" + decl.name.replace("-", "_"),
        [size_field, ("dataset", str, digest)],
        bases=(DeclaredTask,),
        frozen=True,
        namespace={
            "spec": spec,
            "declaration": decl,
            "facts": facts,
            "__post_init__": post_init,
            "__module__": __name__,
        },
    )
    DECLARED[decl.name] = cls
    globals()[cls.__name__] = cls  # found by name in this module (instances travel by ``__reduce__``)
    return cls


def declare(decl: Declaration) -> str:
    """Read a declared dataset, check it, and register it as a task; returns its name. The same declaration twice is
    one task; another declaration under a name already declared in this process is refused."""
    known = DECLARED.get(decl.name)
    if known is not None:
        if known.declaration != decl:
            raise ValueError(
                f"dataset {decl.name} is declared twice, differently ({known.declaration.source} and "
                f"{decl.source}); give each its own name"
            )
        return decl.name
    cls = _make_class(decl, inspect(decl))
    TASKS.register(decl.name)(cls)
    return decl.name


def load_declaration(path: Path) -> Declaration:
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"dataset declaration {path} cannot be read: {e}") from None
    return Declaration.parse(table, path.parent, f"dataset declaration {path}")


def from_path(path: Path) -> Declaration:
    """A data file or folder named directly (``--task reviews.csv``): its columns are guessed (text / sentence /
    review(s), label / labels); a declaration names them when the guess fails."""
    columns = {"label": "label"}
    if path.is_file() and path.suffix.lower() in TABLES:
        frame = _read_frame(Declaration(name=_slug(path.stem), source=str(path)), path)
        cols = [str(c) for c in frame.columns]
        label = next((c for c in ("label", "labels", "target", "class", "y") if c in cols), None)
        if label is None:
            raise _fail(
                _slug(path.stem),
                f"{path} has no column named label/labels/target/class (columns: {', '.join(cols)})",
                "write a declaration naming it (see README 'Your own data'): "
                f"name = ..., source = '{path}', text = ..., label = ...",
            )
        columns["label"] = label
    return Declaration.parse({"name": _slug(path.stem), "source": str(path), **columns}, Path.cwd(), str(path))


def _slug(stem: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]+", "-", stem.lower())).strip("-") or "dataset"


def task_name(text: str, base: Path | None = None) -> str | None:
    """The task a ``--task`` value or a suite's task entry names when it is not a registered name: a declaration
    file (``.toml``), a data file or folder, or a bare name with ``<base>/datasets/<name>.toml`` or
    ``./datasets/<name>.toml`` beside it. None when it is none of these."""
    if text in DECLARED:
        return text
    candidates = [Path(text).expanduser()]
    if base is not None and not Path(text).is_absolute():
        candidates.insert(0, base / text)
    for p in candidates:
        if p.suffix == ".toml" and p.is_file():
            return declare(load_declaration(p))
        if p.exists() and (p.suffix.lower() in TABLES or p.is_dir()):
            return declare(from_path(p.resolve()))
    for folder in [*([base / "datasets"] if base else []), Path.cwd() / "datasets"]:
        f = folder / f"{text}.toml"
        if NAME.match(text) and f.is_file():
            return declare(load_declaration(f))
    return None
