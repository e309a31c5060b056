"""MedMNIST v2 (Yang et al. 2023): 28 x 28 medical images with official train/val/test splits.

ImageNet -> medical is a hard covariate shift (grey X-rays; ImageNet batch-norm statistics meet very different
inputs). Images are replicated to 3 channels and upsampled to ``image_size`` for the ImageNet backbone: 64 px by
default, chosen for CPU speed (EfficientNet-Lite0 runs ~10x faster at 64 than at 224 px, and the 28 px source
carries no detail that 224 px would reveal). Metrics: AUROC (primary; classes are imbalanced) and accuracy.
Offline files come from the mirror (md5 equal to the official release); online, from the publisher (Zenodo).
Only pneumonia and breast are in the offline mirror; the other datasets of the family are registered too and run
where the publisher is reachable (files land in the same layout under the data root, ``adaptbench data fetch``).
Offline they fail with a "not available offline" error that says how to obtain the file.
Multi-class tasks report macro one-vs-rest AUROC (as the MedMNIST paper does) and accuracy.
Version history: 1 - first version.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from bench.core.api import CLASSIFICATION, VISION, Split, Splits, Task, TaskSpec
from bench.core.data import DataRoot, register_source
from bench.core.registry import TASKS

ZENODO = "https://zenodo.org/records/10519652/files/{flag}.npz?download=1"  # MedMNIST v2/v3 28 px release


def _download(url: str):
    def fetch(path: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as r, path.open("wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)

    return fetch


@dataclass(frozen=True)
class MedMNISTTask(Task):
    flag: ClassVar[str]
    train_defaults: ClassVar[dict] = {"batch_size": 32, "epochs": 3, "min_steps": 60}

    image_size: int = 64

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 512:
            raise ValueError(f"Invalid image_size: {self.image_size} (use 16..512; 28 is native, 64 the default)")

    @classmethod
    def rel_path(cls) -> str:
        return f"vision/medmnist/{cls.flag}.npz"

    def files(self) -> tuple[str, ...]:
        return (self.rel_path(),)

    def load(self, data: DataRoot) -> Splits:
        with np.load(data.file(self.rel_path())) as z:
            parts = {}
            for offset, name in enumerate(("train", "val", "test")):
                images, labels = z[f"{name}_images"], z[f"{name}_labels"].reshape(-1).astype(np.int64)
                ids = offset * 10_000_000 + np.arange(len(labels))
                parts[name] = Split(name, images, labels, ids)
        return Splits(parts["train"], parts["val"], parts["test"])


def medmnist_task(
    name: str, flag: str, num_labels: int, budgets: tuple[int, ...], description: str, offline: bool = False
):
    """Declare and register one MedMNIST task; a new dataset of the family is one call."""
    metrics = ("auroc", "accuracy")
    spec = TaskSpec(
        name=name,
        version=1,
        modality=VISION,
        kind=CLASSIFICATION,
        num_labels=num_labels,
        metrics=metrics,
        primary_metric="auroc",
        backbone="efficientnet-lite0",
        budgets=budgets,
        description=description + ("" if offline else "; online only (not in the offline mirror)"),
    )
    cls = dataclass(frozen=True)(type(flag.capitalize(), (MedMNISTTask,), {"spec": spec, "flag": flag}))
    register_source(
        cls.rel_path(),
        _download(ZENODO.format(flag=flag)),
        f"MedMNIST {flag}.npz from {ZENODO.format(flag=flag)}",
    )
    return TASKS.register(name)(cls)


PneumoniaMNIST = medmnist_task(
    "pneumonia-mnist",
    "pneumoniamnist",
    2,
    (64, 256, 1024),
    "PneumoniaMNIST chest X-rays, normal vs pneumonia (official 4708/524/624 splits)",
    offline=True,
)
BreastMNIST = medmnist_task(
    "breast-mnist",
    "breastmnist",
    2,
    (32, 128, 512),
    "BreastMNIST ultrasound, malignant vs normal/benign (official 546/78/156 splits)",
    offline=True,
)
# online only: (name, flag, classes, what, official train/val/test sizes)
for _name, _flag, _classes, _what in (
    ("blood-mnist", "bloodmnist", 8, "BloodMNIST blood-cell microscopy, 8 cell types (11959/1712/3421)"),
    ("derma-mnist", "dermamnist", 7, "DermaMNIST dermatoscopy, 7 skin lesions (7007/1003/2005)"),
    ("path-mnist", "pathmnist", 9, "PathMNIST colon pathology, 9 tissue types (89996/10004/7180)"),
    ("organa-mnist", "organamnist", 11, "OrganAMNIST abdominal CT (axial), 11 organs (34561/6491/17778)"),
    ("oct-mnist", "octmnist", 4, "OCTMNIST retinal OCT, 4 diagnoses (97477/10832/1000)"),
    ("retina-mnist", "retinamnist", 5, "RetinaMNIST fundus, 5 diabetic-retinopathy grades as classes (1080/120/400)"),
    ("tissue-mnist", "tissuemnist", 8, "TissueMNIST kidney cortex microscopy, 8 cell types (165466/23640/47280)"),
):
    medmnist_task(_name, _flag, _classes, (64, 256, 1024), _what)
