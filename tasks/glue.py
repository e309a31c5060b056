"""GLUE (Wang et al. 2019), read from the standard ``download_glue_data.py`` layout (``nlp/glue/<TASK>/*.tsv``).

GLUE test labels are not public, so the official dev set serves as test; validation is carved from train with a
fixed seed (the same for every cell: 500 examples, or a fifth of train when that is smaller), and every budget
subset is drawn from the rest, so val is disjoint from every training subset. Sentence pairs are encoded as pairs
(one sequence with a separator). STS-B is regression (a scalar head, MSE; Pearson and Spearman).

Offline, the mirror holds CoLA, SST-2, MRPC, RTE, STS-B and WNLI (train and dev) and QNLI's dev set only:
``glue-qnli`` therefore splits the dev set into disjoint train/val/test by default (``split="dev-only"``, recorded
as unofficial); ``split="official"`` uses the real train set where it can be downloaded. MNLI and QQP are online
only. Missing files are rebuilt from the GLUE dataset on the Hugging Face hub (nyu-mll/glue) in the same layout and
column names as the mirror, so one reader serves both.
Version history: 1 - first version.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench.core.api import CLASSIFICATION, REGRESSION, TEXT, PromptSpec, Split, Splits, Task, TaskSpec
from bench.core.data import DataRoot, register_source
from bench.core.registry import TASKS

VAL_SEED = 20231  # fixed: val never depends on the cell's seed or budget
MAX_VAL = 500  # carved from train; 500 keeps each validation pass cheap on a CPU


def read_tsv(path: Path, fieldnames: tuple[str, ...] | None = None) -> list[dict[str, str]]:
    # utf-8-sig: MRPC's header starts with a byte-order mark; QUOTE_NONE: GLUE text holds bare quotes
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, fieldnames=fieldnames, delimiter="\t", quoting=csv.QUOTE_NONE))
    return rows


@dataclass(frozen=True)
class Layout:
    """Where one GLUE task's data sits in its folder, and how the hub's version maps onto it."""

    folder: str
    config: str  # nyu-mll/glue config name
    text_columns: tuple[str, ...]  # as named in the mirror's files
    label_column: str
    hub_columns: tuple[str, ...]  # the same texts as named on the hub
    label_names: tuple[str, ...] = ()  # labels stored as strings, in class order (RTE, QNLI, MNLI)
    header: tuple[str, ...] = ()  # for files without a header row (CoLA): the column names
    test_file: str = "dev"
    hub_test_split: str = "validation"

    def fetcher(self, split: str):
        def fetch(path: Path) -> None:
            import datasets

            rows = datasets.load_dataset("nyu-mll/glue", self.config, split=split)
            with path.open("w", encoding="utf-8", newline="") as f:
                if not self.header:
                    f.write("\t".join((*self.text_columns, self.label_column)) + "\n")
                for row in rows:
                    label = self.label_names[row["label"]] if self.label_names else row["label"]
                    values = {**{c: row[h] for c, h in zip(self.text_columns, self.hub_columns, strict=True)}}
                    values[self.label_column] = label
                    columns = self.header or (*self.text_columns, self.label_column)
                    f.write("\t".join(str(values.get(c, "")).replace("\t", " ") for c in columns) + "\n")

        return fetch

    def register_sources(self) -> None:
        for file, split in (("train", "train"), (self.test_file, self.hub_test_split)):
            register_source(
                f"nlp/glue/{self.folder}/{file}.tsv",
                self.fetcher(split),
                f"GLUE {self.config} {split} from the Hugging Face hub dataset nyu-mll/glue",
            )


@dataclass(frozen=True)
class GlueTask(Task):
    layout: ClassVar[Layout]
    train_defaults: ClassVar[dict] = {"batch_size": 32, "epochs": 3, "min_steps": 60}

    max_len: int = 64

    def __post_init__(self) -> None:
        if not 8 <= self.max_len <= 512:
            raise ValueError(f"Invalid max_len: {self.max_len} (tokens, 8..512)")

    def files(self) -> tuple[str, ...]:
        return tuple(f"nlp/glue/{self.layout.folder}/{f}.tsv" for f in ("train", self.layout.test_file))

    def read(self, data: DataRoot, file: str, name: str, id_offset: int) -> Split:
        lay = self.layout
        path = data.file(f"nlp/glue/{lay.folder}/{file}.tsv")
        rows = read_tsv(path, lay.header or None)
        try:
            texts = [tuple(r[c] for c in lay.text_columns) for r in rows]
            raw = [r[lay.label_column] for r in rows]
        except KeyError as e:
            raise ValueError(f"{path}: no column {e} (columns: {list(rows[0]) if rows else []})") from None
        inputs = [t[0] for t in texts] if len(lay.text_columns) == 1 else texts
        if self.spec.kind == REGRESSION:
            labels = np.array([float(v) for v in raw], dtype=np.float32)
        elif lay.label_names:
            unknown = sorted(set(raw) - set(lay.label_names))
            if unknown:
                raise ValueError(f"{path}: unknown labels {unknown[:5]} (expected {lay.label_names})")
            labels = np.array([lay.label_names.index(v) for v in raw], dtype=np.int64)
        else:
            labels = np.array([int(v) for v in raw], dtype=np.int64)
        return Split(name, inputs, labels, id_offset + np.arange(len(rows)))

    def load(self, data: DataRoot) -> Splits:
        train = self.read(data, "train", "train", 0)
        test = self.read(data, self.layout.test_file, "test", 10_000_000)
        return carve(train, test, min(MAX_VAL, len(train) // 5))


def carve(pool: Split, test: Split, val_size: int) -> Splits:
    """(train pool, val, test): val is the first ``val_size`` of a fixed-seed permutation of the pool."""
    order = np.random.default_rng(VAL_SEED).permutation(len(pool))
    val = pool.take(np.sort(order[:val_size]))
    val.name = "val"
    return Splits(pool.take(np.sort(order[val_size:])), val, test)


@dataclass(frozen=True)
class QnliTask(GlueTask):
    """QNLI: offline only its dev set exists, so by default that set is split three ways (unofficial)."""

    split: str = "dev-only"
    dev_only_sizes: ClassVar[tuple[int, int]] = (1000, 500)  # (test, val) carved from dev; the rest is the pool

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split not in ("dev-only", "official"):
            raise ValueError(
                f"Invalid split: {self.split!r} (use 'dev-only' (offline) or 'official' (downloads train))"
            )

    @property
    def official_splits(self) -> bool:
        return self.split == "official"

    def files(self) -> tuple[str, ...]:
        return super().files() if self.split == "official" else ("nlp/glue/QNLI/dev.tsv",)

    def load(self, data: DataRoot) -> Splits:
        if self.split == "official":
            return super().load(data)
        dev = self.read(data, "dev", "dev", 10_000_000)
        n_test, n_val = self.dev_only_sizes
        order = np.random.default_rng(VAL_SEED + 1).permutation(len(dev))
        test, rest = dev.take(np.sort(order[:n_test])), dev.take(np.sort(order[n_test:]))
        test.name, rest.name = "test", "train"
        return carve(rest, test, n_val)


def glue_task(
    name: str,
    layout: Layout,
    num_labels: int,
    metrics: tuple[str, ...],
    budgets: tuple[int, ...],
    description: str,
    prompt: dict | None = None,
    base: type = GlueTask,
    kind: str = CLASSIFICATION,
    official: bool = True,
):
    spec = TaskSpec(
        name=name,
        version=1,
        modality=TEXT,
        kind=kind,
        num_labels=num_labels,
        metrics=metrics,
        primary_metric=metrics[0],
        backbone="minilm-l6",
        budgets=budgets,
        description=description,
        official_splits=official,
        prompt=PromptSpec(**prompt) if prompt else None,
    )
    attrs = {"spec": spec, "layout": layout}
    cls = dataclass(frozen=True)(type(layout.folder.replace("-", ""), (base,), attrs))
    layout.register_sources()
    return TASKS.register(name)(cls)


PAIR = "First: {text_a}\nSecond: {text_b}\nAnswer:"
BUDGETS = (64, 256, 1024)

# other phrasings of a sentiment prompt (the draws of zeroshot and fewshot; bench.core.api.PromptSpec)
SENTIMENT_VARIANTS = (
    PromptSpec(
        ("negative", "positive"), "Is the sentiment of each review positive or negative?", "Text: {text}\nAnswer:"
    ),
    PromptSpec(("bad", "good"), "Say whether each movie review is good or bad.", "Review: {text}\nVerdict:"),
    PromptSpec(("no", "yes"), "Did the reviewer like the movie? Answer yes or no.", "Review: {text}\nLiked:"),
    PromptSpec(("Negative", "Positive"), "Sentiment classification.", "{text}\nSentiment:"),
    # five more (issue 21): a second replicate draws its phrasings from these, so two replicates share no prompt
    PromptSpec(("negative", "positive"), "What is the tone of this film review?", "Film review: {text}\nTone:"),
    PromptSpec(("terrible", "great"), "Rate each movie review as great or terrible.", "{text}\nRating:"),
    PromptSpec(("no", "yes"), "Would this reviewer recommend the film? Answer yes or no.", "{text}\nRecommend:"),
    PromptSpec(("sad", "happy"), "Does each sentence sound happy or sad?", "Sentence: {text}\nMood:"),
    PromptSpec(("negative", "positive"), "Label the opinion expressed.", "Opinion: {text}\nLabel:"),
)

glue_task(
    "glue-sst2",
    Layout("SST-2", "sst2", ("sentence",), "label", ("sentence",)),
    2,
    ("accuracy",),
    BUDGETS,
    "SST-2 binary sentiment (movie review phrases); GLUE dev (872) is the test set",
    prompt={
        "label_words": ("negative", "positive"),
        "instruction": "Classify the sentiment of each movie review as positive or negative.",
        "input_template": "Review: {text}\nSentiment:",
        "variants": SENTIMENT_VARIANTS,
    },
)
glue_task(
    "glue-cola",
    Layout("CoLA", "cola", ("sentence",), "label", ("sentence",), header=("source", "label", "mark", "sentence")),
    2,
    ("mcc", "accuracy"),
    BUDGETS,
    "CoLA grammatical acceptability (Matthews correlation); GLUE dev (1043) is the test set",
    prompt={
        "label_words": ("no", "yes"),
        "instruction": "Is each sentence grammatically acceptable English? Answer yes or no.",
        "input_template": "Sentence: {text}\nAcceptable:",
    },
)
glue_task(
    "glue-mrpc",
    Layout("MRPC", "mrpc", ("#1 String", "#2 String"), "Quality", ("sentence1", "sentence2")),
    2,
    ("f1", "accuracy"),
    BUDGETS,
    "MRPC paraphrase pairs (F1 of the paraphrase class, accuracy); GLUE dev (408) is the test set",
    prompt={
        "label_words": ("no", "yes"),
        "instruction": "Do the two sentences mean the same thing? Answer yes or no.",
        "input_template": PAIR,
    },
)
glue_task(
    "glue-rte",
    Layout(
        "RTE", "rte", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2"), ("entailment", "not_entailment")
    ),
    2,
    ("accuracy",),
    BUDGETS,
    "RTE textual entailment pairs (0 = entailment); GLUE dev (277) is the test set",
    prompt={
        "label_words": ("yes", "no"),
        "instruction": "Does the first sentence imply the second? Answer yes or no.",
        "input_template": PAIR,
    },
)
glue_task(
    "glue-stsb",
    Layout("STS-B", "stsb", ("sentence1", "sentence2"), "score", ("sentence1", "sentence2")),
    1,
    ("pearson", "spearman"),
    BUDGETS,
    "STS-B sentence similarity 0-5, regression (Pearson, Spearman); GLUE dev (1500) is the test set",
    kind=REGRESSION,
)
glue_task(
    "glue-wnli",
    Layout("WNLI", "wnli", ("sentence1", "sentence2"), "label", ("sentence1", "sentence2")),
    2,
    ("accuracy",),
    (32, 128, 256),
    "WNLI pronoun-resolution entailment (1 = entailment; adversarial: dev majority class is 56%); dev (71) is test",
    prompt={
        "label_words": ("no", "yes"),
        "instruction": "Does the first sentence imply the second? Answer yes or no.",
        "input_template": PAIR,
    },
)
glue_task(
    "glue-qnli",
    Layout(
        "QNLI", "qnli", ("question", "sentence"), "label", ("question", "sentence"), ("entailment", "not_entailment")
    ),
    2,
    ("accuracy",),
    BUDGETS,
    "QNLI question/answer-sentence entailment (0 = entailment); default split='dev-only': the 5463 dev pairs "
    "split into test 1000 / val 500 / pool 3963 (unofficial)",
    prompt={
        "label_words": ("yes", "no"),
        "instruction": "Does the sentence answer the question? Answer yes or no.",
        "input_template": "Question: {text_a}\nSentence: {text_b}\nAnswer:",
    },
    base=QnliTask,
    official=False,
)
glue_task(
    "glue-mnli",
    Layout(
        "MNLI",
        "mnli",
        ("sentence1", "sentence2"),
        "gold_label",
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        test_file="dev_matched",
        hub_test_split="validation_matched",
    ),
    3,
    ("accuracy",),
    BUDGETS,
    "MNLI 3-way entailment; dev-matched (9815) is the test set; online only (not in the offline mirror)",
    prompt={
        "label_words": ("yes", "maybe", "no"),
        "instruction": "Does the first sentence imply the second? Answer yes, maybe or no.",
        "input_template": PAIR,
    },
)
glue_task(
    "glue-qqp",
    Layout("QQP", "qqp", ("question1", "question2"), "is_duplicate", ("question1", "question2")),
    2,
    ("accuracy", "f1"),
    BUDGETS,
    "QQP duplicate-question pairs (accuracy, F1); GLUE dev (40430) is the test set; online only",
    prompt={
        "label_words": ("no", "yes"),
        "instruction": "Do the two questions ask the same thing? Answer yes or no.",
        "input_template": "First: {text_a}\nSecond: {text_b}\nDuplicate:",
    },
)
