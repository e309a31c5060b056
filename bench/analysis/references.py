"""Published anchors: hold cells trained on a task's whole training set against published test scores
(``bench/published/*.toml``, each file cited), and say whether the published value is reproduced, within a band,
or not, and how the setups differ.

A reference names a task, a model, its setup (backbone, pretrained or not, image size, epochs, batch size, how the
checkpoint was chosen), its scores and a band per metric. Matching cells are the ok records of that task trained on
the whole training set (budget 0); they are grouped by method, backbone and image size, and their seeds give a
mean with a 95% t-interval (``bench.analysis.stats.seed_summary``). Verdicts:
- ``reproduced``: the published value lies inside the interval over seeds (needs >= 2 seeds);
- ``within band``: the mean is no further than the reference's band from it;
- ``above`` / ``below``: further than the band.
Differences in setup are listed next to each verdict, because a benchmark that only prints "not reproduced" leaves
the reader to guess whether the pipeline or the setup is to blame.

**Standard errors on both sides** (a reference that gives its test set's class counts, ``test = { counts = [..] }``).
A published score is one training run on a finite test set: it has a sampling error too. Each side's standard error
is the test set's (accuracy: binomial, sqrt(p(1-p)/n); binary AUROC: Hanley and McNeil, 1982, from the class counts)
plus the seed-to-seed variance (ours: our seeds' variance over their number; theirs, one run: our seeds' variance
once, the best estimate of a run's spread there is). The verdict is then ``reproduced`` when the difference is within
1.96 combined standard errors, else ``above`` / ``below`` by that many. Both sides score the same official test set,
so the item noise they share makes this conservative: a reproduction that fails it misses by more than chance.
Cells on another backbone or initialisation are shown against the reference too, labelled as a different model
(a comparison, not a reproduction).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import catalog
from bench.analysis.stats import Interval, seed_summary
from bench.core.record import TEST, Record, metric_key

PUBLISHED_DIR = Path(__file__).resolve().parents[1] / "published"
SETUP_KEYS = ("backbone", "pretrained", "image_size", "epochs", "batch_size", "selection")


@dataclass(frozen=True)
class Reference:
    task: str
    model: str
    citation: str
    setup: dict[str, Any]
    scores: dict[str, float]
    band: dict[str, float]
    test_counts: tuple[int, ...] = ()  # the official test set's examples per class (standard errors)


@dataclass(frozen=True)
class Comparison:
    reference: Reference
    method: str
    backbone: str
    image_size: int | None
    metric: str
    ours: Interval
    verdict: str  # "reproduced", "within band", "above", "below", "no score"
    differences: tuple[str, ...]
    se_ours: float = math.nan  # our mean's standard error (test set + seeds); NaN: the reference gives no counts
    se_published: float = math.nan  # the published score's (test set + one run's seed spread)

    @property
    def other_model(self) -> bool:
        """Another architecture or initialisation than the reference's: a comparison, not a reproduction."""
        return any(d.startswith(("backbone", "initialisation")) for d in self.differences)

    @property
    def z(self) -> float:
        """The difference in combined standard errors (NaN without them)."""
        se = math.hypot(self.se_ours, self.se_published)
        return (self.ours.mean - self.reference.scores[self.metric]) / se if se > 0 else math.nan

    def describe(self) -> str:
        ref = self.reference
        published = ref.scores[self.metric]
        diff = self.ours.mean - published
        size = f" @{self.image_size}px" if self.image_size else ""
        if math.isnan(self.se_ours):
            head = (
                f"{ref.task} {self.metric}: {self.method} ({self.backbone}{size}) {self.ours.describe()} over "
                f"{self.ours.n} seed(s) vs {ref.model} {published:.3f} ({diff:+.3f}): {self.verdict}"
            )
            if self.verdict in ("above", "below"):
                head += f" (band ±{ref.band.get(self.metric, 0):.3f})"
        else:
            head = (
                f"{ref.task} {self.metric}: {self.method} ({self.backbone}{size}) {self.ours.mean:.3f} ± "
                f"{self.se_ours:.3f} over {self.ours.n} seed(s) vs {ref.model} {published:.3f} ± "
                f"{self.se_published:.3f} ({diff:+.3f} = {self.z:+.1f} combined SE): {self.verdict}"
            )
        if self.other_model:
            head += " [a different model: a comparison, not a reproduction]"
        return head + ("; differs in " + "; ".join(self.differences) if self.differences else "; same setup")


def load_references(folder: Path = PUBLISHED_DIR) -> list[Reference]:
    """Every ``[[reference]]`` of every TOML file in ``folder``; a malformed entry names its file and position."""
    refs = []
    for path in sorted(folder.glob("*.toml")):
        data = tomllib.loads(path.read_text())
        citation = data.get("citation")
        if not citation:
            raise ValueError(f"{path}: a reference file needs citation = '<authors, title, venue, table>'")
        for i, entry in enumerate(data.get("reference", [])):
            where = f"{path.name}, reference {i + 1}"
            missing = {"task", "model", "setup", "scores", "band"} - set(entry)
            if missing:
                raise ValueError(f"{where}: missing {', '.join(sorted(missing))}")
            if set(entry["scores"]) - set(entry["band"]):
                raise ValueError(
                    f"{where}: every score needs a band (missing for {set(entry['scores']) - set(entry['band'])})"
                )
            counts = tuple(int(n) for n in entry.get("test", {}).get("counts", ()))
            refs.append(
                Reference(
                    entry["task"], entry["model"], citation, entry["setup"], entry["scores"], entry["band"], counts
                )
            )
    return refs


def our_setup(record: Record) -> dict[str, Any]:
    """The same keys as a reference's setup, read from a record."""
    train = record.hparams.get("train", {})
    probe = (record.method_notes or {}).get("probe") == "lbfgs"  # frozen's head: L-BFGS iterations, not epochs
    epochs = record.cost.epochs if record.cost and not probe else None
    n, batch = (record.splits.train if record.splits else 0), train.get("batch_size")
    if epochs is not None and record.cost.steps and n and batch:
        # passes over the data: an epoch's last batch is partial (546 images in batches of 128 are 5 steps), which
        # the records' ``epochs`` (steps x batch / n, written before this was fixed) count as full
        epochs = record.cost.steps / math.ceil(n / batch)
    return {
        "backbone": record.backbone,
        "pretrained": catalog.method_class(record.method).pretrained,
        "image_size": record.hparams.get("task", {}).get("image_size"),
        "epochs": round(epochs, 1) if epochs is not None else None,
        "batch_size": train.get("batch_size"),
        "selection": {"budget": "20% of the training set", "oracle": "official validation set"}.get(
            train.get("validation", "oracle"), train.get("validation")
        ),
    }


def differences(reference: dict[str, Any], ours: dict[str, Any]) -> tuple[str, ...]:
    out = []
    for key in SETUP_KEYS:
        theirs, mine = reference.get(key), ours.get(key)
        if theirs is None or mine is None or theirs == mine:
            continue
        if key == "pretrained":
            out.append(
                "initialisation (ImageNet-pretrained here, random there)"
                if mine
                else "initialisation (random here, pretrained there)"
            )
        else:
            out.append(f"{key.replace('_', ' ')} ({mine} here, {theirs} there)")
    return tuple(out)


def verdict(ours: Interval, published: float, band: float) -> str:
    if ours.n == 0 or math.isnan(ours.mean):
        return "no score"
    inside = ours.has_interval and ours.low <= published <= ours.high
    if inside and (ours.high - ours.low) / 2 <= band:
        return "reproduced"
    if abs(ours.mean - published) <= band:
        return "within band"
    if inside:  # an interval wider than the band contains almost anything: it does not reproduce, it cannot tell
        return "inconclusive"
    return "above" if ours.mean > published else "below"


def test_se(metric: str, value: float, counts: Sequence[int]) -> float:
    """A score's standard error from the test set alone: binomial for accuracy, Hanley-McNeil for binary AUROC
    (class 1 the positives); NaN for other metrics or without counts."""
    n = sum(counts)
    if not counts or math.isnan(value) or n == 0:
        return math.nan
    if metric == "accuracy":
        return math.sqrt(max(value * (1 - value), 0.0) / n)
    if metric == "auroc" and len(counts) == 2 and min(counts) > 0:
        a, neg, pos = value, counts[0], counts[1]
        q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
        return math.sqrt(max(a * (1 - a) + (pos - 1) * (q1 - a * a) + (neg - 1) * (q2 - a * a), 0.0) / (pos * neg))
    return math.nan


def _standard_errors(metric: str, values: Sequence[float], published: float, counts: Sequence[int]):
    """(ours, published): each side's test-set standard error with the seeds' variance (see the module docstring)."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    seed_var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    ours = math.sqrt(test_se(metric, mean, counts) ** 2 + seed_var / len(values))
    theirs = math.sqrt(test_se(metric, published, counts) ** 2 + seed_var)
    return ours, theirs


def compare(records: Sequence[Record], references: Sequence[Reference] | None = None) -> list[Comparison]:
    """Every reference against every group of matching cells (ok, whole training set, same task)."""
    references = load_references() if references is None else references
    groups: dict[tuple[str, str, str, Any], list[Record]] = {}
    for r in records:
        if r.ok and r.budget == 0:
            size = r.hparams.get("task", {}).get("image_size")
            groups.setdefault((r.task, r.method, r.backbone, size), []).append(r)
    out = []
    for ref in references:
        for (task, method, backbone, size), rs in sorted(groups.items(), key=lambda kv: str(kv[0])):
            if task != ref.task:
                continue
            for metric, published in ref.scores.items():
                values = [r.metrics.get(metric_key(TEST, metric)) for r in rs]
                ours = seed_summary(values, metric)
                se_ours, se_pub = _standard_errors(metric, values, published, ref.test_counts)
                differ = differences(ref.setup, our_setup(rs[0]))
                other = any(d.startswith(("backbone", "initialisation")) for d in differ)
                if math.isnan(se_ours) or math.isnan(se_pub):
                    said = verdict(ours, published, ref.band[metric])
                else:
                    gap = ours.mean - published
                    same = "within SE" if other else "reproduced"  # another model can match, not reproduce
                    close = abs(gap) <= 1.96 * math.hypot(se_ours, se_pub)
                    said = same if close else ("above" if gap > 0 else "below")
                found = Comparison(ref, method, backbone, size, metric, ours, said, differ, se_ours, se_pub)
                out.append(found)
    return out


def references_text(records: Sequence[Record], references: Sequence[Reference] | None = None) -> str:
    references = load_references() if references is None else references
    comparisons = compare(records, references)
    lines = [
        "Published anchors: cells trained on the whole training set (budget 0) against published test scores.",
        "With the test set's class counts: mean ± standard error on each side (the test set's sampling error and "
        "the seeds' spread; the published score is one run), reproduced = within 1.96 combined standard errors "
        "(within SE for another model: a match, not a reproduction), above / below = further. Without them: "
        "reproduced = the published value is inside our 95% interval over "
        "seeds and that interval is no wider than the reference's band; within band = the mean is within the band "
        "of it; inconclusive = the interval holds the published value only by being wider than the band; above / "
        "below = further than that.",
    ]
    for citation in sorted({ref.citation for ref in references}):
        lines.append(f"source: {citation}")
    tasks = sorted({ref.task for ref in references})
    covered = {c.reference.task for c in comparisons}
    for task in tasks:
        if task not in covered:
            lines.append(
                f"{task}: no whole-training-set cell; run `adaptbench grid --suite anchors` (or a cell with "
                f"--budget 0) to compare"
            )
    lines += [c.describe() for c in comparisons]
    return "\n".join(lines)
