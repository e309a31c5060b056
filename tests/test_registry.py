"""Registry contracts, parametrized over every registered task and method: a new entry is tested without new
test code. Run: `.venv/bin/python -m pytest tests/test_registry.py -q`."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import methods
import tasks
from bench.catalog import METHODS, TASKS, resolve
from bench.core.api import Cell, Method, Task, TrainConfig
from bench.core.backbone import BACKBONES
from bench.core.registry import PluginImportError, Registry, UnknownNameError
from bench.suite import load_suite


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


# ------------------------------------------------------------------------ discovery: one file is a new entry
def _plugin_package(root, name: str, modules: dict[str, str]) -> str:
    """A plugin package ``name`` under ``root`` whose ``__init__`` declares its modules to a registry ``REG``."""
    folder = root / name
    folder.mkdir()
    (folder / "__init__.py").write_text(
        "from bench.core.registry import Registry\nREG = Registry('widget')\nREG.discover(__name__, __path__)\n"
    )
    for module, text in modules.items():
        (folder / f"{module}.py").write_text(text)
    return name


def test_every_module_of_a_plugin_package_is_imported_at_first_use_in_name_order(tmp_path, monkeypatch):
    register = "from {p} import REG\n\n@REG.register('{n}')\nclass {c}:\n    pass\n"
    name = _plugin_package(
        tmp_path,
        f"widgets_{tmp_path.name.replace('-', '_')}",
        {
            "b_one": register.format(p="{p}", n="one", c="One"),
            "a_two": register.format(p="{p}", n="two", c="Two"),
            "_helper": "raise RuntimeError('a helper is imported only by the modules that need it')\n",
        },
    )
    for f in (tmp_path / name).glob("*.py"):
        f.write_text(f.read_text().replace("{p}", name))
    monkeypatch.syspath_prepend(str(tmp_path))
    package = importlib.import_module(name)
    reg = package.REG
    assert reg.modules == [], "nothing is imported before the registry is used"
    assert reg.names() == ["one", "two"]
    assert reg.modules == [f"{name}.a_two", f"{name}.b_one"]
    assert "widget" in reg.explain("three") and f"{name}/three.py" in reg.explain("three")
    assert '@WIDGETS.register("three")' in reg.explain("three")


def test_a_plugin_module_that_fails_to_import_is_named(tmp_path, monkeypatch):
    name = _plugin_package(tmp_path, f"broken_{tmp_path.name.replace('-', '_')}", {"dora": "import not_a_module\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = importlib.import_module(name).REG
    with pytest.raises(PluginImportError, match=rf"widget plugin {name}/dora.py failed to import: ModuleNotFoundError"):
        reg.get("dora")
    with pytest.raises(PluginImportError, match=r"dora\.py"):  # every use says it again, never a half-filled registry
        reg.names()


def test_the_plugin_packages_keep_no_list_every_module_is_found():
    for package, registry in ((methods, METHODS), (tasks, TASKS)):
        files = sorted(p.stem for p in Path(package.__path__[0]).glob("*.py") if not p.stem.startswith("_"))
        assert registry.modules == [f"{package.__name__}.{f}" for f in files]


def test_an_unknown_method_lists_every_method_and_says_where_a_new_one_goes():
    with pytest.raises(UnknownNameError) as raised:
        METHODS.get("dora")
    message = str(raised.value)
    assert all(name in message for name in METHODS.names())
    assert "methods/dora.py" in message and '@METHODS.register("dora")' in message
    assert "tasks/my_task.py" in TASKS.explain("my-task") and '@TASKS.register("my-task")' in TASKS.explain("my-task")


@pytest.mark.parametrize("name", METHODS.names())
def test_a_methods_declarations_agree_with_each_other(name):
    """What a method declares (class attributes) must be possible together, and it implements what they promise."""
    cls = METHODS.get(name)
    if cls.budget_free or cls.seedless:  # it reads no training example / depends on no seed: it cannot train
        assert not cls.trains, f"{name}: budget_free or seedless, yet trains"
    if cls.seedless:
        assert cls.min_seeds in (None, 1), f"{name}: seedless, yet asks for {cls.min_seeds} seeds"
    if cls.linear_probe:
        assert cls.cache_features and cls.trains, f"{name}: a linear probe is fitted on cached features"
    if cls.trains:
        assert cls.param_groups is not Method.param_groups, f"{name} trains: it must say what (param_groups)"
    else:
        assert cls.predictor is not Method.predictor, f"{name} does not train: it must build a predictor"
    assert cls.prepare is not Method.prepare, f"{name} must prepare the model (freeze, wrap or inject)"
    if cls.mergeable:
        assert cls.merge is not Method.merge, f"{name}: mergeable, yet keeps Method.merge (which merges nothing)"
    assert cls.min_seeds is None or cls.min_seeds >= 1


def _one_block_suite(folder, methods: str) -> str:
    path = folder / "one-block.toml"
    matrix = f'tasks = ["pneumonia-mnist"]\nmethods = {methods}\nbudgets = [64]\n'
    path.write_text(f'description = "one block"\nseeds = [0]\n\n[[matrix]]\n{matrix}')
    return str(path)


@pytest.mark.parametrize("every", ["*", "all"])
def test_a_suite_can_name_every_method_and_a_cell_declared_unsupported_stays_a_cell(every, tmp_path):
    cells = load_suite(_one_block_suite(tmp_path, f'["{every}"]')).cells
    assert [c.method for c in cells] == METHODS.names()
    unsupported = {c.method for c in cells if resolve(c).unsupported_reason()}
    assert "prefix" in unsupported and "zeroshot" in unsupported  # recorded `unsupported` by the grid, as listed


def test_a_suites_unknown_method_says_where_a_new_one_goes(tmp_path):
    with pytest.raises(ValueError, match=r"unknown method 'dora'.*methods/dora\.py"):
        load_suite(_one_block_suite(tmp_path, '["lora", "dora"]'))


def test_a_plugin_module_imported_on_its_own_then_the_registry_used_works():
    """A cell's process unpickles its method first (importing ``methods.lora`` on its own, before the catalog): its
    registration must not set off the other modules' imports half-way through its own (qlora imports lora)."""
    code = "import methods.lora\nfrom bench.core.registry import METHODS\nprint(len(METHODS), METHODS.get('qlora'))"
    root = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == str(len(METHODS))
