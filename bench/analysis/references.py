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

    def describe(self) -> str:
        ref = self.reference
        published = ref.scores[self.metric]
        diff = self.ours.mean - published
        size = f" @{self.image_size}px" if self.image_size else ""
        head = (
            f"{ref.task} {self.metric}: {self.method} ({self.backbone}{size}) {self.ours.describe()} over "
            f"{self.ours.n} seed(s) vs {ref.model} {published:.3f} ({diff:+.3f}): {self.verdict}"
        )
        if self.verdict in ("above", "below"):
            head += f" (band ±{ref.band.get(self.metric, 0):.3f})"
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
            refs.append(
                Reference(entry["task"], entry["model"], citation, entry["setup"], entry["scores"], entry["band"])
            )
    return refs


def our_setup(record: Record) -> dict[str, Any]:
    """The same keys as a reference's setup, read from a record."""
    train = record.hparams.get("train", {})
    probe = (record.method_notes or {}).get("probe") == "lbfgs"  # frozen's head: L-BFGS iterations, not epochs
    epochs = record.cost.epochs if record.cost and not probe else None
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
                ours = seed_summary([r.metrics.get(metric_key(TEST, metric)) for r in rs], metric)
                out.append(
                    Comparison(
                        ref,
                        method,
                        backbone,
                        size,
                        metric,
                        ours,
                        verdict(ours, published, ref.band[metric]),
                        differences(ref.setup, our_setup(rs[0])),
                    )
                )
    return out


def references_text(records: Sequence[Record], references: Sequence[Reference] | None = None) -> str:
    references = load_references() if references is None else references
    comparisons = compare(records, references)
    lines = [
        "Published anchors: cells trained on the whole training set (budget 0) against published test scores.",
        "reproduced = the published value is inside our 95% interval over seeds and that interval is no wider than "
        "the reference's band; within band = the mean is within the band of it; inconclusive = the interval holds "
        "the published value only by being wider than the band (too few or too spread seeds); above / below = "
        "further than that.",
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
