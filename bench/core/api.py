"""The shared vocabulary: task spec, data splits, training config, the task and method base classes, cells.

Everything that crosses a module boundary is one of these typed objects. Tasks and methods are frozen
dataclasses whose fields are their hyperparameters, so a cell's hyperparameters are exactly the fields of its
task, method and training config (see ``resolve``), and every one of them lands in the record.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.core import metrics
from bench.core.backbone import Backbone, get_backbone
from bench.core.data import DataRoot, half_subset, holdout_subset, nested_subset

if TYPE_CHECKING:
    from torch import nn

VISION, TEXT = "vision", "text"
CLASSIFICATION, REGRESSION = "classification", "regression"


@dataclass(frozen=True)
class PromptSpec:
    """How a task is put to a language model without training (few-shot / zero-shot prompting): label ``i`` is
    scored as ``label_words[i]`` after the ``instruction`` and the input filled into ``input_template``
    (``{text}`` for single texts, ``{text_a}`` / ``{text_b}`` for pairs).

    ``variants``: other phrasings of the same prompt (instruction, template and label words), the draws that give
    prompting its variance: a prompted cell's seed picks one (``draw``; seed 0 is this one). A task that declares none
    gets two generic rephrasings (an instruction asking for one word; capitalised label words), so no prompt is
    treated as variance-free."""

    label_words: tuple[str, ...]
    instruction: str
    input_template: str
    variants: tuple[PromptSpec, ...] = ()

    def __post_init__(self) -> None:
        if len(self.label_words) < 2 or len(set(self.label_words)) != len(self.label_words):
            raise ValueError(f"Invalid label_words: {self.label_words} (two or more distinct words)")
        if "{text" not in self.input_template:
            raise ValueError(
                f"Invalid input_template: {self.input_template!r} (needs {{text}} or {{text_a}}/{{text_b}})"
            )
        for v in self.variants:
            if len(v.label_words) != len(self.label_words) or v.variants:
                raise ValueError(f"Invalid prompt variant {v}: as many label words as the prompt, and no variants")

    def format(self, item: Any) -> str:
        """The template filled with one example: a string, or an (a, b) pair."""
        if isinstance(item, str):
            return self.input_template.format(text=item)
        if "{text_a}" in self.input_template:
            return self.input_template.format(text_a=item[0], text_b=item[1])
        return self.input_template.format(text=" ".join(item))

    @property
    def phrasings(self) -> tuple[PromptSpec, ...]:
        """This prompt first, then its variants (declared, or the generic rephrasings)."""
        base = PromptSpec(self.label_words, self.instruction, self.input_template)
        variants = self.variants or (
            PromptSpec(self.label_words, f"{self.instruction} Answer with one word.", self.input_template),
            PromptSpec(tuple(w.capitalize() for w in self.label_words), self.instruction, self.input_template),
        )
        return (base, *variants)

    def draw(self, seed: int) -> PromptSpec:
        """The phrasing a seed uses: seed 0 this one, then each variant in turn."""
        return self.phrasings[seed % len(self.phrasings)]


@dataclass(frozen=True)
class TaskSpec:
    """What a task is. ``budgets`` are label budgets (number of training examples); 0 means the full train set."""

    name: str
    version: int
    modality: str
    kind: str
    num_labels: int
    metrics: tuple[str, ...]
    primary_metric: str
    backbone: str
    budgets: tuple[int, ...]
    description: str
    official_splits: bool = True
    prompt: PromptSpec | None = None  # how to prompt a language model with it (None: the task cannot be prompted)

    def __post_init__(self) -> None:
        if self.prompt is not None and len(self.prompt.label_words) != self.num_labels:
            raise ValueError(
                f"task {self.name}: {len(self.prompt.label_words)} label words for {self.num_labels} labels"
            )
        if self.modality not in (VISION, TEXT):
            raise ValueError(f"Invalid modality {self.modality!r} for task {self.name}: use 'vision' or 'text'")
        if self.primary_metric not in self.metrics:
            raise ValueError(f"primary metric {self.primary_metric!r} of {self.name} not in {self.metrics}")
        unknown = [m for m in self.metrics if m not in metrics.METRICS]
        if unknown:
            raise ValueError(
                f"task {self.name}: metric {unknown[0]!r} is not declared in bench.core.metrics.METRICS (known: "
                f"{', '.join(sorted(metrics.METRICS))}); add a Metric there with its function, range, direction, "
                "chance level and resampled form"
            )

    @property
    def higher_is_better(self) -> bool:
        """The primary metric's direction (``bench.core.metrics``): every comparison reads it from here."""
        return metrics.METRICS[self.primary_metric].higher_is_better

    @property
    def sign(self) -> float:
        """+1 when higher is better, -1 when lower is: ``sign * score`` is larger for better."""
        return 1.0 if self.higher_is_better else -1.0

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


EVAL_LIMIT_SEED = 7  # fixed: an eval_limit subset never depends on the cell's seed


@dataclass
class Split:
    """One split: model inputs and labels, index-aligned.

    ``inputs`` is a uint8 array (N, H, W) or (N, H, W, 3) for vision, a list of strings or of (a, b) string pairs
    for text. ``ids`` are stable example ids within the source file, used to prove disjointness and nesting.
    """

    name: str
    inputs: Any
    labels: np.ndarray
    ids: np.ndarray
    pool: str = ""  # the task split whose examples ``ids`` number, when it is not ``name`` (see ``pool_name``)

    def __post_init__(self) -> None:
        if not (len(self.inputs) == len(self.labels) == len(self.ids)):
            raise ValueError(
                f"split {self.name}: {len(self.inputs)} inputs, {len(self.labels)} labels, {len(self.ids)} ids"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def pool_name(self) -> str:
        """The split of the task's pool these examples come from: a validation split carved out of the training
        budget is named ``val`` but its examples (and their cached features) are the training pool's."""
        return self.pool or self.name

    def take(self, index: np.ndarray, name: str | None = None) -> Split:
        """The examples at ``index``; under another ``name``, they keep naming the pool they come from."""
        index = np.asarray(index, dtype=np.int64)
        if isinstance(self.inputs, np.ndarray):
            inputs = self.inputs[index]
        else:
            inputs = [self.inputs[i] for i in index]
        pool = self.pool if name is None or name == self.pool_name else self.pool_name
        return Split(name or self.name, inputs, self.labels[index], self.ids[index], pool)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    test_ood: Split | None = None

    def limit_eval(self, n: int, stratify: bool) -> Splits:
        """The same splits with val and test(s) cut to ``n`` examples: a class-stratified subset drawn with a fixed
        seed, so every cell of a suite is scored on the same examples. For quick checks (the CI proxy), not for
        numbers to publish: the record's split sizes show the cut."""

        def cut(split: Split | None) -> Split | None:
            if split is None or not n or n >= len(split):
                return split
            return split.take(np.sort(nested_subset(split.labels, n, EVAL_LIMIT_SEED, stratify=stratify)))

        return Splits(self.train, cut(self.val), cut(self.test), cut(self.test_ood))

    def half(self, half: int, stratify: bool) -> Splits:
        """The same splits with each test split cut to its half 1 or 2 (``test_half``; 0: whole): two fixed, disjoint,
        class-stratified halves, so two replicates of a suite are scored on different items (see
        ``bench.core.data.half_subset``). Validation and training are untouched."""
        if not half:
            return self

        def cut(split: Split | None) -> Split | None:
            return None if split is None else split.take(half_subset(split.labels, half, stratify))

        return Splits(self.train, self.val, cut(self.test), cut(self.test_ood))

    def hold_out(self, fraction: float, seed: int, stratify: bool) -> tuple[Splits, Split]:
        """validation=budget: the same splits with validation carved out of the training budget (``fraction`` of
        each class, see ``bench.core.data.holdout_subset``) and training on the rest; the task's own validation set is
        not used. Returns them and the whole budget (named ``budget``), for a refit."""
        held = holdout_subset(self.train.labels, fraction, seed, stratify=stratify)
        rest = np.setdiff1d(np.arange(len(self.train)), held)
        carved = Splits(self.train.take(rest), self.train.take(held, name="val"), self.test, self.test_ood)
        return carved, self.train.take(np.arange(len(self.train)), name="budget")


@dataclass(frozen=True)
class TrainConfig:
    """The loop's settings, shared by every method. Tasks and methods override defaults (see resolve)."""

    epochs: int = 3
    batch_size: int = 32
    min_steps: int = 0  # small budgets still get this many optimizer steps (epochs are raised to reach it)
    max_evals: int = 10  # validation passes per cell at most (one per epoch when epochs <= max_evals)
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    eval_batch_size: int = 128
    precision: str = "fp32"  # "bf16" = bf16 autocast, CUDA only
    threads: int = 2  # torch CPU threads; fixed and recorded because the machines are shared and noisy
    probe_limit: int = 0  # examples in the forgetting probe, 0 = the whole probe set
    probe_subset: str = "first"  # which probe_limit examples: "spread" evenly over classes / rows, or the "first"
    eval_limit: int = 0  # examples of val and of each test split, 0 = all (a fixed class-stratified subset)
    group_by_length: bool = True  # text: batches of similar length (less padding); false = plain random batches
    length_unit: str = "chars"  # what group_by_length sorts by: "tokens" (the batcher's, exact) or "chars" (a proxy)
    eval_every: int = 0  # validate every N optimizer steps (and at the end); 0 = max_evals passes spread evenly
    compile: bool = False  # torch.compile the model's forward: an execution option (speed only, same results)
    extra_probes: bool = True  # run the backbone's further forgetting probes too (false: the primary one only)
    # early stopping: stop after this many validation passes without improvement; 0 = off (the fixed schedule)
    patience: int = 0
    # a cap on optimizer steps, 0 = none. With patience on, the run (and its LR schedule) is max_steps long unless
    # validation stops it first; with patience off it only shortens a longer fixed schedule
    max_steps: int = 0
    # where model selection validates: "oracle" = the task's own held-out validation set (large, outside the label
    # budget); "budget" = a class-stratified val_fraction of the budget itself, the rest trains (true few-shot)
    validation: str = "oracle"
    val_fraction: float = 0.2
    refit: bool = False  # validation=budget: retrain on the whole budget for the selected number of steps
    # test on one of two fixed, disjoint, class-stratified halves of each test set (1 or 2; 0 = the whole set), so two
    # replicates of a suite are scored on different items and their agreement is evidence
    test_half: int = 0
    # which validation pass (or candidate) wins a tie of the primary metric: "first" (the earliest) or "loss" (the one
    # with the lower validation loss; a tie on 12 examples' AUROC of 1.0 is common, their losses differ)
    tie_break: str = "first"
    # the learning rate's shape over the run: "linear" (warmup over warmup_ratio, then linear decay to zero at the
    # run's length) or "multistep" (constant after warmup, x0.1 at 50% and again at 75% of the run: MedMNIST v2's)
    lr_schedule: str = "linear"
    # validation=budget below cv_below labels: select (step count and tuned values) by cv_folds-fold cross-validation
    # on the whole budget, the out-of-fold predictions pooled, then refit on the whole budget (VTAB-1k's protocol);
    # 0 = the single carved validation split
    cv_folds: int = 0
    cv_below: int = 128
    # nested tuning (a cell's ``tune`` space): successive halving keeps the best 1/tune_eta of the candidates at each
    # rung; a best value at the edge of a grid adds the next value outward, at most tune_extend times per side
    tune_eta: int = 3
    tune_extend: int = 2
    # a run whose validation score still rose at its end (by more than half the metric's margin over its last quarter)
    # is run again twice as long, up to extend_max times its planned length (1 = never)
    extend_max: int = 1

    # Settings added after records were first written. At its default such a setting is left out of a cell's key,
    # since every earlier record ran with exactly that default behaviour: adding one keeps old records found.
    # A new setting whose default changes behaviour must not be listed here (bump the method or task version).
    KEYED_ONLY_WHEN_SET: ClassVar[frozenset[str]] = frozenset(
        {
            "eval_every",
            "compile",
            "patience",
            "max_steps",
            "validation",
            "val_fraction",
            "refit",
            "extra_probes",
            "length_unit",
            "probe_subset",
            "test_half",
            "tie_break",
            "lr_schedule",
            "cv_folds",
            "cv_below",
            "tune_eta",
            "tune_extend",
            "extend_max",
        }
    )

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size", "threads", "max_evals"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid {name}: {getattr(self, name)} (must be >= 1)")
        for name in ("min_steps", "probe_limit", "eval_limit", "eval_every", "max_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"Invalid {name}: {getattr(self, name)} (must be >= 0; 0 = no limit)")
        if self.patience < 0:
            raise ValueError(f"Invalid patience: {self.patience} (validation passes without improvement; 0 = off)")
        if self.validation not in ("oracle", "budget"):
            raise ValueError(f"Invalid validation: {self.validation!r} (use 'oracle' or 'budget')")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"Invalid val_fraction: {self.val_fraction} (a share of the budget in (0, 1), e.g. 0.2)")
        if self.refit and self.validation != "budget":
            raise ValueError("refit=true needs validation=budget (it retrains on the budget the validation came from)")
        if self.probe_subset not in ("first", "spread"):
            raise ValueError(f"Invalid probe_subset: {self.probe_subset!r} (use 'spread' or 'first')")
        if self.length_unit not in ("chars", "tokens"):
            raise ValueError(f"Invalid length_unit: {self.length_unit!r} (use 'tokens' or 'chars')")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"Invalid precision: {self.precision!r} (use 'fp32' or 'bf16')")
        if self.test_half not in (0, 1, 2):
            raise ValueError(f"Invalid test_half: {self.test_half} (1 or 2 for one half of each test set, 0 = whole)")
        if self.tie_break not in ("first", "loss"):
            raise ValueError(f"Invalid tie_break: {self.tie_break!r} (use 'loss' or 'first')")
        if self.lr_schedule not in ("linear", "multistep"):
            raise ValueError(f"Invalid lr_schedule: {self.lr_schedule!r} (use 'linear' or 'multistep')")
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ValueError(f"Invalid cv_folds: {self.cv_folds} (2 or more folds, or 0 for a single carved split)")
        if self.cv_folds and self.validation != "budget":
            raise ValueError("cv_folds needs validation=budget (its folds are cut from the budget)")
        if self.tune_eta < 2:
            raise ValueError(f"Invalid tune_eta: {self.tune_eta} (successive halving keeps 1/eta: 2 or more)")
        if self.tune_extend < 0 or self.extend_max < 1:
            raise ValueError(
                f"Invalid tune_extend {self.tune_extend} / extend_max {self.extend_max} (>= 0 steps, >= 1 times)"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"Invalid warmup_ratio: {self.warmup_ratio} (must be in [0, 1))")


@dataclass
class Predictor:
    """What a method without gradient steps builds from the training subset: ``module`` maps a batch to outputs
    (logits); ``on_features`` says it reads the frozen backbone's cached features (the harness then replaces the
    model's head with it) rather than raw batches; ``batcher`` replaces the backbone's batcher when the method
    formats inputs itself (prompts); ``notes`` are recorded (e.g. how many demonstrations)."""

    module: Any
    on_features: bool = False
    batcher: Any = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class FitContext:
    """What a method without gradient steps may use to build its predictor."""

    task: Task
    train: Split
    seed: int
    device: str
    encoder: Any  # the backbone (frozen), e.g. ``encoder.lm`` for a causal LM
    tokenizer: Any  # None for vision backbones
    features: Any  # Split -> backbone features (computed once per split)


class Task:
    """Base for tasks. Subclasses are frozen dataclasses (their fields are task hyperparameters, e.g. image size)
    with a class attribute ``spec`` and ``load(data)`` returning the budget-independent pool (train pool, val,
    test[, test_ood]). Budget subsets are cut here so that every task gets the same nesting guarantees."""

    spec: ClassVar[TaskSpec]
    train_defaults: ClassVar[dict[str, Any]] = {}

    def load(self, data: DataRoot) -> Splits:
        raise NotImplementedError

    def files(self) -> tuple[str, ...]:
        """The data files (paths in the data-root layout) this task reads, for `adaptbench data verify/fetch`."""
        return ()

    @property
    def input_size(self) -> dict[str, int]:
        """The input size the backbone's batcher is built for: ``{"image_size": n}`` for a vision task,
        ``{"max_len": n}`` for a text task, read from the task's own field of that name. A task without the field is
        refused with the fix, never given a guessed size."""
        name = "image_size" if self.spec.modality == VISION else "max_len"
        if not hasattr(self, name):
            raise TypeError(
                f"task {self.spec.name} is a {self.spec.modality} task but declares no {name!r} field: add "
                f"`{name}: int = ...` to its dataclass (the size its inputs are prepared at)"
            )
        return {name: int(getattr(self, name))}

    def preflight(self, budget: int) -> None:
        """Refuse a budget this task cannot give, with the fix, before a process starts (declared datasets check
        their pool here; a built-in task's pool is checked by loading it, ``bench.run.harness.check_inputs``)."""

    def data_info(self) -> dict[str, Any] | None:
        """What a record must hold about data that lives outside the data root (a declared dataset: its
        declaration, content fingerprint, test ids' hash and spec); None for a built-in task (pinned checksums)."""
        return None

    @property
    def official_splits(self) -> bool:
        """Whether the splits are the dataset's official ones (a task hyperparameter may change it, e.g. QNLI)."""
        return self.spec.official_splits

    def splits(self, budget: int, seed: int, data: DataRoot) -> Splits:
        pool = self.load(data)
        if budget < 0:
            raise ValueError(f"Invalid budget: {budget} (use a positive number of examples, or 0 for all)")
        if budget == 0 or budget >= len(pool.train):
            train = pool.train
        else:
            stratify = self.spec.kind == CLASSIFICATION
            train = pool.train.take(nested_subset(pool.train.labels, budget, seed, stratify=stratify))
        return Splits(train, pool.val, pool.test, pool.test_ood)

    def evaluate(self, outputs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Metrics from model outputs (logits (N, C) for classification, scores (N,) for regression)."""
        return metrics.compute(self.spec.metrics, outputs, labels, self.spec.kind)


class Method:
    """Base for methods. Subclasses are frozen dataclasses whose fields are hyperparameters, validated in
    ``__post_init__``. A method never owns a loop, a timer or a results file: it prepares the model and says
    which parameters train at which learning rate."""

    name: ClassVar[str]
    version: ClassVar[int] = 1
    trains: ClassVar[bool] = True
    pretrained: ClassVar[bool] = True  # False: the backbone is built with random weights (scratch)
    cache_features: ClassVar[bool] = False  # True: backbone features are computed once, only the head trains
    mergeable: ClassVar[bool] = False  # True: ``merge`` can fold the adaptation into the weights (LoRA family)
    linear_probe: ClassVar[bool] = False  # with cache_features: the head is fitted by L-BFGS over ``self.l2``
    quantize: ClassVar[str | None] = None  # "nf4": the backbone to adapt is loaded 4-bit (QLoRA)
    # What the statistics and the report must know about a method, declared here rather than looked up by its name:
    # ``seedless``: its result does not depend on the seed (no training, no sampled demonstrations), so one record is
    # all there is, one seed is enough, and a paired comparison reuses it for every seed of the other method;
    # ``budget_free``: it reads no training example, so it is the same cell at every budget (one line on a plot);
    # ``min_seeds``: seeds a ranking needs when the statistics' default (3) is not enough, e.g. 5 for a method whose
    # seed draws its demonstrations, a larger source of variance. ``pretrained = False`` is "random init".
    seedless: ClassVar[bool] = False
    budget_free: ClassVar[bool] = False
    min_seeds: ClassVar[int | None] = None
    description: ClassVar[str] = ""
    # names a suite's ``sweep`` may use for one of this method's fields when the field has another name here, e.g.
    # frozen's ``lr`` is its head's learning rate: {"head_lr": "lr"} (see bench.suite)
    sweep_aliases: ClassVar[dict[str, str]] = {}

    @classmethod
    def defaults_for(cls, spec: TaskSpec) -> dict[str, Any]:
        """Per-task overrides of this method's field defaults (e.g. a lower LR for text)."""
        return {}

    @classmethod
    def train_defaults(cls, spec: TaskSpec) -> dict[str, Any]:
        """Per-task overrides of TrainConfig defaults (e.g. more epochs on cached features)."""
        return {}

    @classmethod
    def backbone_for(cls, spec: TaskSpec) -> str | None:
        """The backbone this method needs on the task, when it is not the task's default (None: the default).
        Name a role (``BACKBONES.default("causal-lm")``), never an architecture."""
        return None

    @classmethod
    def mechanism(cls, spec: TaskSpec) -> str | None:
        """What the method does on this task, when one name covers different mechanisms (fewshot: in-context
        prompting of a causal LM on text, nearest class mean on images): a few words the report shows after the
        name, so two mechanisms never share a label. None: the name says it."""
        return None

    def unsupported_reason(self, task: TaskSpec, backbone: Backbone) -> str | None:
        """Why this method cannot run on this task with this backbone (None: it can). Ask the backbone's
        ``traits()``, never its name. Callers use ``Resolved.unsupported_reason``, which also checks modalities."""
        return None

    def predictor(self, ctx: FitContext) -> Predictor:
        """For ``trains = False`` methods: build the predictor from the training subset (demonstrations, class
        means) without gradient steps."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, backbone: Backbone, task: Task) -> nn.Module:
        """Freeze, wrap or inject into ``model`` (in place is fine) and return it. ``task`` gives the input
        settings (e.g. ``image_size``) that some methods size their parameters by."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        raise NotImplementedError

    def train_mode(self, model: nn.Module) -> None:
        """Put the model in training mode; methods that keep a frozen backbone keep its batch-norm stats fixed."""
        model.train()

    def merge(self, model: nn.Module) -> bool:
        """Fold the adaptation into the base weights for inference, if the method can (LoRA family: set
        ``mergeable``; the harness measures merged inference only for those)."""
        return False

    def on_step(self, model: nn.Module, step: int, total_steps: int) -> None:
        """Called before every optimizer step (1-based), e.g. to unfreeze blocks on a schedule."""

    def penalty(self, model: nn.Module) -> Any:
        """An extra loss term (a tensor) added to the task loss, e.g. L2-SP; None for no penalty."""
        return None


# ---------------------------------------------------------------------------------------------- tuning
@dataclass(frozen=True)
class TuneSpec:
    """Hyperparameters tuned inside each replicate (nested tuning, ``bench.run.tuning``): every seed of a cell tries
    these values of its method's fields on its own validation data and keeps the best, so the spread over seeds holds
    the tuning's own noise, and no seed's choice is another seed's.

    ``grid``: (field, values) pairs, every combination tried; numeric values are kept sorted, which is what a grid's
    edge means (a best value there adds the next one outward, ``TrainConfig.tune_extend``). ``ranges``: (field, low,
    high) log ranges with ``points`` quasi-random points in them (a scrambled Halton sequence drawn by the cell's seed:
    AlgoPerf's quasi-random search), the product with the grid when both are given. A suite writes
    ``tune = { lr = [3e-5, 1e-4, 3e-4] }`` or ``tune = { lr = { log_range = [1e-5, 1e-3] }, points = 4 }``; the
    command line ``--set tune.lr=3e-5,1e-4,3e-4``."""

    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    ranges: tuple[tuple[str, float, float], ...] = ()
    points: int = 0

    def __post_init__(self) -> None:
        if not self.grid and not self.ranges:
            raise ValueError("tune: nothing to tune; give a field and its values, e.g. tune = { lr = [1e-4, 1e-3] }")
        if self.ranges and self.points < 1:
            raise ValueError("tune: a log_range needs points = N (how many quasi-random points to try), e.g. 4")
        if self.points and not self.ranges:
            raise ValueError("tune: points without a log_range; give e.g. lr = { log_range = [1e-5, 1e-3] }")
        for name, low, high in self.ranges:
            if not 0 < low < high:
                raise ValueError(f"tune {name}: log_range needs 0 < low < high, not [{low}, {high}]")
        names = self.fields
        if len(set(names)) != len(names):
            raise ValueError(f"tune: a field is tuned twice ({', '.join(names)})")

    @property
    def fields(self) -> list[str]:
        return [name for name, _ in self.grid] + [name for name, _, _ in self.ranges]

    def as_dict(self) -> dict[str, Any]:
        """The form a suite writes (and a key holds)."""
        out: dict[str, Any] = {name: list(values) for name, values in self.grid}
        out.update({name: {"log_range": [low, high]} for name, low, high in self.ranges})
        if self.points:
            out["points"] = self.points
        return out

    @classmethod
    def parse(cls, value: Any, field_of: Any) -> TuneSpec:
        """From a suite's table (or ``--set tune.<name>=a,b,c``): ``field_of(name)`` maps a key to the method field it
        tunes (raising ValueError with the fix for a key that names none)."""
        if not isinstance(value, dict) or not value:
            raise ValueError(
                f"tune must be a table of field = [values], e.g. tune = {{ lr = [1e-4, 1e-3] }}, not {value!r}"
            )
        grid, ranges, points = [], [], 0
        for key, values in value.items():
            if key == "points":
                if isinstance(values, bool) or not isinstance(values, int) or values < 1:
                    raise ValueError(f"tune points: a positive number of quasi-random points, not {values!r}")
                points = values
                continue
            name = field_of(key)
            if isinstance(values, str):
                values = [v.strip() for v in values.split(",") if v.strip()]
            if isinstance(values, dict):
                bounds = values.get("log_range")
                if set(values) != {"log_range"} or not isinstance(bounds, list | tuple) or len(bounds) != 2:
                    raise ValueError(f"tune {key}: a range is {{ log_range = [low, high] }}, not {values!r}")
                ranges.append((name, float(bounds[0]), float(bounds[1])))
                continue
            if not isinstance(values, list | tuple) or not values:
                raise ValueError(
                    f"tune {key}: a non-empty list of values to try, e.g. [1e-4, 3e-4, 1e-3], not {values!r}"
                )
            values = [_number(v) for v in values]
            if any(isinstance(v, dict | list) for v in values):
                raise ValueError(f"tune {key}: values must be numbers, strings or booleans, not {values!r}")
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"tune {key}: a value is listed twice in {values!r}")
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                values = sorted(values)
            grid.append((name, tuple(values)))
        return cls(tuple(grid), tuple(ranges), points)

    def candidates(self, seed: int) -> list[dict[str, Any]]:
        """Every combination to try, in a fixed order (grid order; range points in the sequence's order)."""
        import itertools

        combos = [
            dict(zip([n for n, _ in self.grid], c, strict=True)) for c in itertools.product(*(v for _, v in self.grid))
        ]
        if not self.ranges:
            return combos
        from scipy.stats import qmc

        unit = qmc.Halton(d=len(self.ranges), scramble=True, seed=seed).random(self.points)
        drawn = [
            {name: float(10 ** (np.log10(low) + u * (np.log10(high) - np.log10(low)))) for (name, low, high), u in
             zip(self.ranges, row, strict=True)}
            for row in unit
        ]  # fmt: skip
        return [{**c, **d} for c in combos for d in drawn]

    def outward(self, name: str, tried: list[Any], side: int) -> Any | None:
        """The next value of grid field ``name`` beyond the edge of the values ``tried`` (side -1: below the lowest, +1:
        above the highest), one grid step away (the ratio of the grid's two values at that edge); None when the field is
        not a numeric grid of two or more values."""
        values = dict(self.grid).get(name)
        numeric = [v for v in tried if isinstance(v, int | float) and not isinstance(v, bool)]
        if values is None or len(values) < 2 or len(numeric) != len(tried) or min(values) <= 0:
            return None
        ordered = sorted(set(numeric))
        ratio = values[1] / values[0] if side < 0 else values[-1] / values[-2]
        nxt = ordered[0] / ratio if side < 0 else ordered[-1] * ratio
        if all(isinstance(v, int) for v in values):
            nxt = round(nxt)
            if nxt in ordered or nxt <= 0:
                return None
        return float(f"{nxt:.6g}") if isinstance(nxt, float) else nxt


def _number(v: Any) -> Any:
    """A value from ``--set tune.lr=1e-4,3e-4`` as a number when it reads as one."""
    if not isinstance(v, str):
        return v
    for kind in (int, float):
        try:
            return kind(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


# ---------------------------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class Cell:
    task: str
    method: str
    budget: int
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)  # user/suite settings, routed by resolve
    suite: str = "adhoc"
    # a suite cell whose swept settings a sweep chose (bench.suite): which sweep, its cells and scores. Not part of
    # the key (the settings it chose are); copied into the record
    tuned_from: dict[str, Any] | None = None
    # an adaptive grid's seed: which look of the sequential design added it and why (bench.suite). Not part of the
    # key (the seed is); copied into the record
    allocation: dict[str, Any] | None = None

    def describe(self) -> str:
        budget = "all" if self.budget == 0 else self.budget
        extra = "".join(f" {k}={v}" for k, v in sorted(self.overrides.items()))
        return f"{self.task} x {self.method} @ {budget} (seed {self.seed}){extra}"


@dataclass(frozen=True)
class Resolved:
    """A cell with its task, method and training config instantiated, and the key that names its record (with what
    names its backbone's weights when the name alone does not: ``backbone_identity``)."""

    cell: Cell
    task: Task
    method: Method
    train: TrainConfig
    backbone: str
    tune: TuneSpec | None = None  # values of the method tuned inside each replicate (``tune`` in the overrides)

    def __post_init__(self) -> None:
        # read where the backbone registry is filled (``catalog.resolve``), so a pickled cell carries it to a process
        # that never imported the backbones (a cell's process, a Ray worker) and its key there is the same
        _ = self.backbone_identity

    @property
    def hparams(self) -> dict[str, Any]:
        return {
            "task": dataclasses.asdict(self.task),
            "method": dataclasses.asdict(self.method),
            "train": dataclasses.asdict(self.train),
        }

    def unsupported_reason(self) -> str | None:
        """The one answer to "can this cell run?", used by run, grid, ``ls --matrix`` and the report."""
        spec, backbone = self.task.spec, get_backbone(self.backbone)
        if backbone.modality != spec.modality:
            return f"backbone {backbone.name} is a {backbone.modality} model and {spec.name} a {spec.modality} task"
        return self.method.unsupported_reason(spec, backbone)

    @property
    def key(self) -> str:
        return self._key()

    @functools.cached_property
    def backbone_identity(self) -> dict[str, Any] | None:
        """What names the backbone's weights beyond its name (``Backbone.identity``: a local folder's digest, a hub
        commit; None for the built-in entries). Read once per resolved cell and kept with it, so the key a grid
        computes and the one its cell's process records are the same (it travels with the cell)."""
        return get_backbone(self.backbone).identity()

    def pending_key(self, fields: list[str]) -> str:
        """The key of this cell with the method's ``fields`` left to a sweep that chose nothing (it failed): the
        record that says so can never be taken for a run at the fields' default values."""
        return self._key({name: "pending: to be chosen by a sweep" for name in fields})

    def _key(self, method_fields: dict[str, Any] | None = None) -> str:
        hparams = {
            name: _keyed(obj) for name, obj in (("task", self.task), ("method", self.method), ("train", self.train))
        }
        hparams["method"].update(method_fields or {})
        ident = {
            "task": [self.cell.task, self.task.spec.version],
            "method": [self.cell.method, self.method.version],
            "hparams": hparams,
            "budget": self.cell.budget,
            "seed": self.cell.seed,
            "backbone": self.backbone,
        }
        if self.tune is not None:  # only then: every earlier key stays the same
            ident["tune"] = self.tune.as_dict()
        if self.backbone_identity is not None:  # only then (not the built-in entries): their keys stay the same
            ident["backbone_identity"] = self.backbone_identity
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.cell.task}__{self.cell.method}__b{self.cell.budget}__s{self.cell.seed}__{digest}"


def _keyed(obj: Any) -> dict[str, Any]:
    """The fields of a task, method or training config that name a cell (see TrainConfig.KEYED_ONLY_WHEN_SET)."""
    later = getattr(type(obj), "KEYED_ONLY_WHEN_SET", frozenset())
    defaults = {f.name: f.default for f in dataclasses.fields(obj)}
    return {k: v for k, v in dataclasses.asdict(obj).items() if k not in later or v != defaults[k]}
