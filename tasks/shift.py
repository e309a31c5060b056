"""Domain shift: train on a source domain, score in domain (``test``) and out of domain (``test_ood``).

Text (review sentiment, label 1 = positive; MiniLM-L6, ``max_len`` 128 as reviews are long):
- ``shift-sst2-to-{books,dvd,electronics,kitchen}``: train pool, val and test (SST-2 dev, 872) as glue-sst2;
  test_ood = the 400-review test part of that Amazon domain.
- ``shift-amazon-{src}-to-{tgt}``: the 12 ordered pairs of the Blitzer et al. (2007) Amazon domains (1000 positive +
  1000 negative reviews each, split once into test 400 / val 200 / train pool 1400); train and val are src's, test is
  src's test part and test_ood tgt's: both 400 and balanced, so the gap compares like with like.
- ``shift-imdb-to-airline``: the bert-AAD IMDB (1000/1000) and airline (932 negative / 1068 positive) files, split the
  same way. Texts that occur twice in a domain (~2% of each Blitzer domain: one review posted for several products)
  go to the train pool, so no val or test text is also a training text.

Vision (EfficientNet-Lite0, 10 classes; ``image_size`` 32 by default: both sources are <= 32 px, a larger input adds
no detail, and 32 px keeps a CPU cell cheap):
- ``shift-mnist-to-usps``: the MNIST test set (the only MNIST offline) split into test 2000 / val 1000 / pool 7000;
  test_ood = the USPS test set (2007, imbalanced: 359 zeros .. 147 sevens; 16 x 16 in [-1, 1], labels 1..10 = digits
  0..9) mapped to uint8 and resized to 28 px (bilinear). Both are upright white digits on black (checked on mean
  images); USPS digits fill their frame, MNIST's sit in a 20 px box.
- ``shift-cifar10-to-cifar10c``: the CIFAR-10 test set less its first 200 images per class (the forgetting probe
  cifar10_test2000_jpeg.npz, checked pixel for pixel) split into test 2000 / val 1000 / pool 5000; test_ood = each
  test image under one of VARIANTS (250 each, 25 per class) made with ``imagecorruptions`` (the ImageNet-C code,
  Hendrycks & Dietterich 2019), made once and cached in $ADAPTBENCH_CACHE/derived. Its severities are ImageNet-C's,
  harsher at 32 px than CIFAR-10-C's. The mirror's CIFAR ResNet-20 scores 80% on test, 42% on test_ood; at severity
  3/5: gaussian_noise 14/11% (near chance: a CIFAR-only model never saw such noise), zoom_blur 52/46%, brightness
  73/54%, jpeg_compression 49/33%. Unusable with numpy 2 / scikit-image 0.26: fog, gaussian_blur,
  glass_blur (removed APIs) and impulse_noise (its own unseeded generator: not reproducible).

Splits are carved class-stratified with a fixed seed (never the cell's). An id is the row in the source file plus
10_000_000 x the file's place in FILES, so disjointness is provable by ids.
Version history: 1 - first version.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench.core.api import CLASSIFICATION, TEXT, VISION, PromptSpec, Split, Splits, Task, TaskSpec
from bench.core.cache import cache_dir
from bench.core.data import DataError, DataRoot, register_source, sha256
from bench.core.registry import TASKS
from tasks.medmnist import _download

VERSION = 1
SPLIT_SEED = 31337  # fixed: carved splits and corruptions never depend on the cell's seed or budget
BLITZER = ("books", "dvd", "electronics", "kitchen")
MNIST_IMAGES, MNIST_LABELS = "vision/digits/t10k-images-idx3-ubyte.gz", "vision/digits/t10k-labels-idx1-ubyte.gz"
USPS = "vision/digits/usps.t.bz2"
CIFAR, CIFAR_C = "vision/cifar10/cifar10_test_jpeg.npz", "derived/cifar10c"  # the second is made here
CORRUPTIONS = ("gaussian_noise", "zoom_blur", "brightness", "jpeg_compression")  # noise, blur, weather, digital
VARIANTS = tuple(itertools.product(CORRUPTIONS, (3, 5)))  # (type, severity)
# Append only: ids are 10_000_000 x the place of their file here + the row (0 and 1 are SST-2's, as in tasks.glue).
FILES = (
    *("nlp/glue/SST-2/train.tsv", "nlp/glue/SST-2/dev.tsv"),
    *(f"nlp/domain/amazon_blitzer/{d}/{p}.review" for d in BLITZER for p in ("negative", "positive")),
    *(f"nlp/domain/bert-AAD-extra/{d}/{d}.csv" for d in ("imdb", "airline")),
    *(MNIST_IMAGES, USPS, CIFAR, CIFAR_C),
)


def _ids(rel: str, rows: np.ndarray) -> np.ndarray:
    return 10_000_000 * FILES.index(rel) + rows


def _named(split: Split, name: str) -> Split:
    return dataclasses.replace(split, name=name)


def _carve(split: Split, test: int, val: int, pool_only: np.ndarray | None = None) -> Splits:
    """Disjoint class-stratified test and val of the given sizes (SPLIT_SEED) and the rest as train pool.
    Quotas follow the class proportions (largest remainder); ``pool_only`` examples go to the pool."""
    rng = np.random.default_rng(SPLIT_SEED)
    classes, counts = np.unique(split.labels, return_counts=True)
    free = np.ones(len(split), bool) if pool_only is None else ~pool_only
    parts = []
    for size in (test, val):
        raw = size * counts / counts.sum()
        quota = np.floor(raw).astype(np.int64)
        quota[np.argsort(quota - raw, kind="stable")[: size - quota.sum()]] += 1
        members = [rng.permutation(np.flatnonzero((split.labels == c) & free)) for c in classes]
        if any(len(m) < q for m, q in zip(members, quota, strict=True)):
            raise ValueError(f"cannot carve {size} class-stratified examples from {len(split)} ({split.name})")
        parts.append(np.sort(np.concatenate([m[:q] for m, q in zip(members, quota, strict=True)])))
        free[parts[-1]] = False
    pool = np.setdiff1d(np.arange(len(split)), np.concatenate(parts))
    return Splits(*(_named(split.take(i), n) for i, n in ((pool, "train"), (parts[1], "val"), (parts[0], "test"))))


# ---------------------------------------------------------------------------------------------------- text
@cache
def _read_blitzer(path: Path) -> tuple[str, ...]:
    text = path.read_bytes().decode("utf-8", errors="replace")  # utf-8; characters lost upstream are U+FFFD
    reviews = tuple(" ".join(r.split()) for r in re.findall(r"<review_text>(.*?)</review_text>", text, re.S))
    if not reviews or len(reviews) != text.count("<review>"):
        found = f"{len(reviews)} <review_text> in {text.count('<review>')} <review>"
        raise DataError(f"{path}: expected Blitzer pseudo-XML, one <review_text> per <review> ({found})")
    return reviews


@cache
def _read_aad(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or set(rows[0]) != {"reviews", "labels"} or any(r["labels"] not in ("0", "1") for r in rows):
        raise DataError(f"{path}: expected a CSV with columns reviews,labels and labels 0/1")
    return tuple(" ".join(r["reviews"].split()) for r in rows), np.array([int(r["labels"]) for r in rows])


def _text_files(name: str) -> tuple[str, ...]:
    if name == "sst2":
        return TASKS.get("glue-sst2")().files()
    if name in BLITZER:
        return tuple(f"nlp/domain/amazon_blitzer/{name}/{polarity}.review" for polarity in ("negative", "positive"))
    return (f"nlp/domain/bert-AAD-extra/{name}/{name}.csv",)


@cache
def _text_domain(data: DataRoot, name: str) -> Splits:
    if name == "sst2":
        return TASKS.get("glue-sst2")().load(data)
    texts, labels, ids = [], [], []
    if name in BLITZER:
        for label, rel in enumerate(_text_files(name)):
            reviews = _read_blitzer(data.file(rel))
            texts += reviews
            labels.append(np.full(len(reviews), label))
            ids.append(_ids(rel, np.arange(len(reviews))))
    else:
        (rel,) = _text_files(name)
        reviews, polarity = _read_aad(data.file(rel))
        texts, labels, ids = list(reviews), [polarity], [_ids(rel, np.arange(len(reviews)))]
    seen = Counter(texts)
    domain = Split(name, texts, np.concatenate(labels), np.concatenate(ids))
    return _carve(domain, 400, 200, pool_only=np.array([seen[t] > 1 for t in texts]))


@dataclass(frozen=True)
class TextShiftTask(Task):
    source: ClassVar[str]
    target: ClassVar[str]
    train_defaults: ClassVar[dict] = {"batch_size": 32, "epochs": 3, "min_steps": 60}

    max_len: int = 128

    def __post_init__(self) -> None:
        if not 8 <= self.max_len <= 512:
            raise ValueError(f"Invalid max_len: {self.max_len} (tokens, 8..512)")

    def files(self) -> tuple[str, ...]:
        return _text_files(self.source) + _text_files(self.target)

    def load(self, data: DataRoot) -> Splits:
        src = _text_domain(data, self.source)
        return Splits(src.train, src.val, src.test, _named(_text_domain(data, self.target).test, "test_ood"))


# -------------------------------------------------------------------------------------------------- vision
@cache
def _read_idx(path: Path) -> np.ndarray:
    import gzip

    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3] if len(raw) > 4 else 0
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if raw[:3] != b"\0\0\x08" or not shape or len(raw) != 4 + 4 * ndim + int(np.prod(shape)):
        raise DataError(f"{path}: not an idx file of unsigned bytes (the MNIST format)")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@cache
def _read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """USPS in LIBSVM format (dense: 256 ascending features) -> uint8 (N, 28, 28) images and labels 0..9."""
    import bz2

    from PIL import Image

    rows = [line.split() for line in bz2.decompress(path.read_bytes()).decode("latin-1").splitlines()]
    try:
        labels = np.array([int(float(r[0])) for r in rows]) - 1
        pixels = np.array([[float(kv.split(":")[1]) for kv in r[1:]] for r in rows], dtype=np.float32)
    except (ValueError, IndexError):
        labels = pixels = np.zeros(0)
    if pixels.shape[1:] != (256,) or not 0 <= labels.min() <= labels.max() <= 9:
        raise DataError(f"{path}: expected LIBSVM lines 'label 1:v .. 256:v' with labels 1..10 (USPS 16 x 16)")
    grey = np.round((pixels.clip(-1, 1) + 1) * 127.5).astype(np.uint8).reshape(-1, 16, 16)
    return np.stack([np.asarray(Image.fromarray(g).resize((28, 28), Image.BILINEAR)) for g in grey]), labels


@cache
def _read_cifar(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as z:
        if "images" not in z or "labels" not in z or z["images"].shape[1:] != (32, 32, 3):
            raise DataError(f"{path}: expected keys images (N, 32, 32, 3) uint8 and labels")
        return z["images"], z["labels"].astype(np.int64)


def _digits(data: DataRoot) -> Splits:
    images, labels = _read_idx(data.file(MNIST_IMAGES)), _read_idx(data.file(MNIST_LABELS)).astype(np.int64)
    src = _carve(Split("mnist", images, labels, _ids(MNIST_IMAGES, np.arange(len(labels)))), 2000, 1000)
    usps, usps_labels = _read_usps(data.file(USPS))
    ood = Split("test_ood", usps, usps_labels, _ids(USPS, np.arange(len(usps_labels))))
    return Splits(src.train, src.val, src.test, ood)


def _cifar(data: DataRoot) -> Splits:
    path = data.file(CIFAR)
    images, labels = _read_cifar(path)
    probe = np.concatenate([np.flatnonzero(labels == c)[:200] for c in np.unique(labels)])  # the probe file
    rows = np.setdiff1d(np.arange(len(labels)), probe)
    src = _carve(Split("cifar10", images[rows], labels[rows], _ids(CIFAR, rows)), 2000, 1000)
    return Splits(src.train, src.val, src.test, _corrupted(src.test, sha256(path)))


def _corrupted(test: Split, source_sha: str) -> Split:
    """test_ood of the CIFAR task, cached by its inputs, VARIANTS and the versions of the code that makes it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        versions = [version(p) for p in ("imagecorruptions", "numpy", "scipy", "scikit-image", "opencv-python")]
    except PackageNotFoundError as e:
        raise RuntimeError(f"{e.name} is not installed: pip install -r requirements.lock") from e
    ident = json.dumps([VERSION, SPLIT_SEED, source_sha, test.ids.tolist(), VARIANTS, versions])
    path = cache_dir() / "derived" / f"cifar10c-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # written whole, then renamed: never a torn file
        try:
            with tmp.open("wb") as f:
                np.savez(f, **_corrupt(test))
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    with np.load(path) as z:
        return Split("test_ood", z["images"], test.labels, _ids(CIFAR_C, test.ids % 10_000_000))


def _corrupt(test: Split) -> dict[str, np.ndarray]:
    """Each test image under one variant, assigned class by class so every variant gets an equal share."""
    corrupt = _corrupt_fn()
    rng = np.random.default_rng(SPLIT_SEED)
    variant = np.empty(len(test), np.int64)
    for c in np.unique(test.labels):
        members = rng.permutation(np.flatnonzero(test.labels == c))
        variant[members] = np.arange(len(members)) % len(VARIANTS)
    images = np.empty_like(test.inputs)
    state = np.random.get_state()  # imagecorruptions draws from numpy's global RNG: leave the cell's as it was
    try:
        for v, (name, severity) in enumerate(VARIANTS):
            np.random.seed(SPLIT_SEED + v)
            for i in np.flatnonzero(variant == v):
                images[i] = corrupt(test.inputs[i], severity=severity, corruption_name=name)
    finally:
        np.random.set_state(state)
    return {"images": images, "variant": variant, "variants": np.array([f"{n}-{s}" for n, s in VARIANTS])}


def _corrupt_fn() -> Callable[..., np.ndarray]:
    """imagecorruptions.corrupt. Version 1.1.2 imports pkg_resources (gone from setuptools >= 81) only to locate its
    frost images; where it is missing, a stand-in with that one function is in sys.modules for the import only."""
    import importlib.util
    import sys
    import types
    import warnings

    stub = None
    if importlib.util.find_spec("pkg_resources") is None:
        stub = sys.modules["pkg_resources"] = types.ModuleType("pkg_resources")
        stub.resource_filename = lambda package, name: str(Path(sys.modules[package].__file__).parent / name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # it imports scipy.ndimage.interpolation
            from imagecorruptions import corrupt
    finally:
        if stub is not None:
            del sys.modules["pkg_resources"]
    return corrupt


@dataclass(frozen=True)
class VisionShiftTask(Task):
    pool: ClassVar[Callable[[DataRoot], Splits]]
    sources: ClassVar[tuple[str, ...]]  # the data files ``pool`` reads
    train_defaults: ClassVar[dict] = {"batch_size": 32, "epochs": 3, "min_steps": 60}

    image_size: int = 32

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 512:
            raise ValueError(f"Invalid image_size: {self.image_size} (use 16..512; 32 is the default)")

    def files(self) -> tuple[str, ...]:
        return self.sources

    def load(self, data: DataRoot) -> Splits:
        return self.pool(data)


# ------------------------------------------------------------------------------------------------ registry
REVIEW_PROMPT = PromptSpec(
    label_words=("negative", "positive"),
    instruction="Classify the sentiment of each review as positive or negative.",
    input_template="Review: {text}\nSentiment:",
    variants=(  # other phrasings: the draws of zeroshot and fewshot (bench.core.api.PromptSpec)
        PromptSpec(
            ("negative", "positive"), "Is the sentiment of each review positive or negative?", "Text: {text}\nAnswer:"
        ),
        PromptSpec(("bad", "good"), "Say whether each review is good or bad.", "Review: {text}\nVerdict:"),
        PromptSpec(("no", "yes"), "Was the reviewer satisfied? Answer yes or no.", "Review: {text}\nSatisfied:"),
        PromptSpec(("Negative", "Positive"), "Sentiment classification.", "{text}\nSentiment:"),
    ),
)


def shift_task(name: str, base: type[Task], description: str, **attrs):
    text = base is TextShiftTask
    spec = TaskSpec(
        name=name,
        version=VERSION,
        modality=TEXT if text else VISION,
        kind=CLASSIFICATION,
        num_labels=2 if text else 10,
        metrics=("accuracy",),
        primary_metric="accuracy",
        backbone="minilm-l6" if text else "efficientnet-lite0",
        budgets=(64, 256, 1024),
        description=description,
        official_splits=False,
        prompt=REVIEW_PROMPT if text else None,
    )
    cls_name = "".join(part.capitalize() for part in name.split("-"))
    return TASKS.register(name)(dataclass(frozen=True)(type(cls_name, (base,), {"spec": spec, **attrs})))


_TITLES = {"sst2": "SST-2", "imdb": "IMDB", "airline": "airline", **{d: f"Amazon {d}" for d in BLITZER}}
for _src, _tgt in [*(("sst2", t) for t in BLITZER), *itertools.permutations(BLITZER, 2), ("imdb", "airline")]:
    _parts = "as glue-sst2 (test = SST-2 dev, 872)" if _src == "sst2" else f"pool 1400 / val 200 / test 400 of {_src}"
    shift_task(
        f"shift-{'amazon-' * (_src in BLITZER)}{_src}-to-{_tgt}",
        TextShiftTask,
        f"{_TITLES[_src]} -> {_TITLES[_tgt]} review sentiment: {_parts}; test_ood 400 {_TITLES[_tgt]} reviews",
        source=_src,
        target=_tgt,
    )
shift_task(
    "shift-mnist-to-usps",
    VisionShiftTask,
    "MNIST -> USPS digits: pool 7000 / val 1000 / test 2000 of the MNIST test set; test_ood USPS test (2007)",
    pool=staticmethod(_digits),
    sources=(MNIST_IMAGES, MNIST_LABELS, USPS),
)
shift_task(
    "shift-cifar10-to-cifar10c",
    VisionShiftTask,
    "CIFAR-10 -> corrupted CIFAR-10: pool 5000 / val 1000 / test 2000 of the test set less the forgetting probe; "
    f"test_ood the 2000 test images, each under one of {len(VARIANTS)} corruptions (type x severity)",
    pool=staticmethod(_cifar),
    sources=(CIFAR,),
)
for _rel, _url in (
    (MNIST_IMAGES, "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz"),  # torchvision's copy
    (MNIST_LABELS, "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz"),
    (USPS, "https://www.csie.ntu.edu.tw/~cjlin/libsvmtools/datasets/multiclass/usps.t.bz2"),  # the LIBSVM site
):
    register_source(_rel, _download(_url), f"{Path(_rel).name} from {_url} (the same bytes: its sha256 is pinned)")
