"""The data contract every task must keep (VTAB style), written once and run for every registered task from what the
task declares (its ``TaskSpec``: kind, modality, labels, budgets; its ``files``): a new task is covered with no edit
here.

- the pool (train) holds the largest declared budget, val and test are not empty; for the shipped tasks the sizes
  are also pinned to what their documentation says (``KNOWN_SIZES``; a new task may add a line, and is tested
  without);
- labels are in range (classification: every class present in train and test) or finite (regression);
- no example is in two of train / val / test / test_ood (by source ids), and ids are unique within a split;
- val and test (and test_ood) never depend on the budget or the seed;
- budget subsets are nested (64 inside 256 inside 1024), deterministic for a seed, different across seeds, and
  hold every class from the smallest budget on;
- a task whose files are not under the data root fails offline with an error that says so and how to get them.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bench.catalog import TASKS
from bench.core.api import CLASSIFICATION, VISION
from bench.core.data import DataError, DataRoot

# (train pool, val, test, test_ood) of the shipped tasks, from their documentation: a regression check on the readers
KNOWN_SIZES = {
    "pneumonia-mnist": (4708, 524, 624, None),
    "breast-mnist": (546, 78, 156, None),
    "blood-mnist": (11959, 1712, 3421, None),
    "derma-mnist": (7007, 1003, 2005, None),
    "path-mnist": (89996, 10004, 7180, None),
    "organa-mnist": (34561, 6491, 17778, None),
    "oct-mnist": (97477, 10832, 1000, None),
    "retina-mnist": (1080, 120, 400, None),
    "tissue-mnist": (165466, 23640, 47280, None),
    "glue-sst2": (66849, 500, 872, None),
    "glue-cola": (8051, 500, 1043, None),
    "glue-mrpc": (3167, 500, 408, None),  # the mirror's train file holds 3667 pairs (GLUE lists 3668)
    "glue-rte": (1992, 498, 277, None),
    "glue-stsb": (5249, 500, 1500, None),
    "glue-wnli": (508, 127, 71, None),
    "glue-qnli": (3963, 500, 1000, None),  # dev-only split (unofficial)
    "glue-mnli": (392202, 500, 9815, None),
    "glue-qqp": (363346, 500, 40430, None),
    **{f"shift-sst2-to-{d}": (66849, 500, 872, 400) for d in ("books", "dvd", "electronics", "kitchen")},
    **{
        f"shift-amazon-{a}-to-{b}": (1400, 200, 400, 400)
        for a in ("books", "dvd", "electronics", "kitchen")
        for b in ("books", "dvd", "electronics", "kitchen")
        if a != b
    },
    "shift-imdb-to-airline": (1400, 200, 400, 400),
    "shift-mnist-to-usps": (7000, 1000, 2000, 2007),
    "shift-cifar10-to-cifar10c": (5000, 1000, 2000, 2000),
}


def _available(task, data: DataRoot) -> bool:
    return all((data.path / rel).exists() for rel in task.files())


@pytest.fixture(scope="module", params=TASKS.names())
def task(request, data):
    task = TASKS.get(request.param)()
    if task.files() and not _available(task, data):
        pytest.skip(f"{request.param}: not available offline (see test_an_unavailable_task_says_how_to_get_it)")
    return task


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_lists_the_files_it_reads(name):
    assert TASKS.get(name)().files(), f"{name} must list the data files it reads (Task.files)"


def test_every_pinned_size_names_a_registered_task():
    assert not set(KNOWN_SIZES) - set(TASKS.names()), "a pinned size of a task that is no longer registered"


def test_split_sizes_labels_and_inputs(task, data):
    pool = task.load(data)
    largest = max(b for b in task.spec.budgets if b)
    assert len(pool.train) >= largest, f"the pool ({len(pool.train)}) is smaller than the declared budget {largest}"
    assert len(pool.val) and len(pool.test), "val and test must not be empty"
    ood = len(pool.test_ood) if pool.test_ood is not None else None
    if task.spec.name in KNOWN_SIZES:
        assert (len(pool.train), len(pool.val), len(pool.test), ood) == KNOWN_SIZES[task.spec.name]
    for split in (pool.train, pool.val, pool.test, pool.test_ood):
        if split is None:
            continue
        assert len(split.inputs) == len(split.labels) == len(split.ids) == len(np.unique(split.ids))
        if task.spec.kind == CLASSIFICATION:
            assert split.labels.dtype.kind == "i" and set(np.unique(split.labels)) <= set(range(task.spec.num_labels))
        else:
            assert np.isfinite(split.labels).all()
        if task.spec.modality == VISION:
            assert isinstance(split.inputs, np.ndarray) and split.inputs.dtype == np.uint8
            assert split.inputs.ndim == 3 or (split.inputs.ndim == 4 and split.inputs.shape[-1] == 3)
        else:
            assert all(isinstance(x, str) or (isinstance(x, tuple) and len(x) == 2) for x in split.inputs[:100])
    if task.spec.kind == CLASSIFICATION:
        for split in (pool.train, pool.test):
            assert len(np.unique(split.labels)) == task.spec.num_labels, f"{split.name} lacks a class"


def test_no_example_is_in_two_splits(task, data):
    pool = task.load(data)
    parts = [s for s in (pool.train, pool.val, pool.test, pool.test_ood) if s is not None]
    for a, b in itertools.combinations(parts, 2):
        assert not set(a.ids) & set(b.ids), f"{a.name} and {b.name} share examples"


def test_budgets_are_nested_deterministic_and_leave_evaluation_alone(task, data):
    budgets = task.spec.budgets
    for seed in (0, 1):
        ids = [set(task.splits(b, seed, data).train.ids) for b in budgets]
        assert all(a < b for a, b in itertools.pairwise(ids)), "a smaller budget must lie inside a larger one"
        assert set(task.splits(budgets[0], seed, data).train.ids) == ids[0]
    small, big = task.splits(budgets[0], 0, data), task.splits(budgets[-1], 1, data)
    assert small.train.ids.tolist() != task.splits(budgets[0], 1, data).train.ids.tolist()
    assert len(small.train) == budgets[0]
    for name in ("val", "test", "test_ood"):
        a, b = getattr(small, name), getattr(big, name)
        assert (a is None and b is None) or np.array_equal(a.ids, b.ids), f"{name} depends on budget or seed"
    if task.spec.kind == CLASSIFICATION:
        assert len(np.unique(small.train.labels)) == task.spec.num_labels


@pytest.mark.parametrize("name", TASKS.names())
def test_an_unavailable_task_says_how_to_get_it(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTBENCH_OFFLINE", "1")
    with pytest.raises(DataError, match=r"not available offline.*Fix: .*obtain it"):
        TASKS.get(name)().load(DataRoot(tmp_path))
