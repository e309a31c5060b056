"""Registry contracts, parametrized over every registered task and method: a new entry is tested without new
test code. Run: `.venv/bin/python -m pytest tests/test_registry.py -q`."""

from __future__ import annotations

import dataclasses

import pytest

from bench.catalog import METHODS, TASKS, resolve
from bench.core.api import Cell, Method, Task, TrainConfig
from bench.core.backbone import BACKBONES
from bench.core.registry import Registry, UnknownNameError


@pytest.mark.parametrize("name", TASKS.names())
def test_task_declares_a_valid_spec(name):
    cls = TASKS.get(name)
    assert issubclass(cls, Task) and dataclasses.is_dataclass(cls)
    spec = cls.spec
    assert spec.name == name
    assert spec.backbone in BACKBONES and BACKBONES.get(spec.backbone).modality == spec.modality
    assert list(spec.budgets) == sorted(spec.budgets) and len(spec.budgets) >= 3
    assert spec.primary_metric in spec.metrics


@pytest.mark.parametrize("name", METHODS.names())
def test_method_is_a_frozen_dataclass_with_metadata(name):
    cls = METHODS.get(name)
    assert issubclass(cls, Method) and dataclasses.is_dataclass(cls)
    assert cls.name == name and isinstance(cls.version, int) and cls.description
    method = cls()
    with pytest.raises(dataclasses.FrozenInstanceError):
        method.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("name", METHODS.names())
def test_method_rejects_an_invalid_hyperparameter(name):
    cls = METHODS.get(name)
    numeric = [f for f in dataclasses.fields(cls) if type(f.default) in (int, float)]
    assert numeric, f"{name} has no numeric hyperparameter to validate"
    with pytest.raises(ValueError, match=f"Invalid {numeric[0].name}"):
        cls(**{numeric[0].name: -1})


@pytest.mark.parametrize("task", TASKS.names())
@pytest.mark.parametrize("method", METHODS.names())
def test_every_cell_resolves_to_a_stable_key(task, method):
    a = resolve(Cell(task, method, 64, 0))
    b = resolve(Cell(task, method, 64, 0))
    c = resolve(Cell(task, method, 64, 1))
    assert a.key == b.key != c.key
    assert set(a.hparams) == {"task", "method", "train"}


def test_duplicate_names_are_refused():
    reg: Registry = Registry("thing")
    reg.register("a-b")(object)
    with pytest.raises(ValueError, match="duplicate"):
        reg.register("a-b")(object)
    with pytest.raises(ValueError, match="lowercase with hyphens"):
        reg.register("Bad_Name")


def test_unknown_names_get_close_suggestions():
    with pytest.raises(UnknownNameError, match="Did you mean 'lora'"):
        METHODS.get("lorra")
    with pytest.raises(UnknownNameError, match="glue-sst2"):
        TASKS.get("glue-sst")


def test_settings_are_routed_typed_and_checked():
    res = resolve(Cell("pneumonia-mnist", "lora", 64, 0, {"r": "4", "image_size": "32", "epochs": "2"}))
    assert res.method.r == 4 and res.task.image_size == 32 and res.train.epochs == 2
    with pytest.raises(ValueError, match="Did you mean 'epochs'"):
        resolve(Cell("pneumonia-mnist", "lora", 64, 0, {"epoch": 2}))
    with pytest.raises(ValueError, match="Invalid r"):
        resolve(Cell("pneumonia-mnist", "lora", 64, 0, {"r": 0}))
    with pytest.raises(ValueError, match="expected int"):
        resolve(Cell("pneumonia-mnist", "lora", 64, 0, {"r": "eight"}))
    with pytest.raises(ValueError, match="Invalid precision"):
        TrainConfig(precision="fp8")


def test_every_registered_cell_survives_the_trip_to_its_own_process():
    """The grid resolves a cell once and hands the Resolved to the cell's process (pickled): every task and method
    class, factory-made ones included, must pickle and come back as the same cell with the same key."""
    import pickle

    from bench.catalog import resolve
    from bench.core.api import Cell

    for task in TASKS:
        for method in METHODS:
            res = resolve(Cell(task, method, 64, 0, {"lr": "0.001"} if method == "lora" else {}))
            back = pickle.loads(pickle.dumps(res))
            assert back == res and back.key == res.key, (task, method)


def test_a_setting_typed_on_the_command_line_and_in_a_suite_is_one_cell_for_the_gate():
    """`--set r=4` arrives as the string "4", a suite's `r = 4` as the integer: the catalog types both once, so
    the records say the same and the CI gate (which matches cells by their settings) sees one cell; a record
    written before overrides were typed is matched by its resolved hyperparameters."""
    from bench.analysis.gate import identity
    from bench.catalog import resolve
    from bench.core.api import Cell
    from bench.core.record import new_record

    typed, text = (
        resolve(Cell("glue-sst2", "lora", 64, 0, {"r": 4})),
        resolve(Cell("glue-sst2", "lora", 64, 0, {"r": "4"})),
    )
    assert typed.key == text.key and text.cell.overrides == {"r": 4} == typed.cell.overrides
    assert new_record(text, "ok").overrides == {"r": 4}
    old = new_record(typed, "ok")
    old.overrides = {"r": "4"}
    assert identity(old) == identity(new_record(typed, "ok")) == identity(new_record(text, "ok"))


def test_every_task_declares_the_input_size_its_backbone_is_prepared_for():
    """A vision task has an image_size field, a text task a max_len (Task.input_size); one without it is refused
    with the fix, never given a guessed size."""
    import dataclasses

    from bench.core.api import VISION, Task

    for name in TASKS:
        task = TASKS.get(name)()
        field = "image_size" if task.spec.modality == VISION else "max_len"
        assert task.input_size == {field: getattr(task, field)}, name

    @dataclasses.dataclass(frozen=True)
    class Sizeless(Task):
        spec = TASKS.get("pneumonia-mnist").spec

    with pytest.raises(TypeError, match="declares no 'image_size' field"):
        _ = Sizeless().input_size
