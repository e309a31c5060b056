"""Weights & Biases logging of finished cells: ``adaptbench run --wandb`` and ``adaptbench grid --wandb``.

The JSON records stay the source of truth. A cell is logged from the parent process after its record is written,
from the ``Record`` object, and logging only reads it: a W&B failure (wandb not installed, ``wandb.init`` failing)
prints one warning line, stops W&B logging for the rest of the command, and never changes a record, loses one or
fails the grid. Any record can be logged again later (``log_record``); nothing in adaptbench reads W&B back.

One W&B run per record of a cell run now (``unsupported`` records are left out: they are gaps of the matrix, not
results, and a grid rewrites them every time it passes):
- name: the record's key; group: its suite; project ``adaptbench`` unless ``WANDB_PROJECT`` is set; tags: its status.
- config: task, method, budget, seed, suite, backbone, key, task and method versions, git sha, and the record's
  hyperparameters flattened (``method.lr``, ``train.batch_size``, ``task.image_size``).
- summary: the record's metrics under their own names (``test/accuracy``, ``val/auroc``: the selected checkpoint's),
  ``forgetting/{probe,before,after,drop,held_out}`` (``forgetting/<probe>/drop`` for extra probes), ``cost/<field>``
  (train time, peak memory, samples/s, ...), ``params/<field>`` with the trainable share, ``selection/<field>``
  (best step, what stopped the run), status, flags, and for records that are not ok the error's last line (``error``)
  so failures are visible.
- history: the learning curve, one row per validation pass of ``selection.history`` (``step``, ``train_loss`` and
  the ``val/...`` metrics), charted against ``step``.
A run whose record is not ok finishes with exit code 1, so W&B shows it as failed.

Runs are written offline (``wandb/offline-run-*`` under ``WANDB_DIR`` or the working folder; upload them with
``wandb sync <dir>``) unless the environment sets ``WANDB_MODE`` or ``WANDB_API_KEY``, in which case wandb decides.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core.record import Record, flatten, result_line
from bench.run.meters import git_info

if TYPE_CHECKING:
    from collections.abc import Callable

PROJECT = "adaptbench"
SKIPPED = ("unsupported",)


def mode() -> str | None:
    """ "offline" unless the environment configures W&B (then None: wandb reads WANDB_MODE or uses the key)."""
    return None if os.environ.get("WANDB_MODE") or os.environ.get("WANDB_API_KEY") else "offline"


CONFIG = ("task", "method", "budget", "seed", "suite", "backbone", "key", "task_version", "method_version")
SECTIONS = ("forgetting", "cost", "params", "selection")  # flat ``section.field`` -> W&B's ``section/field``


def run_config(record: Record) -> dict[str, Any]:
    """The cell's identity and hyperparameters (``method.lr``), from the record's one flattening
    (``bench.core.record.flatten``)."""
    flat = flatten(record)
    # a record of a process that died carries no env: the parent's checkout is the code it ran
    sha, dirty = (record.env.git_sha, record.env.dirty) if record.env else git_info()
    config = {name: flat[name] for name in CONFIG}
    config.update({"git_sha": sha, "dirty": dirty})
    hparams = {k.removeprefix("hparams."): v for k, v in flat.items() if k.startswith("hparams.")}
    return {**config, **hparams}


def run_summary(record: Record) -> dict[str, Any]:
    """Metrics, forgetting, cost, parameters, selection, status and flags, from the record's one flattening (its
    ``section.field`` columns as ``section/field``); the error's last line when not ok."""
    flat = flatten(record)
    out: dict[str, Any] = {"status": record.status, **record.metrics}
    for name, value in flat.items():
        section, dot, field = name.partition(".")
        if dot and section in SECTIONS and isinstance(value, bool | int | float | str):
            out[f"{section}/{field}"] = value
        elif name.startswith("forgetting_extra/"):
            out[f"forgetting/{name.removeprefix('forgetting_extra/')}/drop"] = value
    if record.params is not None:
        out["params/trainable_share"] = record.params.trainable_share
    if record.flags:
        out["flags"] = flat["record_flags"]
    if record.retry is not None:
        out["retry"] = record.retry.reason
    if not record.ok:
        out["error"] = result_line(record).split(": ", 1)[-1]
    return {k: v for k, v in out.items() if v is not None}


def history_rows(record: Record) -> list[dict[str, Any]]:
    """One row per validation pass: its step, training loss and validation metrics (numbers only)."""
    rows = record.selection.history if record.selection else []
    return [{k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)} for row in rows]


def log_record(record: Record) -> Path:
    """Log one record as a W&B run; returns the run's folder. Raises whatever wandb raises."""
    import wandb

    root = os.environ.get("WANDB_DIR")
    if root:  # wandb would create it too, but warn that it is no git checkout
        Path(root).mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT") or PROJECT,
        group=record.suite,
        name=record.key,
        tags=[record.status],
        config=run_config(record),
        mode=mode(),
        dir=root,  # read now: wandb would keep the first one it saw for the whole process
        # the cell ran in another process and is over: no console capture, system metrics or machine scan
        settings=wandb.Settings(
            console="off", silent=True, x_disable_stats=True, x_disable_meta=True, x_disable_machine_info=True
        ),
    )
    folder = Path(run.dir).parent
    try:
        run.define_metric("step")
        run.define_metric("*", step_metric="step")
        for row in history_rows(record):
            run.log(row)  # no step=: a row logged with one is held back until the next, after the summary
        run.summary.update(run_summary(record))  # after the history, which would overwrite val/* with its last pass
    finally:
        run.finish(exit_code=0 if record.ok else 1)
    return folder


class WandbLogger:
    """``on_record`` for ``run_grid`` and ``cmd_run``: logs each record, from any thread, one at a time; after the
    first failure it warns once and logs nothing more."""

    def __init__(self, warn: Callable[[str], None] | None = None) -> None:
        self.warn = warn or (lambda line: print(line, file=sys.stderr, flush=True))
        self.lock = threading.Lock()
        self.logged: list[Path] = []
        self.skipped = 0
        self.failed = False

    def __call__(self, record: Record) -> None:
        with self.lock:
            if self.failed:
                return
            if record.status in SKIPPED:
                self.skipped += 1
                return
            try:
                self.logged.append(log_record(record))
            except ImportError as e:
                self.failed = True
                self.warn(f"warning: wandb is not installed ({e}); records are written as usual, none is logged to W&B")
            except Exception as e:  # a logging sink: whatever wandb raises must not touch the records or the grid
                self.failed = True
                message = " ".join(f"{type(e).__name__}: {e}".split())[:300]
                self.warn(
                    f"warning: wandb: could not log {record.key} ({message}); the record is written as usual, "
                    "and no further cell is logged to W&B"
                )

    def describe(self) -> str:
        """One closing line: how many runs were logged and where (after a failure, what its warning did not say)."""
        skipped = f"; {self.skipped} unsupported cells are not logged" if self.skipped else ""
        if not self.logged:
            return "wandb: no run logged" + (" before the failure above" if self.failed else "") + skipped
        if not self.logged[-1].name.startswith("offline-"):
            return f"wandb: {len(self.logged)} runs logged ({os.environ.get('WANDB_MODE') or 'online'}){skipped}"
        where = self.logged[-1].parent
        return (
            f"wandb: {len(self.logged)} runs written offline under {where}{skipped}; "
            f"upload them with `wandb sync {where}/offline-run-*`"
        )
