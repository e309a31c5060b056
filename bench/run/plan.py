"""What a suite will cost before it runs: wall seconds and peak memory per cell, on this machine and on a named GPU.

``adaptbench plan`` and ``grid --dry-run`` use it; it refuses nothing. Each cell's estimate has a basis:

- **measured**: records of the same cell identity (task, method, budget, backbone and settings; any seed or test
  half) exist in the folders given: the mean of their wall times, the largest of their peak memories.
- **fitted**: a model fitted on every readable ``ok`` record given (``CostModel``)::

      wall = overhead(backbone, method) + training FLOPs / R_train(backbone, method) + test FLOPs / R_eval(backbone)

  *Training FLOPs* = expected optimizer steps x batch x ``train_flops_per_example`` (plus the validation passes at
  ``fwd_flops_per_example``). The expected steps come from the cell's settings by the tuner's own plan
  (``expected_steps``: successive halving's rungs, the candidates a grid edge adds, k folds, the refit, lengthening)
  times the ratio actual/expected steps the records with the same kind of tuning show (1 when none has any).
  *R_train* and *R_eval* are the records' achieved FLOP/s as a share of their ``machine_peak_flops_per_s``, times
  this machine's measured peak at the cell's thread count (``bench.run.machine``); the overhead (loading, the
  forgetting probe, features) is the records' remaining seconds, scaled by the same ratio of peaks. Each quantity
  comes from the records of the same backbone and method, else the same backbone and method kind, else the same
  modality and kind, else all records. FLOPs per example come from records of the same task, method and backbone,
  else of the same backbone and method (scaled by input size; a text task's forward is counted on 32 of its own
  texts, since its lengths decide its cost: airline reviews fill 128 tokens, SST-2 sentences ~25), else
  ``REFERENCE_FLOPS``.
- **flops**: no record to learn from: FLOPs (``REFERENCE_FLOPS``) / (peak x ``PRIOR_UTILISATION``) plus
  ``PRIOR_OVERHEAD_S``.

Peak memory: the largest peak of records of the same backbone and method (else backbone), else a parameter count
estimate (``PARAMS``). A named GPU (``GPUS``) is always a FLOPs-based estimate at a stated MFU, never measured here.

Lives in ``bench.run`` (not ``bench.analysis``): it predicts what running cells will cost from how the runner runs
them (the tuner's schedule, the machine's peak probe), and the grid's dry run calls it; the analysis package reads
results. Imports no torch unless this machine's peak must be measured.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.catalog import METHODS, resolve
from bench.core.api import Cell, Resolved, TrainConfig
from bench.core.backbone import BACKBONES
from bench.core.data import DataError, DataRoot
from bench.core.record import Record
from bench.run.machine import measured_peaks
from bench.run.meters import environment
from bench.suite import Suite, select

# ---------------------------------------------------------------------------------------------- GPUs
MiB = 2**20


@dataclass(frozen=True)
class Gpu:
    name: str
    bf16: float  # dense (no sparsity) bf16 tensor-core FLOP/s
    tf32: float  # dense TF32 tensor-core FLOP/s: what fp32 matmuls run at with TF32 on
    memory_bytes: float
    source: str


GPUS: dict[str, Gpu] = {  # the vendors' data sheets; the sparse figures they also quote are twice these
    "h100": Gpu("H100 SXM 80GB", 989e12, 495e12, 80e9, "NVIDIA H100 Tensor Core GPU datasheet (SXM5)"),
    "h100-pcie": Gpu("H100 PCIe 80GB", 756e12, 378e12, 80e9, "NVIDIA H100 Tensor Core GPU datasheet (PCIe)"),
    "h200": Gpu("H200 SXM 141GB", 989e12, 495e12, 141e9, "NVIDIA H200 Tensor Core GPU datasheet (SXM)"),
    "a100": Gpu("A100 SXM 80GB", 312e12, 156e12, 80e9, "NVIDIA A100 Tensor Core GPU datasheet"),
    "l40s": Gpu("L40S 48GB", 362e12, 183e12, 48e9, "NVIDIA L40S datasheet"),
    "l4": Gpu("L4 24GB", 121e12, 60e12, 24e9, "NVIDIA L4 Tensor Core GPU datasheet"),
    "a10g": Gpu("A10G 24GB", 70e12, 35e12, 24e9, "AWS EC2 G5 (A10G) specifications"),
}
GPU_MFU = 0.10  # assumed share of the dense peak (bf16 cells: bf16; fp32 cells: TF32) a cell achieves on a GPU
GPU_STEP_FLOOR_S = 0.010  # assumed least seconds per optimizer step (kernel launches bound small models' steps)
GPU_OVERHEAD_S = 20.0  # assumed seconds per cell besides its FLOPs: process, weights onto the GPU, probe, test set
CUDA_CONTEXT_BYTES = 512 * MiB  # assumed: the CUDA context and allocator slack on top of what a cell allocates

# ------------------------------------------------------------------------------------- priors (no records)
PRIOR_UTILISATION = {"train": 0.15, "eval": 0.30}  # assumed shares of this machine's measured GEMM peak
PRIOR_OVERHEAD_S = 10.0  # assumed seconds per cell at a 1e11 FLOP/s peak: process, weights, the forgetting probe
PRIOR_TEST_EXAMPLES = 1000  # assumed test examples of a task no record has run
PRIOR_STEPS_RATIO = 1.0  # actual / expected optimizer steps when no record with that kind of tuning exists
PRIOR_LENGTHEN = 0.25  # assumed chance that a chosen run still improves at its end and is run again twice as long
BASE_RSS_BYTES = 600 * MiB  # assumed resident memory of a cell's process before its model (python, torch, data)
# forward FLOPs per example at a reference input (bench.run.flops' count), and parameters; ``per`` scales them:
# "pixel" by (image_size / ref)^2, "token" by max_len / ref
REFERENCE_FLOPS: dict[str, tuple[float, str, int, float]] = {
    "efficientnet-lite0": (6.27e7, "pixel", 64, 4.7e6),  # 0.39 GMACs at 224 px, as published
    "medmnist-resnet18": (1.1e8, "pixel", 28, 11.2e6),
    "minilm-l6": (8.6e8, "token", 64, 22.7e6),  # 2 x 10.6M non-embedding weights per token, ~40 tokens filled
    "smollm2-135m": (1.1e10, "token", 64, 135e6),  # prompts with demonstrations: ~50 tokens at 2 x 106M + the head
}
_TRAIN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
FULL_BACKWARD = frozenset({"full", "scratch", "l2sp", "llrd", "gradual"})  # every weight trains: ~3x forward


# ------------------------------------------------------------------------------------------ the schedule
def schedule_length(cfg: dict[str, Any], n: int) -> int:
    """Optimizer steps of one run on ``n`` examples: ``bench.run.loop.schedule_length`` (kept equal by a test),
    here without importing torch."""
    planned = max(cfg["epochs"] * max(1, math.ceil(n / cfg["batch_size"])), cfg["min_steps"])
    if cfg["patience"]:
        return cfg["max_steps"] or planned
    return min(cfg["max_steps"], planned) if cfg["max_steps"] else planned


def eval_points(cfg: dict[str, Any], length: int, n: int) -> list[int]:
    """The validation passes of a run (``bench.run.loop.eval_steps``)."""
    if cfg["eval_every"]:
        return sorted({*range(cfg["eval_every"], length + 1, cfg["eval_every"]), length})
    n_evals = max(1, min(cfg["max_evals"], math.ceil(length / max(1, math.ceil(n / cfg["batch_size"])))))
    return sorted({round(length * (i + 1) / n_evals) for i in range(n_evals)})


def widening(tried: int, limit: int) -> dict[int, float]:
    """P(extra candidates a grid edge adds): the best of the ``tried`` values is taken to be any of them alike, and
    one at an edge adds the next value outward, at most ``limit`` per side (``bench.run.tuning``)."""
    out: dict[int, float] = {}

    def go(m: int, low: int, high: int, extra: int, p: float) -> None:
        pl, ph = (1 / m if low < limit else 0.0), (1 / m if high < limit else 0.0)
        out[extra] = out.get(extra, 0.0) + p * (1 - pl - ph)
        if pl:
            go(m + 1, low + 1, high, extra + 1, p * pl)
        if ph:
            go(m + 1, low, high + 1, extra + 1, p * ph)

    go(tried, 0, 0, 0, 1.0) if tried >= 2 and limit > 0 else out.setdefault(0, 1.0)
    return out


@dataclass(frozen=True)
class Shape:
    """What a cell's cost depends on, from its settings: how it trains, on how many examples, how it is tuned."""

    kind: str  # "train" (gradient steps) | "probe" (cached features, a fitted head) | "prompt" (no training)
    budget_n: int  # labelled examples (the pool's size for budget 0, as far as records say)
    train_n: int  # examples one run trains on (a fold's, or the budget less the carved validation)
    val_n: int  # examples of one validation pass
    batch: int
    length: int  # one run's optimizer steps
    steps: float  # expected optimizer steps over every candidate, fold, refit and lengthening
    passes: float  # expected validation passes over all of them
    tuned: str  # "cv" | "tune" | "single": which steps ratio applies
    threads: int
    precision: str


def shape_of(method: str, cfg: dict[str, Any], budget_n: int, tune: dict[str, Any] | None) -> Shape:
    """The expected work of a cell (see ``Shape``) by the tuner's plan (``bench.run.tuning``): every candidate
    runs to the first rung (``length / eta^k``, at a validation pass), the best ``1/eta`` go on; a best value at a
    grid edge adds a candidate (``widening``); k folds multiply it; a k-fold selection or ``refit`` retrains the
    chosen run on the whole budget; ``extend_max`` > 1 reruns a still-improving choice twice as long
    (``PRIOR_LENGTHEN``). Patience is not modelled (the ratio fitted on records takes it in)."""
    cls = METHODS.get(method)
    kind = "prompt" if not cls.trains else ("probe" if cls.linear_probe else "train")
    threads, precision, batch = int(cfg.get("threads", 2)), str(cfg.get("precision", "fp32")), int(cfg["batch_size"])
    cv = bool(cfg.get("cv_folds")) and cfg.get("validation") == "budget" and budget_n < cfg.get("cv_below", 128)
    if kind != "train":
        return Shape(kind, budget_n, budget_n, 0, batch, 0, 0.0, 0.0, "single", threads, precision)
    folds = int(cfg["cv_folds"]) if cv else 1
    if cv:
        train_n = budget_n - math.ceil(budget_n / folds)
        val_n = math.ceil(budget_n / folds)
    elif cfg.get("validation") == "budget":
        val_n = max(1, math.floor(budget_n * cfg.get("val_fraction", 0.2) + 0.5))
        train_n = budget_n - val_n
    else:
        train_n, val_n = budget_n, 0
    length = schedule_length(cfg, train_n)
    points = eval_points(cfg, length, train_n)
    n_cand, grid_values = _candidates(tune)
    tunes = tune is not None or cv or cfg.get("extend_max", 1) > 1
    eta = max(2, int(cfg.get("tune_eta", 3)))
    n_rungs = 1 + math.floor(math.log(n_cand) / math.log(eta) + 1e-9) if n_cand > 1 else 1
    rungs = []
    for r in range(n_rungs):
        target = length / eta ** (n_rungs - 1 - r)
        rungs.append(next((s for s in points if s >= target - 1e-9), length))
    steps = 0.0
    dist = widening(grid_values, int(cfg.get("tune_extend", 2))) if tunes and grid_values else {0: 1.0}
    for extra, p in dist.items():
        alive, done, total = n_cand + extra, 0, 0.0
        for r, rung in enumerate(rungs):
            total += alive * (rung - done)
            done = rung
            if r < n_rungs - 1:
                alive = max(1, math.ceil(alive / eta))
        steps += p * total
    if tunes and cfg.get("extend_max", 1) > 1:
        steps += PRIOR_LENGTHEN * 2 * length
    steps *= folds
    passes = steps / max(1.0, length / max(1, len(points)))
    if cv or cfg.get("refit"):
        steps += length  # the refit on the whole budget (to the chosen step: at most the run's length)
    return Shape(kind, budget_n, train_n, val_n, batch, length, steps, passes, "cv" if cv else
                 ("tune" if n_cand > 1 or tunes else "single"), threads, precision)  # fmt: skip


def _candidates(tune: dict[str, Any] | None) -> tuple[int, int]:
    """(candidates a ``tune`` table tries, values of its first numeric grid field: what can widen)."""
    if not tune:
        return 1, 0
    n, widen, points = 1, 0, 1
    for key, values in tune.items():
        if key == "points":
            points = int(values)
        elif isinstance(values, list):
            n *= len(values)
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            if numeric and len(values) >= 2 and not widen:
                widen = len(values)
    has_range = any(isinstance(v, dict) for v in tune.values())
    return n * (points if has_range else 1), widen


# ------------------------------------------------------------------------------------------- observations
@dataclass
class Obs:
    """One ok record, as the fit sees it."""

    record: Record
    identity: str
    task: str
    method: str
    backbone: str
    modality: str
    kind: str
    shape: Shape
    peak: float | None  # the record's machine peak (its thread count)
    wall: float
    train_s: float
    eval_s: float | None
    test_n: int
    fwd: float | None
    train_flops_ex: float | None
    actual_steps: float | None
    mem: float | None
    mem_delta: float | None
    input_size: tuple[str, int] | None


def identity(task: str, task_version: Any, method: str, method_version: Any, budget: int, backbone: str,
             overrides: dict[str, Any]) -> str:  # fmt: skip
    """A cell's identity apart from its seed and test half: what makes another seed's record a measurement of it."""
    settings = {k: v for k, v in overrides.items() if k != "test_half"}
    return json.dumps([task, task_version, method, method_version, budget, backbone, settings], sort_keys=True,
                      default=str)  # fmt: skip


def _ident_fields(r: Record) -> tuple[Any, ...]:
    return r.task, r.task_version, r.method, r.method_version, r.budget, r.backbone, r.overrides


def _input_size(task_hparams: dict[str, Any]) -> tuple[str, int] | None:
    if task_hparams.get("image_size"):
        return ("pixel", int(task_hparams["image_size"]))
    if task_hparams.get("max_len"):
        return ("token", int(task_hparams["max_len"]))
    return None


def _modality(backbone: str) -> str:
    try:
        return BACKBONES.get(backbone).modality
    except Exception:  # an unknown or unloadable entry: grouped with nothing
        return "?"


def observe(record: Record) -> Obs | None:
    """The fit's view of an ok record with a wall time (None for any other record)."""
    cost = record.cost
    if not record.ok or cost is None or not cost.wall_time_s or record.method not in METHODS:
        return None
    cfg = (record.hparams or {}).get("train") or {}
    if "batch_size" not in cfg:
        return None
    splits = record.splits
    budget_n = (splits.train + splits.val) if splits is not None and record.budget == 0 else record.budget
    if splits is not None and splits.validation == "oracle":
        budget_n = splits.train
    shape = shape_of(record.method, {**_TRAIN_DEFAULTS, **cfg}, budget_n, record.overrides.get("tune"))
    test_n = (splits.test + (splits.test_ood or 0)) if splits is not None else 0
    if shape.kind == "train":
        train_s = cost.tuning_time_s or cost.train_time_s or 0.0
    else:
        train_s = (cost.train_time_s or 0.0) + (cost.feature_time_s or 0.0)
    eval_s = test_n / cost.eval_samples_per_s if cost.eval_samples_per_s and test_n else None
    return Obs(
        record,
        identity(*_ident_fields(record)),
        record.task,
        record.method,
        record.backbone,
        _modality(record.backbone),
        shape.kind,
        shape,
        cost.machine_peak_flops_per_s,
        cost.wall_time_s,
        train_s,
        eval_s,
        test_n,
        cost.fwd_flops_per_example,
        cost.train_flops_per_example,
        float(cost.tuning_steps or cost.steps or 0) if shape.kind == "train" else None,
        cost.peak_mem_bytes,
        cost.peak_mem_delta_bytes,
        _input_size((record.hparams or {}).get("task") or {}),
    )


def load_records(folders: Iterable[str | Path]) -> list[Record]:
    """Every readable record under the folders (recursively; ``attempts`` and claims left out)."""
    out, seen = [], set()
    for folder in folders:
        root = Path(folder)
        files = [root] if root.is_file() else sorted(root.rglob("*.json"))
        for f in files:
            if "attempts" in f.parts or ".claims" in f.parts or f.resolve() in seen:
                continue
            seen.add(f.resolve())
            try:
                data = json.loads(f.read_text(encoding="utf-8"))
                record = Record.from_json(data) if isinstance(data, dict) else None
            except (OSError, ValueError, TypeError):
                continue
            if record is not None:
                record.source = f
                out.append(record)
    return out


# ----------------------------------------------------------------------------------------------- estimates
@dataclass
class Estimate:
    """One cell's estimate on this machine (and on ``gpu`` when one was named)."""

    cell: Cell
    key: str
    seconds: float
    basis: str  # measured | fitted | flops | unsupported | unknown
    peak_mem_bytes: float | None
    mem_basis: str
    phase: int = 1  # 0: sweep cells, 1: the suite's cells (first look), 2+: later looks of an adaptive suite
    train_flops: float | None = None
    eval_flops: float | None = None
    steps: float = 0.0
    gpu_seconds: float | None = None
    gpu_mem_bytes: float | None = None
    note: str = ""
    parts: dict[str, float] = field(default_factory=dict)  # overhead, train, eval seconds (fitted and flops)


Peak = Callable[[int], float]


def measured_peak(threads: int) -> float:
    """This machine's measured fp32 GEMM peak at ``threads`` (``bench.run.machine``, cached per machine)."""
    return measured_peaks("cpu", threads)["fp32"]


class CostModel:
    """Estimates from records (see the module docstring). ``peak(threads)``: this machine's measured peak;
    ``machine(threads)``: its ``env.machine`` hash (records of the same hash ran on this hardware with these
    libraries: their times are taken as they are, since the peak probe itself varies run to run, e.g. 69 and 87
    GFLOP/s on one machine for the default suite's two replicates); ``lookup=False`` never uses a cell's own
    records (the model alone); ``gpu``: a key of ``GPUS``."""

    def __init__(self, records: list[Record], peak: Peak | None = None, lookup: bool = True,
                 gpu: str | None = None, gpu_mfu: float = GPU_MFU,
                 machine: Callable[[int], str | None] | None = None) -> None:  # fmt: skip
        self.obs = [o for o in (observe(r) for r in records) if o is not None]
        self._peaks: dict[int, float] = {}
        self._peak_fn = peak or measured_peak
        self._machine_fn = machine or this_machine
        self._machines: dict[int, str | None] = {}
        self.lookup = lookup
        self.gpu = GPUS[gpu] if gpu else None
        self.gpu_mfu = gpu_mfu
        self.by_identity: dict[str, list[Obs]] = {}
        for o in self.obs:
            self.by_identity.setdefault(o.identity, []).append(o)
        self._fill_peaks()
        self.steps_ratio = self._steps_ratios()
        self._counted: dict[tuple[str, str, str], float | None] = {}

    # -- fitting
    def peak(self, threads: int) -> float:
        if threads not in self._peaks:
            self._peaks[threads] = float(self._peak_fn(threads))
        return self._peaks[threads]

    def machine(self, threads: int) -> str | None:
        if threads not in self._machines:
            self._machines[threads] = self._machine_fn(threads)
        return self._machines[threads]

    def speedup(self, o: Obs, threads: int) -> float | None:
        """How much faster this machine runs a cell at ``threads`` than the record's did: 1 on the same machine,
        else the ratio of the measured peaks (None when the record has none)."""
        env = o.record.env
        if env is not None and env.machine and env.machine == self.machine(threads):
            return 1.0
        return self.peak(threads) / o.peak if o.peak else None

    def _fill_peaks(self) -> None:
        """Records whose FLOP count failed carry no peak: take the median of records of the same machine and
        thread count."""
        known: dict[tuple[Any, int], list[float]] = {}
        for o in self.obs:
            if o.peak:
                known.setdefault(_machine(o), []).append(o.peak)
        for o in self.obs:
            if not o.peak and known.get(_machine(o)):
                o.peak = statistics.median(known[_machine(o)])

    def _steps_ratios(self) -> dict[str, float]:
        ratios: dict[str, list[float]] = {}
        for o in self.obs:
            if o.kind == "train" and o.actual_steps and o.shape.steps:
                ratios.setdefault(o.shape.tuned, []).append(o.actual_steps / o.shape.steps)
        return {k: statistics.median(v) for k, v in ratios.items()}

    def _groups(self, res: Resolved, kind: str, modality: str) -> list[Callable[[Obs], bool]]:
        """Whose records a quantity is fitted on, nearest first."""
        task, backbone, method = res.cell.task, res.backbone, res.cell.method
        return [
            lambda o: o.task == task and o.backbone == backbone and o.method == method,
            lambda o: o.backbone == backbone and o.method == method,
            lambda o: o.backbone == backbone and o.kind == kind,
            lambda o: o.modality == modality and o.kind == kind,
            lambda o: o.kind == kind,
        ]

    def _fitted(self, groups: list[Callable[[Obs], bool]], value: Callable[[Obs, float], float | None],
                threads: int) -> float | None:  # fmt: skip
        """The median of ``value(record, speedup)`` over the first group with any record giving one."""
        for keep in groups:
            values = []
            for o in self.obs:
                speedup = self.speedup(o, threads) if keep(o) else None
                v = value(o, speedup) if speedup else None
                if v is not None and math.isfinite(v):
                    values.append(v)
            if values:
                return statistics.median(values)
        return None

    # -- FLOPs per example
    def flops_per_example(self, res: Resolved, kind: str) -> tuple[float | None, float | None, str]:
        """(forward, training) FLOPs per example and where they come from."""
        size = _input_size(dataclasses.asdict(res.task))
        same = [o for o in self.obs if o.task == res.cell.task and o.method == res.cell.method
                and o.backbone == res.backbone and o.input_size == size and o.fwd]  # fmt: skip
        if same:
            train = [o.train_flops_ex for o in same if o.train_flops_ex]
            return statistics.median(o.fwd for o in same), statistics.median(train) if train else None, "records"
        like = [o for o in self.obs if o.backbone == res.backbone and o.fwd and o.input_size and size
                and o.input_size[0] == size[0]]  # fmt: skip
        own = [o for o in like if o.method == res.cell.method]
        if like:
            fwd = statistics.median(o.fwd * _scale(o.input_size, size) for o in like)
            train = [o.train_flops_ex * _scale(o.input_size, size) for o in own if o.train_flops_ex]
            counted = self.counted_forward(res) if size and size[0] == "token" else None
            if counted:  # a text task of its own lengths: its forward counted, training scaled by the same ratio
                ratio = counted / fwd
                return counted, (statistics.median(train) * ratio if train else
                                 _train_prior(counted, res.cell.method, kind)), "counted on its data"  # fmt: skip
            return fwd, statistics.median(train) if train else _train_prior(fwd, res.cell.method, kind), "records"
        ref = REFERENCE_FLOPS.get(res.backbone)
        if ref is None:
            return None, None, "unknown"
        fwd = ref[0] * (_scale((ref[1], ref[2]), size) if size and size[0] == ref[1] else 1.0)
        return fwd, _train_prior(fwd, res.cell.method, kind), "reference"

    def counted_forward(self, res: Resolved) -> float | None:
        """Forward FLOPs per example of the backbone on 32 of this task's own training texts, counted (once per
        task, backbone and length): a text task's cost follows its texts' lengths (airline reviews fill 128 tokens,
        SST-2 sentences ~25), which another task's records cannot tell. None when it cannot be counted."""
        ident = (res.cell.task, res.backbone, repr(res.task))
        if ident not in self._counted:
            self._counted[ident] = _count_forward(res)
        return self._counted[ident]

    # -- one cell
    def estimate(self, cell: Cell, phase: int = 1) -> Estimate:
        res = resolve(cell)
        why = res.unsupported_reason()
        if why:
            return Estimate(cell, res.key, 0.0, "unsupported", None, "-", phase, note=why)
        cfg = dataclasses.asdict(res.train)
        budget_n = cell.budget or self._pool(cell.task)
        shape = shape_of(cell.method, cfg, budget_n, res.tune.as_dict() if res.tune else None)
        kind, modality = shape.kind, _modality(res.backbone)
        ident = identity(cell.task, res.task.spec.version, cell.method, res.method.version, cell.budget,
                         res.backbone, res.cell.overrides)  # fmt: skip
        fwd, train_ex, flops_from = self.flops_per_example(res, kind)
        test_n = self._test_n(cell.task, cfg)
        steps = shape.steps * self.steps_ratio.get(shape.tuned, PRIOR_STEPS_RATIO) if kind == "train" else 0.0
        train_flops = eval_flops = None
        if fwd is not None:
            eval_flops = fwd * test_n
            if kind == "train":
                passes = shape.passes * steps / shape.steps if shape.steps else 0.0
                train_flops = steps * shape.batch * (train_ex or 0.0) + passes * shape.val_n * fwd
            elif kind == "probe":
                train_flops = fwd * budget_n
            else:
                train_flops = 0.0
        out = Estimate(cell, res.key, math.nan, "unknown", None, "-", phase, train_flops, eval_flops, steps)
        measured = self.by_identity.get(ident) if self.lookup else None
        self._memory(out, res, kind, measured)
        if measured:
            out.seconds = statistics.mean(o.wall for o in measured)
            out.basis = "measured"
            out.note = f"mean of {len(measured)} records of this cell"
        elif fwd is not None:
            self._model(out, res, kind, modality, shape)
            if flops_from == "reference" and out.basis == "fitted":
                out.note = (out.note + "; " if out.note else "") + "FLOPs per example from REFERENCE_FLOPS"
        else:
            out.note = f"no record of backbone {res.backbone} and no reference FLOPs for it"
        self._gpu(out, shape)
        return out

    def _model(self, out: Estimate, res: Resolved, kind: str, modality: str, shape: Shape) -> None:
        groups = self._groups(res, kind, modality)
        threads, here = shape.threads, self.peak(shape.threads)
        r_train = self._fitted(groups, _train_rate, threads)
        eval_groups = [*groups[:2], lambda o: o.backbone == res.backbone, *groups[3:]]
        r_eval = self._fitted(eval_groups, _eval_rate, threads)
        overhead_s = self._fitted(groups, _overhead_seconds, threads)
        fitted = any(v is not None for v in (r_train, r_eval, overhead_s))
        r_train = r_train or PRIOR_UTILISATION["train"] * here
        r_eval = r_eval or PRIOR_UTILISATION["eval"] * here
        if overhead_s is None:
            overhead_s = PRIOR_OVERHEAD_S * 1e11 / here
        train_s = (out.train_flops or 0.0) / r_train
        eval_s = (out.eval_flops or 0.0) / r_eval
        out.seconds = overhead_s + train_s + eval_s
        out.parts = {"overhead": overhead_s, "train": train_s, "eval": eval_s}
        out.basis = "fitted" if fitted else "flops"
        if not fitted:
            out.note = (
                f"no records: FLOPs at {PRIOR_UTILISATION['train']:.0%} (training) and {PRIOR_UTILISATION['eval']:.0%}"
                f" (inference) of this machine's peak, plus {PRIOR_OVERHEAD_S:g} s at 1e11 FLOP/s"
            )

    def _memory(self, out: Estimate, res: Resolved, kind: str, measured: list[Obs] | None) -> None:
        """The largest peak of the cell's own records, else of the same backbone and method, else backbone."""
        groups = [
            ("this cell", lambda o: o in (measured or [])),
            ("same backbone and method", lambda o: o.backbone == res.backbone and o.method == res.cell.method),
            ("same backbone", lambda o: o.backbone == res.backbone),
        ]
        for label, keep in groups:
            rows = [o for o in self.obs if keep(o) and o.mem]
            if rows:
                out.peak_mem_bytes = max(o.mem for o in rows)
                deltas = [o.mem_delta for o in rows if o.mem_delta]
                own = max(deltas) if deltas else out.peak_mem_bytes - BASE_RSS_BYTES
                out.gpu_mem_bytes = own + CUDA_CONTEXT_BYTES
                out.mem_basis = f"records ({label})"
                return
        ref = REFERENCE_FLOPS.get(res.backbone)
        if ref is None:
            return
        params = ref[3]
        full = res.cell.method in FULL_BACKWARD
        # weights, then gradients and Adam's two moments of what trains, then activations taken as twice the weights
        model = params * 4 * (1 + (3 if full else 0.1 if kind == "train" else 0)) + 2 * params * 4
        out.peak_mem_bytes = BASE_RSS_BYTES + model
        out.gpu_mem_bytes = model + CUDA_CONTEXT_BYTES
        out.mem_basis = "parameters (estimate)"

    def _gpu(self, out: Estimate, shape: Shape) -> None:
        if self.gpu is None or out.basis == "unsupported" or out.train_flops is None:
            return
        peak = self.gpu.bf16 if shape.precision == "bf16" else self.gpu.tf32
        flops = out.train_flops + (out.eval_flops or 0.0)
        out.gpu_seconds = flops / (peak * self.gpu_mfu) + out.steps * GPU_STEP_FLOOR_S + GPU_OVERHEAD_S

    def _test_n(self, task: str, cfg: dict[str, Any]) -> int:
        """Test examples the cell scores: the task's test set as its records show it (both halves), cut by
        ``eval_limit`` and ``test_half``."""
        full = [o.test_n * (2 if (o.record.splits and o.record.splits.test_half) else 1) for o in self.obs
                if o.task == task and o.test_n and not o.record.hparams.get("train", {}).get("eval_limit")]  # fmt: skip
        n = max(full) if full else PRIOR_TEST_EXAMPLES
        if cfg.get("eval_limit"):
            n = min(n, cfg["eval_limit"])
        return math.ceil(n / 2) if cfg.get("test_half") else n

    def _pool(self, task: str) -> int:
        """A task's training pool (budget 0), as its whole-pool records show it; else a guess of 10,000."""
        sizes = [o.shape.budget_n for o in self.obs if o.task == task and o.record.budget == 0]
        return max(sizes) if sizes else 10_000


def _count_forward(res: Resolved) -> float | None:
    import numpy as np

    from bench.run.flops import count

    try:
        train = res.task.load(DataRoot.resolve()).train
        rows = np.sort(np.random.default_rng(0).permutation(len(train))[:32])
        backbone = BACKBONES.get(res.backbone)
        loaded = backbone.load(pretrained=False, **res.task.input_size)
        loaded.encoder.eval()
        sample = train.take(rows)
        c = count(loaded.encoder, loaded.batcher(list(sample.inputs)))
    except (DataError, OSError, RuntimeError, ValueError, TypeError, KeyError):
        return None
    return c.forward / c.n if c.n and not c.uncounted else None


def this_machine(threads: int) -> str | None:
    """This machine's ``env.machine`` hash at ``threads`` (``bench.run.meters.environment``)."""
    return environment("cpu", threads).get("machine")


def _machine(o: Obs) -> tuple[Any, int]:
    env = o.record.env
    return (env.machine if env else None, o.shape.threads)


def _scale(have: tuple[str, int] | None, want: tuple[str, int] | None) -> float:
    if not have or not want or have[0] != want[0] or not have[1]:
        return 1.0
    return (want[1] / have[1]) ** 2 if want[0] == "pixel" else want[1] / have[1]


def _train_prior(fwd: float, method: str, kind: str) -> float | None:
    if kind != "train":
        return None
    return fwd * (3.0 if method in FULL_BACKWARD else 2.0)


def _train_rate(o: Obs, speedup: float) -> float | None:
    """The record's training FLOP/s (with its validation passes), as this machine would run them."""
    if not o.fwd or o.train_s <= 0:
        return None
    if o.kind == "train":
        if not o.train_flops_ex or not o.actual_steps:
            return None
        passes = o.shape.passes * o.actual_steps / o.shape.steps if o.shape.steps else 0.0
        flops = o.actual_steps * o.shape.batch * o.train_flops_ex + passes * o.shape.val_n * o.fwd
    elif o.kind == "probe":
        flops = o.fwd * o.shape.budget_n
    else:
        return None
    return flops / o.train_s * speedup


def _eval_rate(o: Obs, speedup: float) -> float | None:
    if not o.fwd or not o.eval_s:
        return None
    return o.fwd * o.test_n / o.eval_s * speedup


def _overhead_seconds(o: Obs, speedup: float) -> float | None:
    """The record's seconds besides training and testing (loading, the forgetting probe), here."""
    return max(0.0, o.wall - o.train_s - (o.eval_s or 0.0)) / speedup


# ------------------------------------------------------------------------------------------------ the plan
@dataclass
class Plan:
    suite: Suite
    estimates: list[Estimate]
    notes: list[str]

    def phase(self, first_look_only: bool) -> list[Estimate]:
        return [e for e in self.estimates if not first_look_only or e.phase <= 1]


def suite_cells(suite: Suite, pattern: str | None = None, looks: bool = True) -> list[tuple[int, Cell]]:
    """(phase, cell) of every cell the grid may run: sweep cells (0), the suite's own cells and the cells sweeps
    tune (1, a tuned cell that is its sweep's chosen cell is left out: the grid reuses it), and with ``looks`` the
    seeds every later look of an adaptive suite would add if each ran (2, 3, ...)."""
    out: list[tuple[int, Cell]] = []
    for sweep in suite.sweeps:
        out += [(0, c) for c in select(sweep.cells(), pattern)]
        out += [(1, c) for c in select(sweep.dependents(), pattern)
                if not (c.budget == sweep.budget and c.seed in sweep.seeds)]  # fmt: skip
    out += [(1, c) for c in select(suite.cells, pattern)]
    if looks and suite.adaptive is not None:
        have: dict[tuple[str, str, int], set[int]] = {}
        for c in suite.cells:
            have.setdefault((c.task, c.method, c.budget), set()).add(c.seed)
        for (task, method, budget), seeds in have.items():
            base = next(c for c in suite.cells if (c.task, c.method, c.budget) == (task, method, budget))
            counts = (base.allocation or {}).get("looks") or [len(seeds)]
            taken = set(seeds)
            for look, (before, after) in enumerate(itertools.pairwise(counts), start=2):
                new = suite.next_seeds(task, method, budget, taken, after - before)
                taken |= set(new)
                cells = suite.more_seeds(task, method, budget, new, "plan: if every look runs", look)
                out += [(look, c) for c in select(cells, pattern)]
    return out


def make_plan(suite: Suite, model: CostModel, pattern: str | None = None) -> Plan:
    estimates, seen = [], set()
    for phase, cell in suite_cells(suite, pattern):
        e = model.estimate(cell, phase)
        if e.key in seen:
            continue
        seen.add(e.key)
        estimates.append(e)
    notes = []
    if suite.adaptive is not None:
        notes.append(
            f"[adaptive]: looks after the first run only where a comparison is still open, and the grid starts no look "
            f"that would pass the suite's {suite.adaptive.minutes:g} minutes"
        )
    return Plan(suite, estimates, notes)


def total(estimates: Iterable[Estimate], gpu: bool = False) -> float:
    return sum(_seconds(e, gpu) for e in estimates)


def _seconds(e: Estimate, gpu: bool) -> float:
    value = e.gpu_seconds if gpu else e.seconds
    return 0.0 if value is None or math.isnan(value) else value


def makespan(estimates: list[Estimate], jobs: int, gpu: bool = False) -> float:
    """Wall time with ``jobs`` cells at once: each phase (sweeps, cells, each later look) after the previous one,
    its cells in the grid's order, each on the slot that frees first (what the grid's thread pool does). Assumes
    ``jobs`` cells at once each run as fast as the records' cells did."""
    span = 0.0
    for phase in sorted({e.phase for e in estimates}):
        slots = [0.0] * max(1, jobs)
        for e in (e for e in estimates if e.phase == phase):
            i = min(range(len(slots)), key=slots.__getitem__)
            slots[i] += _seconds(e, gpu)
        span += max(slots)
    return span


def within_minutes(estimates: list[Estimate], jobs: int, minutes: float) -> list[Estimate]:
    """The cells an adaptive grid would run at most: the first look, then each later look's cells while the grid's
    own rule lets them start (``bench.run.grid._looks``: a look's cells, per slot and cumulated in order, must end
    within the suite's ``minutes`` counted from the grid's start)."""
    first = [e for e in estimates if e.phase <= 1]
    budget, spent, out = minutes * 60, makespan(first, jobs), list(first)
    for phase in sorted({e.phase for e in estimates if e.phase >= 2}):
        cells, end = [e for e in estimates if e.phase == phase], 0.0
        fits = []
        for e in cells:
            end += _seconds(e, False) / max(1, jobs)
            if spent + end > budget:
                break
            fits.append(e)
        out += fits
        spent += makespan(fits, jobs)
        if len(fits) < len(cells):
            break
    return out


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
