"""Take the winner home: ``adaptbench export --record KEY`` saves a cell's adapted model with a model card.

Records keep metrics, not weights (a suite's hundred cells would be gigabytes), so export runs the record's cell
again, exactly (same resolved settings, seed and data; the key must match), in its own process with
``ADAPTBENCH_SAVE_MODEL`` set, into a scratch results folder (the original record is never touched), and checks
that the rerun's test score equals the record's before it writes anything. The folder it writes:

- ``model.safetensors``: every tensor of the adapted model that is not a tensor of the untouched backbone (by value):
  the head and, for LoRA / adapters / any peft method, only the adapter's tensors (for full fine-tuning and scratch,
  the whole encoder). ``adaptbench.json``: what rebuilds the model around them (task, method and training settings,
  the backbone's name, the task's spec and, for a declared dataset, its declaration and content fingerprint).
- ``README.md``: a model card with the record's metrics, the seeds' interval, the data checksum and the commands.

``AdaptedModel.from_pretrained(folder)`` rebuilds it (the pretrained backbone by name, the method's preparation
under the cell's seed, then these tensors; nothing left unmatched) and ``predict``/``evaluate`` run it with the
backbone's own preprocessing. Written by hand because the adapted model is a backbone plus a head plus a method's
changes, which no one library's ``from_pretrained`` rebuilds; peft's own adapter format would cover only part of it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench import catalog
from bench.catalog import TASKS, resolve
from bench.core.api import Cell, Resolved, Split
from bench.core.backbone import get_backbone
from bench.core.data import DataRoot
from bench.core.model import make_head
from bench.core.record import TEST, Record, metric_key
from bench.core.store import Store
from bench.run.cell import SAVE_ENV, WEIGHTS, seed_everything
from bench.run.harness import run_cell
from bench.run.loop import Runner
from bench.run.model import AdaptModel

CONFIG = "adaptbench.json"


class ExportError(ValueError):
    """A record that cannot be exported (it did not train, it failed, the code that made it changed)."""


# ----------------------------------------------------------------------------------------- export
def find_record(store: Store, key: str) -> Record:
    """The record named ``key`` (a file name without .json) in any suite folder of ``store``."""
    key = key.removesuffix(".json")
    for suite in store.suites():
        record = store.get(suite, key)
        if record is not None:
            return record
    raise ExportError(f"no record {key} under {store.root} (`adaptbench summary` or the report list the keys)")


def export(record: Record, store: Store, out: Path, data_root: str | None = None, say=print) -> Path:
    """Rerun ``record``'s cell with saving on, check its test score, write ``out`` (see the module docstring)."""
    if not record.ok:
        raise ExportError(f"record {record.key} is {record.status}, not ok: there is no model to export")
    res = _resolved(record)
    if not res.method.trains:
        raise ExportError(
            f"record {record.key}: method {record.method} trains nothing (its predictor is built from the examples "
            "at run time); there are no weights to export, rerun the cell to use it"
        )
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not empty; name a new folder with --out")
    primary = metric_key(TEST, res.task.spec.primary_metric)
    with tempfile.TemporaryDirectory(prefix="adaptbench-export-") as tmp:
        weights = Path(tmp) / "weights"
        say(f"export: running {record.key} again (same settings, seed and data) to save its model")
        previous = os.environ.get(SAVE_ENV)
        os.environ[SAVE_ENV] = str(weights)
        try:
            again = run_cell(res, store=Store(Path(tmp) / "results"), data_root=data_root, quiet=True)
        finally:
            if previous is None:
                os.environ.pop(SAVE_ENV, None)
            else:
                os.environ[SAVE_ENV] = previous
        if not again.ok or not (weights / WEIGHTS).exists():
            raise ExportError(f"the rerun of {record.key} ended {again.status}: {again.error or 'no weights saved'}")
        was, now = record.metrics.get(primary, math.nan), again.metrics.get(primary, math.nan)
        if not abs(was - now) <= 1e-6:
            raise ExportError(
                f"the rerun of {record.key} scored {primary} {now:.6f}, the record {was:.6f}: the cell is not "
                "reproducible here (another machine, library version or thread count?); nothing was exported"
            )
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy(weights / WEIGHTS, out / WEIGHTS)
    config = {
        "format": 1,
        "key": record.key,
        "task": record.task,
        "method": record.method,
        "budget": record.budget,
        "seed": record.seed,
        "suite": record.suite,
        "overrides": record.overrides,
        "backbone": record.backbone,
        "hparams": res.hparams,
        "spec": json.loads(json.dumps(dataclasses.asdict(res.task.spec))),
        "dataset": record.dataset,
        "metrics": record.metrics,
        "reproduced": {primary: now},
    }
    (out / CONFIG).write_text(json.dumps(config, indent=1, sort_keys=True, default=str))
    (out / "README.md").write_text(model_card(record, res, store, out))
    say(f"export: {out} ({(out / WEIGHTS).stat().st_size / 2**20:.2f} MiB of weights; {primary} {now:.4f} reproduced)")
    return out


def _resolved(record: Record) -> Resolved:
    if record.task not in TASKS:
        info = record.dataset or {}
        if not info.get("declared"):
            raise ExportError(f"record {record.key}: task {record.task} is not known to this checkout")
        catalog.declare_recorded(info["declared"])
    method = record.method
    if method not in catalog.METHODS and method.startswith("peft-"):  # a peft-family entry, recorded file-safe
        method = "peft:" + method.removeprefix("peft-")
        if method not in catalog.METHODS:
            raise ExportError(
                f"record {record.key}: {record.method} was built from a peft config file; export needs that entry: "
                "run any cell with --method peft:<that file> in the same command, or rerun the cell"
            )
    cell = Cell(record.task, method, record.budget, record.seed, dict(record.overrides), suite=record.suite)
    res = resolve(cell)
    if res.key != record.key:
        raise ExportError(
            f"record {record.key} was made by other code or settings (they now resolve to {res.key}); rerun the cell "
            "with this checkout first, then export that record"
        )
    return res


def _interval(record: Record, store: Store, primary: str) -> str:
    """The mean and 95% t-interval over the seeds of the record's cell in the same results (when there are 2+)."""
    from scipy import stats

    stem = record.key.rsplit("__", 2)[0]  # task__method__budget
    mates = [
        r.metrics[primary]
        for r in store.records(record.suite)
        if r.ok and r.key.rsplit("__", 2)[0] == stem and r.overrides == record.overrides and primary in r.metrics
    ]
    if len(mates) < 2:
        return "one seed only: no interval"
    m, s = float(np.mean(mates)), float(np.std(mates, ddof=1))
    h = stats.t.ppf(0.975, len(mates) - 1) * s / math.sqrt(len(mates))
    return f"{m:.4f} [{m - h:.4f}, {m + h:.4f}] over {len(mates)} seeds (t-interval of the seed means)"


def model_card(record: Record, res: Resolved, store: Store, out: Path) -> str:
    spec = res.task.spec
    primary = metric_key(TEST, spec.primary_metric)
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(record.metrics.items()) if k.startswith("test"))
    data = record.dataset or {}
    sets = " ".join(f"--set {k}={v}" for k, v in sorted(record.overrides.items()) if not isinstance(v, dict))
    lines = [
        f"# {record.task} · {record.method} · {record.budget or 'all'} labels · seed {record.seed}",
        "",
        f"Adapted by adaptbench from the backbone `{record.backbone}` with `{record.method}` on `{record.task}` "
        f"({spec.description}). Record `{record.key}` (suite `{record.suite}`).",
        "",
        "## Scores on the test split",
        "",
        "| metric | value |",
        "|---|---|",
        metrics,
        "",
        f"Primary metric {spec.primary_metric} ({spec.direction}); across the cell's seeds: "
        f"{_interval(record, store, primary)}.",
        "",
        "## Data",
        "",
        f"- data content fingerprint (sha256): `{data.get('fingerprint', 'built-in task, pinned checksums')}`",
        *(f"- `{f}`: sha256 `{s}`" for f, s in sorted((data.get("files") or {}).items())),
        f"- test ids (sha256): `{data.get('test_ids_sha256', '-')}`",
        f"- split sizes: {record.splits.to_json() if record.splits else '-'}",
        "",
        "## Use",
        "",
        "```python",
        "from bench.run.export import AdaptedModel",
        f'model = AdaptedModel.from_pretrained("{out}")',
        'outputs = model.predict(["some text"])  # or a uint8 image array (N, H, W[, 3])',
        "```",
        "",
        "## Reproduce",
        "",
        "```",
        f"adaptbench run --task {record.task} --method {record.method} --budget {record.budget} --seed {record.seed}"
        + (f" {sets}" if sets else ""),
        f"adaptbench export --record {record.key} --out {out}",
        "```",
        "",
        f"Trainable parameters: {record.params.trainable if record.params else '-'}; "
        f"weights saved here: {(out / WEIGHTS).stat().st_size / 2**20:.2f} MiB.",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------- loading
class AdaptedModel:
    """An exported model: ``from_pretrained(folder)``, then ``predict(inputs)`` or ``evaluate(split)``."""

    def __init__(self, runner, res: Resolved, config: dict[str, Any]) -> None:
        self.runner, self.res, self.config = runner, res, config

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu") -> AdaptedModel:
        import torch
        from safetensors.torch import load_file

        folder = Path(folder)
        config = json.loads((folder / CONFIG).read_text())
        record = Record.from_json({**config, "status": "ok", "created_at": ""})
        res = _resolved(record)
        spec, cfg = res.task.spec, res.train
        seed_everything(record.seed, cfg.threads)
        backbone = get_backbone(res.backbone)
        loaded = backbone.load(
            pretrained=res.method.pretrained, quantize=res.method.quantize, device=device, **res.task.input_size
        )
        outputs = spec.num_labels if spec.kind == "classification" else 1
        torch.manual_seed(record.seed)
        model = AdaptModel(loaded.encoder, make_head(loaded.feature_dim, outputs))
        model = res.method.prepare(model, backbone, res.task).to(device)
        saved = load_file(str(folder / WEIGHTS))
        missing = set(saved) - set(model.state_dict())
        if missing:
            raise ExportError(
                f"{folder}: {len(missing)} saved tensors fit no part of the rebuilt model, e.g. "
                f"{sorted(missing)[:3]}; was it exported by another version?"
            )
        model.load_state_dict(saved, strict=False)
        model.eval()
        runner = Runner(model, loaded.batcher, res.task, cfg, device)
        runner.progress = None
        return cls(runner, res, config)

    def predict(self, inputs: Any) -> np.ndarray:
        """Outputs (logits, or scores for regression) for a list of texts / text pairs or a uint8 image array."""
        n = len(inputs)
        split = Split("predict", inputs, np.zeros(n, dtype=np.int64), np.arange(n))
        return self.runner.predict(split, cached=False)[0]

    def evaluate(self, data_root: str | None = None) -> dict[str, float]:
        """The test metrics on the record's own test split (the same cut of the same data)."""
        cfg, spec = self.res.train, self.res.task.spec
        stratify = spec.kind == "classification"
        splits = self.res.task.splits(self.res.cell.budget, self.res.cell.seed, DataRoot.resolve(data_root))
        test = splits.limit_eval(cfg.eval_limit, stratify).half(cfg.test_half, stratify).test
        return self.res.task.evaluate(self.predict(test.inputs), test.labels)
