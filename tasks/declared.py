"""Declared datasets: a user's own data as a task, with no code (``--task my-data.toml``, ``--task reviews.csv``).

A declaration is a small TOML file (`datasets/<name>.toml` beside a suite or in the working folder, or any path) naming
the data and how to read it::

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
from bench.core.data import DataRoot, nested_subset
from bench.core.registry import TASKS
from tasks._declared_data import _READ, NAME, TABLES, Declaration, Table, _fail, _read_frame, read_all

VERSION = 1
SPLIT_SEED = 4242  # fixed: carved test and validation never depend on the cell's seed or budget
MAX_VAL = 500
DECLARED: dict[str, type[DeclaredTask]] = {}  # name -> class, for this process
__all__ = ["_READ", "Declaration", "declare", "task_name"]


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
    given: tuple[str, ...] = ()  # the splits the data gave itself ("validation", "test"); the rest were carved


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
    for k in ("label_names", "class_counts", "given"):
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
    facts = dataclasses.replace(
        facts, class_counts=counts, given=tuple(r for r in ("validation", "test") if r in tables)
    )
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
        official_splits="test" in facts.given,  # the data's own test split (else carved here)
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
    if decl.name in TASKS and decl.name not in DECLARED:
        raise ValueError(f"dataset {decl.name}: the name of a built-in task; give your dataset a name of its own")
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


def declare_recorded(declaration: dict[str, Any]) -> str:
    """Declare a dataset from the declaration a record carries (``data_info()["declared"]``; its files must still be
    where it says)."""
    return declare(Declaration.from_dict(declaration))


def forget_all() -> None:
    """Undeclare every dataset of this process (tests declare theirs afresh)."""
    for name in list(DECLARED):
        DECLARED.pop(name)
        TASKS._entries.pop(name, None)
    _READ.clear()


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
