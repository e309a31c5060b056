"""The record: what one cell produced, as typed dataclasses, written and read through this module only.

The JSON layout on disk is the one every earlier record has (flat enough for ``pandas.json_normalize``):
``Record.to_json()`` writes it, ``Record.from_json()`` reads any record of this schema, old ones included: a
section an older record lacks comes back as None, and keys this code does not know are kept in ``extra`` and
written back unchanged, so reading and rewriting a record never loses data. Metric names stay dictionary keys
(``test/accuracy``, ``gap/auroc``): they are data, not schema. Everything else is a field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from bench.core.api import Resolved

SCHEMA_VERSION = 1
# the splits a metric key names: ``test/auroc``, ``val/auroc`` (the selected checkpoint's), ``test_ood/auroc`` (the
# out-of-domain test set of a shift task) and ``gap/auroc`` (test minus test_ood: positive = worse under shift)
TEST, VAL, TEST_OOD, GAP = "test", "val", "test_ood", "gap"
SHOWN_SPLITS = (TEST, TEST_OOD, GAP)  # what a results table shows (val chose the checkpoint)


def metric_key(split: str, name: str) -> str:
    """``metric_key("test", "auroc")`` -> ``"test/auroc"``: how every metric of a record is named."""
    return f"{split}/{name}"


def split_of(key: str) -> tuple[str, str]:
    """``"test_ood/accuracy"`` -> ``("test_ood", "accuracy")``."""
    split, _, name = key.partition("/")
    return split, name


def keyed(split: str, metrics: dict[str, float]) -> dict[str, float]:
    """A split's metrics under their keys: ``{"auroc": 0.9}`` -> ``{"test/auroc": 0.9}``."""
    return {metric_key(split, name): value for name, value in metrics.items()}


OK, UNSUPPORTED = "ok", "unsupported"
# ok: finished; unsupported: the method cannot run on this task/backbone (the reason in ``error``); failed: an
# exception; oom: an allocation failure; killed: ended by a signal; timeout: out of time; diverged: non-finite loss
STATUSES = ("ok", "unsupported", "failed", "oom", "killed", "timeout", "diverged")


class _Section:
    """from_json/to_json for a flat dataclass section; unknown keys are kept in ``extra``."""

    extra: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any] | None):
        if data is None:
            return None
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        return cls(**known, extra={k: v for k, v in data.items() if k not in names})

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out = {k: v for k, v in out.items() if v is not None or k in self.always}
        return {**out, **self.extra}

    always: ClassVar[frozenset[str]] = frozenset()


@dataclass
class Forgetting(_Section):
    """A forgetting probe on the untouched pretrained backbone (``before``) and on the adapted one (``after``);
    ``drop`` is positive when the adapted backbone does worse, whichever way the probe's metric points."""

    probe: str
    before: float | None = None
    after: float | None = None
    drop: float | None = None
    higher_is_better: bool | None = None
    after_from_identical_weights: bool | None = None  # the adapted weights are the base ones: same number
    before_from_cache: bool | None = None  # the untouched backbone's value came from the probe cache
    limit: int | None = None  # examples the probe used (0 = all)
    note: str | None = None  # why there is no ``after`` (scratch), or why the probe is not held out
    subset: str | None = None  # "spread": the probe_limit examples spread over classes / rows (absent: the first)
    held_out: bool | None = None  # False: the probe reads the task's own data; left out of forgetting summaries
    extra: dict[str, Any] = field(default_factory=dict)
    always: ClassVar[frozenset[str]] = frozenset({"probe", "before", "after", "drop"})


@dataclass
class Params(_Section):
    total: int
    trainable: int
    trainable_no_head: int
    adapter_bytes: int = 0  # bytes of backbone tensors adaptation changed, or added: what must be saved
    quantized_weights: int = 0
    quantized_fraction: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    always: ClassVar[frozenset[str]] = frozenset({"total", "trainable", "trainable_no_head", "adapter_bytes"})

    @property
    def trainable_share(self) -> float:
        return self.trainable / self.total if self.total else math.nan


@dataclass
class SplitSizes(_Section):
    """Examples per split. ``validation`` says where ``val`` came from: "oracle" (the task's own held-out set,
    outside the label budget), "budget" (carved out of the budget; ``train`` is the rest) or "none" (a method
    without gradient steps validates nothing); absent in records written before the setting existed (= oracle).
    ``refit_train``: examples of the refit on the whole budget (``refit=true``)."""

    train: int
    val: int
    test: int
    test_ood: int | None = None
    official: bool = True
    validation: str | None = None
    refit_train: int | None = None
    folds: int | None = None  # k-fold selection (``cv_folds``): val is then the budget, scored out of fold
    test_half: int | None = None  # scored on half 1 or 2 of the test set(s) (``test_half``)
    extra: dict[str, Any] = field(default_factory=dict)
    always: ClassVar[frozenset[str]] = frozenset({"test_ood"})


@dataclass
class Cost(_Section):
    """Time, memory and throughput. Records of cells that died before finishing hold ``wall_time_s`` only."""

    wall_time_s: float | None = None
    device: str | None = None
    peak_mem_bytes: int | None = None
    peak_mem_delta_bytes: int | None = None  # the cell's own increase over its starting memory
    peak_mem_kind: str | None = None  # cuda_max_allocated | process_peak_rss
    train_samples_per_s: float | None = None  # warm-up steps excluded
    eval_samples_per_s: float | None = None
    train_time_s: float | None = None
    feature_time_s: float | None = None  # cached-feature methods: the backbone pass over train and val
    feature_samples_per_s: float | None = None  # examples encoded per second (None: every feature was cached)
    head_train_time_s: float | None = None  # cached-feature methods: the head's training on the features
    feature_cache: dict[str, Any] | None = None  # {hits, computed[, rejected]}: examples served / computed
    steps: int | None = None
    epochs: float | None = None
    fwd_flops_per_example: float | None = (
        None  # analytic (bench.run.flops) since flops_method exists; before, FlopCounterMode
    )
    train_flops_per_example: float | None = None  # per training example seen (bench.run.flops: the rule per method)
    flops_method: str | None = None  # analytic-hooks | flopcounter (absent: an older record, FlopCounterMode)
    flops_note: str | None = None  # why a count is missing, or what approximation it carries
    achieved_train_flops_per_s: float | None = None  # train_flops_per_example * train_samples_per_s
    machine_peak_flops_per_s: float | None = None  # the GEMM probe (bench.run.machine), bf16 on CUDA bf16 cells
    nominal_peak_flops_per_s: float | None = None  # the GPU's dense bf16 data-sheet peak (CUDA, bf16 cells)
    mfu: float | None = None  # achieved_train_flops_per_s / the peak named in mfu_basis
    mfu_basis: str | None = None
    peak_mem_reserved_bytes: int | None = None  # CUDA: torch.cuda.max_memory_reserved (allocator cache included)
    compiled: bool | None = None  # compile=true: whether torch.compile was in use (false after a fallback)
    compile_time_s: float | None = None  # the warm-up steps' extra time over timed steps (compilation, mostly)
    compile_error: str | None = None  # compile=true failed: why, and the cell ran eagerly
    eval_samples_per_s_unmerged: float | None = None
    eval_samples_per_s_merged: float | None = None
    merge_max_abs_diff: float | None = None
    merge_error: str | None = None
    tuning_steps: int | None = None  # nested tuning: optimizer steps over every candidate, fold and refit
    tuning_time_s: float | None = None  # ... and their training time (the rest of wall_time_s: loading, probes, test)
    extra: dict[str, Any] = field(default_factory=dict)
    always: ClassVar[frozenset[str]] = frozenset({"train_samples_per_s"})


@dataclass
class Selection(_Section):
    """How the checkpoint was chosen. ``stopped_by``: "schedule end", "cap" (``max_steps``) or "patience", and
    ``stopped_at`` the last step run (absent in older records: the schedule's end). ``refit``: {steps, train,
    train_time_s} of the retraining on the whole budget, whose final weights were tested."""

    on: str  # the validation metric that chose the checkpoint
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    validation: str | None = None  # oracle | budget (see SplitSizes); absent in older records: oracle
    stopped_by: str | None = None
    stopped_at: int | None = None
    schedule_steps: int | None = None  # the length the LR schedule was laid over (the cap under patience)
    refit: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    always: ClassVar[frozenset[str]] = frozenset({"best_step", "history"})


@dataclass
class Env(_Section):
    """The code and machine a cell ran on."""

    git_sha: str | None = None
    dirty: bool | None = None
    python: str | None = None
    torch: str | None = None
    transformers: str | None = None
    peft: str | None = None
    timm: str | None = None
    bitsandbytes: str | None = None
    cuda: str | None = None
    gpu_name: str | None = None
    cpu: str | None = None  # platform.processor() or the architecture (what records before cpu_model hold)
    cpu_model: str | None = None  # /proc/cpuinfo's model name (absent in older records)
    cpu_count: int | None = None
    threads: int | None = None
    hostname: str | None = None
    # what the numbers of a cell depend on besides the code and the seed (CPU model and instruction sets, GPU, thread
    # count, library versions), hashed: two records with the same ``machine`` ran the same arithmetic, so a same-seed
    # rerun reproduces its numbers there (the CI gate's tight rule); absent in older records
    machine: str | None = None
    # the machine class, readable: "; "-joined parts that decide a float result (``bench.run.meters.machine_class``:
    # CPU model, the instruction sets that pick kernels, torch's CPU capability, torch version, threads; on a GPU its
    # name, compute capability, CUDA and cuDNN); absent (unknown) in records written before it was recorded
    machine_class: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    always: ClassVar[frozenset[str]] = frozenset({"git_sha", "dirty", "cuda", "gpu_name"})


@dataclass
class Retry(_Section):
    """The cell ran out of memory once and was run again with half the micro-batch and twice the gradient
    accumulation (same effective batch and optimizer steps, so the same cell)."""

    reason: str
    micro_batch: int
    grad_accum: int
    eval_batch: int | None = None
    first_error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Divergence(_Section):
    step: int
    loss: str
    extra: dict[str, Any] = field(default_factory=dict)


_SECTIONS: dict[str, type[_Section]] = {
    "forgetting": Forgetting,
    "params": Params,
    "splits": SplitSizes,
    "cost": Cost,
    "selection": Selection,
    "env": Env,
    "retry": Retry,
    "divergence": Divergence,
}


@dataclass
class Record:
    """One cell's result. ``status`` is one of ``STATUSES``; only ``ok`` records carry metrics and sections."""

    key: str
    suite: str
    created_at: str
    status: str
    task: str
    task_version: int
    method: str
    method_version: int
    backbone: str
    budget: int
    seed: int
    hparams: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    schema: int = SCHEMA_VERSION
    metrics: dict[str, float] = field(default_factory=dict)
    forgetting: Forgetting | None = None
    forgetting_extra: dict[str, Forgetting] = field(default_factory=dict)
    params: Params | None = None
    splits: SplitSizes | None = None
    cost: Cost | None = None
    selection: Selection | None = None
    method_notes: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # e.g. "degenerate": every test prediction the same
    flag_notes: dict[str, str] = field(default_factory=dict)  # flag -> why
    retry: Retry | None = None
    divergence: Divergence | None = None  # status diverged: where the loss became non-finite
    exit_code: int | None = None  # records the parent wrote for a process that died
    signal: str | None = None
    weights: str | None = None  # where the backbone's weights came from
    # what names the backbone's weights beyond its name, as in the key: a local folder's sha256, a hub commit
    # (``Backbone.identity``); None (absent) for the built-in entries (their pinned package names them) and older ones
    backbone_identity: dict[str, Any] | None = None
    data_root: str | None = None
    env: Env | None = None
    # per-example test outputs, stored beside the JSON: {"file", "sha256", "splits"} (see Store.predictions)
    predictions: dict[str, Any] | None = None
    # a cell of a [[matrix]] block with a sweep: the sweep that chose its swept settings, with its cells and scores
    # (see bench.suite); the grid also writes it into the record of the sweep cell the tuned cell coincides with
    tuned_from: dict[str, Any] | None = None
    # nested tuning inside the cell (a ``tune`` space, k-fold selection or lengthening; bench.run.tuning): the space,
    # every candidate's best validation pass and fate, the rungs, whether the choice sits at a grid's edge
    tuning: dict[str, Any] | None = None
    # an adaptive grid (a suite's ``[adaptive]`` table): which look of the sequential design added this seed and why
    allocation: dict[str, Any] | None = None
    # ``grid --executor ray``: the node that ran the cell, and the attempts whose Ray task was lost before (see
    # bench.run.ray_executor); absent for cells run on the grid's own machine
    executor: dict[str, Any] | None = None
    # a declared dataset (``tasks/declared.py``): its declaration, content fingerprint, test ids' hash and task spec,
    # so a changed file is detected and a report can read the record without the declaration
    dataset: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys of newer code, kept as they were
    # the arrays behind ``predictions`` before they are written: split -> {"ids", "outputs", "labels"}
    arrays: dict[str, dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    # the file this record was read from (not written): its predictions lie beside it, whatever the folder's name
    source: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Invalid status {self.status!r} (one of {', '.join(STATUSES)})")

    @property
    def ok(self) -> bool:
        return self.status == OK

    def test_metric(self, name: str) -> float:
        return self.metrics.get(metric_key(TEST, name), math.nan)

    # ------------------------------------------------------------------------------------------ JSON
    def dumps(self) -> str:
        """The record as the JSON text a record file holds."""
        return json.dumps(self.to_json(), indent=1, sort_keys=True, default=_jsonable)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("extra", "arrays", "source"):
                continue
            if isinstance(value, _Section):
                value = value.to_json()
            elif f.name == "forgetting_extra":
                value = {k: v.to_json() for k, v in value.items()}
            if value is None and f.name in (
                *_SECTIONS,
                "exit_code",
                "signal",
                "weights",
                "backbone_identity",
                "data_root",
                "predictions",
                "tuned_from",
                "tuning",
                "allocation",
                "executor",
                "dataset",
            ):
                continue
            if f.name in ("flags", "flag_notes") and not value:
                continue  # no flag raised (older records have no such key)
            if f.name in ("metrics", "forgetting_extra", "method_notes") and not value and not self.ok:
                continue
            out[f.name] = value
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        names = {f.name for f in dataclasses.fields(cls)} - {"extra", "arrays", "source"}
        missing = {"key", "suite", "status", "task", "method", "budget", "seed"} - set(data)
        if missing:
            raise ValueError(f"not a record: lacks {', '.join(sorted(missing))}")
        values: dict[str, Any] = {k: v for k, v in data.items() if k in names}
        for name, section in _SECTIONS.items():
            values[name] = section.from_json(data.get(name))
        values["forgetting_extra"] = {
            k: Forgetting.from_json(v) for k, v in (data.get("forgetting_extra") or {}).items()
        }
        for name in ("metrics", "method_notes", "overrides", "hparams", "flag_notes"):
            values[name] = data.get(name) or {}
        values["flags"] = list(data.get("flags") or [])
        values.setdefault("created_at", "")
        values.setdefault("task_version", 0)
        values.setdefault("method_version", 0)
        values.setdefault("backbone", "")
        return cls(**values, extra={k: v for k, v in data.items() if k not in names})


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_record(res: Resolved, status: str, error: str | None = None) -> Record:
    """A record of a resolved cell with its identity filled in; results are added by the cell's body."""
    cell = res.cell
    return Record(
        key=res.key,
        suite=cell.suite,
        created_at=now_iso(),
        status=status,
        error=error,
        task=cell.task,
        task_version=res.task.spec.version,
        method=cell.method,
        method_version=res.method.version,
        backbone=res.backbone,
        backbone_identity=res.backbone_identity,
        budget=cell.budget,
        seed=cell.seed,
        hparams=res.hparams,
        overrides=dict(cell.overrides),
        tuned_from=cell.tuned_from,
        allocation=cell.allocation,
        dataset=res.task.data_info(),
    )


def result_line(record: Record) -> str:
    """One line per finished cell: its test metrics, or its status and the last paragraph of its error."""
    if not record.ok:
        error = (record.error or "").split("--- stderr tail ---")[0]  # the parent's own words come first
        paragraphs = [p for p in error.strip().split("\n\n") if p.strip()]
        last = paragraphs[-1] if paragraphs else ""
        if "\n" in last:  # a traceback: its last line holds the exception and its message
            last = last.strip().splitlines()[-1]
        return f"{record.status.upper()}: {last}"
    tests = {k: v for k, v in record.metrics.items() if split_of(k)[0] in (TEST, TEST_OOD)}
    flags = "".join(f" [{f}]" for f in record.flags)
    return " ".join(f"{k}={v:.4f}" for k, v in tests.items()) + flags


IDENTITY = ("task", "method", "budget", "seed", "status", "backbone", "key", "suite", "created_at")


def flatten(record: Record) -> dict[str, Any]:
    """The record as one flat row of scalars: the one flattening every table of records uses (records.csv and
    records.parquet, W&B runs). Columns: the identity (``IDENTITY``, the versions), the last line of a failure's
    error, every metric under its own key (``test/auroc``), ``forgetting.<probe|before|after|drop|held_out>`` and
    each extra probe's drop (``forgetting_extra/<probe>``), every scalar field of ``cost``, ``params`` and ``env``
    (``cost.<field>``), how the checkpoint was selected (``selection.<on|best_step|stopped_by|stopped_at|
    validation>``), ``retry.reason``, the record's own flags (``record_flags``, ";"-joined) and why
    (``record_flag_notes``), the hyperparameters as one JSON string and one column per value
    (``hparams.<section>.<name>``), the sweep and its choice (``tuned_from``, ``tuned.<name>``) and the record's
    file. Dictionaries and lists become JSON text, so every column has one type."""
    row: dict[str, Any] = {name: getattr(record, name) for name in IDENTITY}
    row["task_version"], row["method_version"] = record.task_version, record.method_version
    lines = (record.error or "").strip().splitlines()
    row["error"] = lines[-1] if lines else None
    row.update({name: float(v) if v is not None else None for name, v in sorted(record.metrics.items())})
    f = record.forgetting
    row["forgetting.probe"] = f.probe if f else None
    for name in ("before", "after", "drop"):
        row[f"forgetting.{name}"] = getattr(f, name) if f else None
    row["forgetting.held_out"] = f.held_out is not False if f else None
    for probe, extra in sorted(record.forgetting_extra.items()):
        row[f"forgetting_extra/{probe}"] = extra.drop
    for prefix, section in (("cost", record.cost), ("params", record.params), ("env", record.env)):
        if section is not None:
            for fld in dataclasses.fields(section):
                if fld.name != "extra":
                    row[f"{prefix}.{fld.name}"] = _scalar(getattr(section, fld.name))
    sel = record.selection
    for name in ("on", "best_step", "stopped_by", "stopped_at", "validation"):
        row[f"selection.{name}"] = getattr(sel, name) if sel else None
    row["retry.reason"] = record.retry.reason if record.retry else None
    row["record_flags"] = ";".join(record.flags)  # not "flags": a column of that name hides pandas' DataFrame.flags
    row["record_flag_notes"] = "; ".join(f"{k}: {v}" for k, v in sorted(record.flag_notes.items())) or None
    row["hparams"] = json.dumps(record.hparams, sort_keys=True)
    for section, values in sorted(record.hparams.items()):
        if isinstance(values, dict):
            for name, value in sorted(values.items()):
                row[f"hparams.{section}.{name}"] = _scalar(value)
    chosen = (record.tuned_from or {}).get("selected") or {}
    row["tuned_from"] = (record.tuned_from or {}).get("sweep")
    for name, value in sorted(chosen.items()):
        row[f"tuned.{name}"] = _scalar(value)
    row["record_file"] = str(record.source) if record.source is not None else None
    return row


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
