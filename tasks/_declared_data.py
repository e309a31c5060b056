"""Declared datasets, the data half: what a declaration says (``Declaration``) and how its files are read (pandas for
tables, Pillow for image folders, ``datasets`` for save_to_disk folders and the hub), with every problem a
``DataError`` that names it and the fix. ``tasks/declared.py`` turns what is read into a task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.core.api import CLASSIFICATION, REGRESSION
from bench.core.data import DataError, sha256

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

    def toml(self) -> str:
        """The declaration as a TOML file says it (its paths absolute; values at their default left out)."""
        lines = []
        for k, v in self.as_dict().items():
            if k == "splits":
                if v:
                    lines.append("splits = { " + ", ".join(f"{a} = {json.dumps(b)}" for a, b in v) + " }")
            elif v not in ("", [], None):
                lines.append(f"{k} = {json.dumps(v)}")
        return "\n".join(lines) + "\n"

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
