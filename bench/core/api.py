"""The shared vocabulary: task spec, data splits, training config, the task and method base classes, cells.

Everything that crosses a module boundary is one of these typed objects. Tasks and methods are frozen
dataclasses whose fields are their hyperparameters, so a cell's hyperparameters are exactly the fields of its
task, method and training config (see ``resolve``), and every one of them lands in the record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from bench.core import metrics
from bench.core.backbone import Backbone, get_backbone
from bench.core.data import DataRoot, holdout_subset, nested_subset

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

    def describe(self) -> str:
        budget = "all" if self.budget == 0 else self.budget
        extra = "".join(f" {k}={v}" for k, v in sorted(self.overrides.items()))
        return f"{self.task} x {self.method} @ {budget} (seed {self.seed}){extra}"


@dataclass(frozen=True)
class Resolved:
    """A cell with its task, method and training config instantiated, and the key that names its record."""

    cell: Cell
    task: Task
    method: Method
    train: TrainConfig
    backbone: str

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
        digest = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.cell.task}__{self.cell.method}__b{self.cell.budget}__s{self.cell.seed}__{digest}"


def _keyed(obj: Any) -> dict[str, Any]:
    """The fields of a task, method or training config that name a cell (see TrainConfig.KEYED_ONLY_WHEN_SET)."""
    later = getattr(type(obj), "KEYED_ONLY_WHEN_SET", frozenset())
    defaults = {f.name: f.default for f in dataclasses.fields(obj)}
    return {k: v for k, v in dataclasses.asdict(obj).items() if k not in later or v != defaults[k]}
