"""General held-out probes: what the backbone could do before adaptation, measured again after it (forgetting).

- ``imagenet-top1`` (efficientnet-lite0): top-1 on the offline ImageNet sample (1000 images, one per class, 224 px)
  through the adapted encoder and the *original* 1000-class classifier, which no method ever trains.
- ``cifar10-linear`` (efficientnet-lite0, second probe): a logistic-regression probe on pooled features, fit and
  scored on CIFAR-10 test images (1000 + 1000): representation quality, independent of the ImageNet head.
- ``stsb-spearman`` (minilm-l6): zero-shot Spearman correlation between the cosine similarity of mean-pooled
  embeddings and the gold scores on STS-B dev (1500 pairs).
- ``wikitext2-ppl`` (smollm2-135m): perplexity on a fixed budget of WikiText-2 test tokens (lower is better, so
  its forgetting drop is after - before).

The baseline is always the untouched pretrained model (never a PEFT-initialised one). Results are cached by the
sha256 fingerprint of the encoder's weights, so the same weights are never probed twice: the baseline is computed
once per backbone, and a frozen backbone's "after" is, by proof of identical weights, its "before".
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from bench.core.data import DataRoot, register_source

PROBE_VERSION = 1
IMAGENET_SAMPLE = "vision/imagenet_sample/imagenet_sample1000_224.tar"
IMAGENET_SAMPLE_ZIP = "https://github.com/EliSchwartz/imagenet-sample-images/archive/refs/heads/master.zip"
STSB_DEV = "nlp/glue/STS-B/dev.tsv"
CIFAR10_PROBE = "vision/cifar10/cifar10_test2000_jpeg.npz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_PROBE_SIZE = 64  # px: CIFAR's 32 px upsampled once; the probe compares before/after, not absolute accuracy


def _fetch_imagenet_sample(path: Path) -> None:
    """Rebuild the mirror's tar from the publisher: one image per class, short side 256, centre crop 224, JPEG q90."""
    import urllib.request
    import zipfile

    from PIL import Image

    raw = io.BytesIO(urllib.request.urlopen(IMAGENET_SAMPLE_ZIP, timeout=300).read())
    with zipfile.ZipFile(raw) as z, tarfile.open(path, "w") as tar:
        for name in sorted(n for n in z.namelist() if n.lower().endswith((".jpeg", ".jpg"))):
            img = Image.open(z.open(name)).convert("RGB")
            scale = 256 / min(img.size)
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
            left, top = (img.width - 224) // 2, (img.height - 224) // 2
            buf = io.BytesIO()
            img.crop((left, top, left + 224, top + 224)).save(buf, "JPEG", quality=90)
            info = tarfile.TarInfo("./" + os.path.basename(name))
            info.size = buf.tell()
            buf.seek(0)
            tar.addfile(info, buf)


def _fetch_stsb_dev(path: Path) -> None:
    import datasets

    rows = datasets.load_dataset("nyu-mll/glue", "stsb", split="validation")
    with path.open("w", encoding="utf-8") as f:
        f.write("sentence1\tsentence2\tscore\n")
        for r in rows:
            f.write(f"{r['sentence1']}\t{r['sentence2']}\t{r['label']}\n")


register_source(
    IMAGENET_SAMPLE,
    _fetch_imagenet_sample,
    f"the 1000-image ImageNet sample from {IMAGENET_SAMPLE_ZIP}, resized and cropped to 224 px",
)
register_source(STSB_DEV, _fetch_stsb_dev, "GLUE stsb validation from the Hugging Face hub dataset nyu-mll/glue")


def _fetch_cifar10_probe(path: Path) -> None:
    """The first 200 test images per class from the publisher's CIFAR-10 (original pixels; the mirror's copy is a
    JPEG re-encode, so its checksum is recorded as a local conversion)."""
    import pickle
    import urllib.request

    raw = io.BytesIO(urllib.request.urlopen(CIFAR10_URL, timeout=300).read())
    with tarfile.open(fileobj=raw) as tar:
        batch = pickle.loads(tar.extractfile("cifar-10-batches-py/test_batch").read(), encoding="bytes")
        meta = pickle.loads(tar.extractfile("cifar-10-batches-py/batches.meta").read(), encoding="bytes")
    images = batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.array(batch[b"labels"])
    keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:200] for c in range(10)]))
    classes = np.array([c.decode() for c in meta[b"label_names"]])
    with path.open("wb") as f:
        np.savez(f, images=images[keep], labels=labels[keep], classes=classes)


register_source(CIFAR10_PROBE, _fetch_cifar10_probe, f"first 200 test images per class of CIFAR-10 from {CIFAR10_URL}")


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    metric: str  # what the number is
    higher_is_better: bool
    fn: Callable
    files: tuple[str, ...]  # what it reads from the data root, for `adaptbench data verify/fetch`
    limited: bool = True  # probe_limit caps its examples; False = a fixed budget (WikiText-2: 2048 tokens)
    # tasks whose data the probe reads too: on them the probe is not held out (it measures the task, not forgetting)
    shares_data_with: tuple[str, ...] = ()
    # a bounded score's facts, for the regression gate's noise floor: examples scored when the record's limit is 0
    # (all), and the score's range (None: unbounded, as perplexity)
    examples: int | None = None
    range: tuple[float, float] | None = None

    def effective_limit(self, limit: int) -> int:
        return limit if self.limited else 0

    def effective_subset(self, limit: int, subset: str) -> str:
        """The subset a probe_limit ``limit`` takes: nothing to choose without a limit ("first" = every example)."""
        return subset if self.effective_limit(limit) else "first"


@cache
def imagenet_sample(data: DataRoot) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1000, 224, 224, 3), labels) - label = index of the WordNet id among the sorted 1000 ids,
    which is the standard ImageNet-1k class order."""
    from PIL import Image

    path = data.file(IMAGENET_SAMPLE)
    names, images = [], []
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.isfile() or not member.name.lower().endswith((".jpeg", ".jpg")):
                continue
            raw = tar.extractfile(member).read()
            img = Image.open(io.BytesIO(raw)).convert("RGB")
            if img.size != (224, 224):
                img = img.resize((224, 224))
            names.append(os.path.basename(member.name).split("_")[0])
            images.append(np.asarray(img))
    wnids = sorted(set(names))
    if len(wnids) != 1000:
        raise ValueError(f"{path}: expected 1000 ImageNet classes, found {len(wnids)}")
    index = {w: i for i, w in enumerate(wnids)}
    return np.stack(images), np.array([index[n] for n in names])


SUBSETS = ("first", "spread")


def probe_rows(n: int, limit: int, subset: str = "first", order: np.ndarray | None = None) -> np.ndarray:
    """Which of a probe's ``n`` examples a ``limit`` keeps: the first ``limit`` ("first", what records before
    ``probe_subset`` used), or ``limit`` rows evenly spread over ``order`` ("spread": over the sorted class ids of the
    ImageNet sample, every k-th class instead of the first 500 ids, mostly animals; over STS-B dev's rows, every
    genre instead of the captions at its start)."""
    if subset not in SUBSETS:
        raise ValueError(f"Invalid probe_subset: {subset!r} (use 'first' or 'spread')")
    if not limit or limit >= n:
        return np.arange(n)
    if subset == "first":
        return np.arange(limit)
    order = np.arange(n) if order is None else order
    return np.sort(order[np.unique(np.linspace(0, n - 1, limit).round().astype(int))])


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def imagenet_top1(
    loaded, data: DataRoot, device: str, limit: int = 0, batch_size: int = 100, subset: str = "first"
) -> float:
    import torch

    images, labels = imagenet_sample(data)
    rows = probe_rows(len(labels), limit, subset, order=np.argsort(labels, kind="stable"))
    images, labels = images[rows], labels[rows]
    head = loaded.extras["imagenet_head"].to(device)
    batcher = loaded.extras["probe_batcher"]
    encoder = loaded.encoder.eval()
    correct = 0
    with torch.inference_mode():
        for sl in _batches(len(labels), batch_size):
            x = batcher(images[sl])["pixel_values"].to(device)
            correct += int((head(encoder(pixel_values=x)).argmax(-1).cpu().numpy() == labels[sl]).sum())
    return correct / len(labels)


@cache
def stsb_dev(data: DataRoot) -> tuple[list[str], list[str], np.ndarray]:
    import csv

    path = data.file(STSB_DEV)
    a, b, score = [], [], []
    with path.open(encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            a.append(row["sentence1"])
            b.append(row["sentence2"])
            score.append(float(row["score"]))
    return a, b, np.array(score)


def stsb_spearman(
    loaded, data: DataRoot, device: str, limit: int = 0, batch_size: int = 128, subset: str = "first"
) -> float:
    import torch
    from scipy.stats import spearmanr

    a, b, gold = stsb_dev(data)
    rows = probe_rows(len(gold), limit, subset)
    a, b, gold = [a[i] for i in rows], [b[i] for i in rows], gold[rows]
    batcher = loaded.extras["probe_batcher"]
    encoder = loaded.encoder.eval()

    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        # sort by length so that padding is small; restore the order afterwards
        order = np.argsort([len(t) for t in texts])
        for sl in _batches(len(texts), batch_size):
            batch = {k: v.to(device) for k, v in batcher([texts[i] for i in order[sl]]).items()}
            out.append(encoder(**batch).float().cpu())
        emb = torch.cat(out)
        result = torch.empty_like(emb)
        result[torch.from_numpy(order)] = emb
        return torch.nn.functional.normalize(result, dim=-1)

    with torch.inference_mode():
        sims = (embed(a) * embed(b)).sum(-1).numpy()
    return float(spearmanr(sims, gold).statistic)


def cifar10_linear(loaded, data: DataRoot, device: str, limit: int = 0, batch_size: int = 200) -> float:
    """Linear-probe accuracy on CIFAR-10 from the encoder's pooled features: 2000 test images (200 per class),
    the first 100 of each class fit a multinomial logistic regression (standardised features, L2, C = 1), the other
    100 of each class score it. A change of representation quality the ImageNet head cannot see."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    with np.load(data.file(CIFAR10_PROBE)) as z:
        images, labels = z["images"], z["labels"].astype(np.int64)
    first = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        first[np.flatnonzero(labels == c)[: (labels == c).sum() // 2]] = True
    batcher, encoder, feats = loaded.extras["make_batcher"](CIFAR10_PROBE_SIZE), loaded.encoder.eval(), []
    with torch.inference_mode():
        for sl in _batches(len(labels), batch_size):
            feats.append(encoder(pixel_values=batcher(images[sl])["pixel_values"].to(device)).float().cpu().numpy())
    x = np.concatenate(feats)
    scaler = StandardScaler().fit(x[first])
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x[first]), labels[first])
    return float((clf.predict(scaler.transform(x[~first])) == labels[~first]).mean())


WIKITEXT2_TEST = "nlp/general/wikitext-2/test.txt"
WIKITEXT_TOKENS = 2048  # fixed token budget (probe_limit, a count of examples, does not apply): ~20 s on 2 cores


def wikitext2_ppl(loaded, data: DataRoot, device: str, limit: int = 0, window: int = 512) -> float:
    """Perplexity of the causal LM on the first ``limit`` tokens (0 = WIKITEXT_TOKENS) of WikiText-2 test, scored in
    non-overlapping windows of ``window`` tokens (every token predicted once, from at most ``window`` of context).
    The harness always uses the fixed budget: probe_limit counts examples, which a token stream does not have."""
    import torch

    text = data.file(WIKITEXT2_TEST).read_text(encoding="utf-8")
    tokenizer = loaded.extras["tokenizer"]
    n_tokens = limit or WIKITEXT_TOKENS
    ids = tokenizer(text[: n_tokens * 8], return_tensors="pt").input_ids[0][: n_tokens + 1]
    lm = loaded.encoder.lm.eval()
    nll, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window):
            chunk = ids[start : start + window + 1].unsqueeze(0).to(device)
            logits = lm(input_ids=chunk[:, :-1]).logits[:, -(chunk.shape[1] - 1) :].float()  # after any soft prompt
            nll += torch.nn.functional.cross_entropy(logits[0], chunk[0, 1:], reduction="sum").item()
            count += chunk.shape[1] - 1
    return float(torch.exp(torch.tensor(nll / count)))


PROBES: dict[str, ProbeSpec] = {
    "wikitext2-ppl": ProbeSpec("wikitext2-ppl", "perplexity", False, wikitext2_ppl, (WIKITEXT2_TEST,), limited=False),
    "imagenet-top1": ProbeSpec(
        "imagenet-top1", "top-1 accuracy", True, imagenet_top1, (IMAGENET_SAMPLE,), examples=1000, range=(0.0, 1.0)
    ),
    "stsb-spearman": ProbeSpec(
        "stsb-spearman",
        "Spearman correlation",
        True,
        stsb_spearman,
        (STSB_DEV,),
        shares_data_with=("glue-stsb",),
        examples=1500,
        range=(-1.0, 1.0),
    ),
    "cifar10-linear": ProbeSpec(
        "cifar10-linear",
        "linear-probe accuracy",
        True,
        cifar10_linear,
        (CIFAR10_PROBE,),
        limited=False,
        shares_data_with=("shift-cifar10-to-cifar10c",),
        examples=1000,  # CIFAR-10's 1000 scored test images (the other 1000 fit the probe)
        range=(0.0, 1.0),
    ),
}


def held_out(probe: str, task: str) -> bool:
    """Whether a forgetting probe's data is apart from the task's (False: glue-stsb and the STS-B probe, the CIFAR-10
    shift task and the CIFAR-10 probe). Decided from the probe's declaration, so older records are judged too."""
    spec = PROBES.get(probe)
    return spec is None or task not in spec.shares_data_with
