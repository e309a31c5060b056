"""GLUE (Wang et al. 2019), read from the standard ``download_glue_data.py`` layout (``nlp/glue/<TASK>/*.tsv``).

GLUE test labels are not public, so the official dev set serves as test; validation is carved from train with a
fixed seed (the same for every cell), and every budget subset is drawn from the rest, so val is disjoint from
every training subset. Online, missing files are rebuilt in the same layout from the GLUE dataset on the
Hugging Face hub (nyu-mll/glue).
Version history: 1 - first version (glue-sst2).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench.api import CLASSIFICATION, TEXT, Split, Splits, Task, TaskSpec
from bench.data import DataRoot, register_source
from bench.registry import TASKS

VAL_SEED = 20231  # fixed: val never depends on the cell's seed or budget


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _hub_fetch(config: str, split: str, columns: tuple[str, ...]):
    def fetch(path: Path) -> None:
        import datasets

        rows = datasets.load_dataset("nyu-mll/glue", config, split=split)
        with path.open("w", encoding="utf-8", newline="") as f:
            f.write("\t".join(columns) + "\n")
            for row in rows:
                f.write("\t".join(str(row[c]) for c in columns) + "\n")

    return fetch


@dataclass(frozen=True)
class GlueTask(Task):
    folder: ClassVar[str]
    text_columns: ClassVar[tuple[str, ...]]
    label_words: ClassVar[tuple[str, ...]] = ()  # for prompting methods: label i is scored as this word
    instruction: ClassVar[str] = ""
    input_template: ClassVar[str] = ""  # "{text}" (single sentences) or "{text_a}" / "{text_b}" (pairs)
    val_size: ClassVar[int] = 500  # carved from train; 500 keeps each validation pass cheap on a CPU
    train_defaults: ClassVar[dict] = {"batch_size": 32, "epochs": 3, "min_steps": 60}

    max_len: int = 64

    def __post_init__(self) -> None:
        if not 8 <= self.max_len <= 512:
            raise ValueError(f"Invalid max_len: {self.max_len} (tokens, 8..512)")

    def _split(self, data: DataRoot, file: str, name: str, id_offset: int) -> Split:
        rows = read_tsv(data.file(f"nlp/glue/{self.folder}/{file}.tsv"))
        if len(self.text_columns) == 1:
            inputs = [r[self.text_columns[0]] for r in rows]
        else:
            inputs = [tuple(r[c] for c in self.text_columns) for r in rows]
        labels = np.array([int(r["label"]) for r in rows], dtype=np.int64)
        return Split(name, inputs, labels, id_offset + np.arange(len(rows)))

    def load(self, data: DataRoot) -> Splits:
        train = self._split(data, "train", "train", 0)
        test = self._split(data, "dev", "test", 10_000_000)
        order = np.random.default_rng(VAL_SEED).permutation(len(train))
        val = train.take(np.sort(order[: self.val_size]))
        val.name = "val"
        pool = train.take(np.sort(order[self.val_size :]))
        return Splits(pool, val, test)


def glue_task(
    name: str,
    folder: str,
    config: str,
    text_columns: tuple[str, ...],
    num_labels: int,
    metrics: tuple[str, ...],
    budgets: tuple[int, ...],
    description: str,
    prompt: dict | None = None,
):
    spec = TaskSpec(
        name=name,
        version=1,
        modality=TEXT,
        kind=CLASSIFICATION,
        num_labels=num_labels,
        metrics=metrics,
        primary_metric=metrics[0],
        backbone="minilm-l6",
        budgets=budgets,
        description=description,
    )
    attrs = {"spec": spec, "folder": folder, "text_columns": text_columns, **(prompt or {})}
    cls = dataclass(frozen=True)(type(folder.replace("-", ""), (GlueTask,), attrs))
    for file, split in (("train", "train"), ("dev", "validation")):
        register_source(
            f"nlp/glue/{folder}/{file}.tsv",
            _hub_fetch(config, split, (*text_columns, "label")),
            f"GLUE {config} {split} from the Hugging Face hub dataset nyu-mll/glue",
        )
    return TASKS.register(name)(cls)


SST2 = glue_task(
    "glue-sst2",
    "SST-2",
    "sst2",
    ("sentence",),
    2,
    ("accuracy",),
    (64, 256, 1024),
    "SST-2 binary sentiment (movie review phrases); GLUE dev (872) is the test set",
    prompt={
        "label_words": ("negative", "positive"),
        "instruction": "Classify the sentiment of each movie review as positive or negative.",
        "input_template": "Review: {text}\nSentiment:",
    },
)
