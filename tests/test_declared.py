"""Declared datasets (tasks/declared.py): a CSV or an image folder becomes a task with no code, and every bad-data case
is refused before any cell runs: exit 2, one paragraph naming the problem and the fix, nothing recorded."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import catalog
from bench.cli import main
from bench.core.data import DataError, DataRoot
from bench.core.store import RECORDED_SPECS, Store
from tasks import declared

WORDS = {0: "awful rude late dirty broken", 1: "great kind early clean lovely"}


def write_csv(path: Path, n: int = 120, seed: int = 0, minority: float = 0.5, columns=("text", "label")) -> Path:
    rng = np.random.default_rng(seed)
    rows = [",".join(columns)]
    for i in range(n):
        y = int(rng.random() < minority)
        words = rng.choice(WORDS[y].split(), size=4)
        rows.append(f"review {i} {' '.join(words)},{y}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_images(root: Path, per_class: int = 12, bad: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("benign", "malignant")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = (rng.random((20, 20)) * 100 + 100 * c).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i:03d}.png")
    for i in range(bad):
        (root / "benign" / f"broken{i}.png").write_bytes(b"not a png at all")
    return root


def declare(tmp_path: Path, text: str, name: str = "tickets") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _forget():
    """Each test declares its datasets afresh (names are per process)."""
    yield
    declared.forget_all()


def test_csv_declaration_becomes_a_task(tmp_path):
    write_csv(tmp_path / "t.csv", n=200, minority=0.25)
    path = declare(tmp_path, 'name = "tickets"\nsource = "t.csv"\nlabel_names = ["bad", "good"]\nbudgets = [32]\n')
    name = catalog.task_name(str(path))
    assert name == "tickets"
    spec = catalog.spec("tickets")
    assert (spec.modality, spec.kind, spec.num_labels, spec.budgets) == ("text", "classification", 2, (32,))
    assert spec.primary_metric == "auroc"  # imbalanced binary
    assert spec.prompt.label_words == ("bad", "good")
    task = catalog.TASKS.get(name)()
    splits = task.splits(32, 0, DataRoot.resolve())
    assert (len(splits.test), len(splits.train)) == (40, 32)  # test 20% of 200; val a fifth of the rest
    ids = [set(s.ids) for s in (splits.train, splits.val, splits.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    # the test split is stratified and fixed: the same on a second read, in a fresh process too
    info = task.data_info()
    assert info["fingerprint"] and info["test_ids_sha256"] and info["spec"]["name"] == "tickets"
    again = pickle.loads(pickle.dumps(task))
    assert again == task and again.data_info()["test_ids_sha256"] == info["test_ids_sha256"]


def test_balanced_multiclass_and_regression_defaults(tmp_path):
    rows = ["text,label"] + [f"t{i},{['a', 'b', 'c'][i % 3]}" for i in range(60)]
    (tmp_path / "m.csv").write_text("\n".join(rows))
    assert catalog.spec(catalog.task_name(str(tmp_path / "m.csv"))).primary_metric == "accuracy"
    rows = ["text,label"] + [f"t{i},{i / 7:.3f}" for i in range(60)]
    (tmp_path / "r.csv").write_text("\n".join(rows))
    spec = catalog.spec(catalog.task_name(str(tmp_path / "r.csv")))
    assert (spec.kind, spec.primary_metric, spec.prompt) == ("regression", "spearman", None)


def test_image_folder_becomes_a_vision_task(tmp_path):
    root = write_images(tmp_path / "lesions")
    spec = catalog.spec(catalog.task_name(str(root)))
    assert (spec.name, spec.modality, spec.num_labels, spec.backbone) == ("lesions", "vision", 2, "efficientnet-lite0")
    task = catalog.TASKS.get("lesions")(image_size=32)
    splits = task.splits(0, 0, DataRoot.resolve())
    assert splits.train.inputs.shape[1:] == (32, 32) and splits.train.inputs.dtype == np.uint8
    assert sorted(np.bincount(splits.test.labels)) == [2, 3] or len(splits.test) == 5


def test_a_declared_task_unpickles_in_a_fresh_process(tmp_path):
    write_csv(tmp_path / "t.csv")
    task = catalog.TASKS.get(catalog.task_name(str(declare(tmp_path, 'name = "tickets"\nsource = "t.csv"\n'))))()
    blob = tmp_path / "task.pkl"
    blob.write_bytes(pickle.dumps(task))
    code = (
        "import pickle, sys; import bench.catalog; "
        f"t = pickle.loads(open({str(blob)!r}, 'rb').read()); print(t.spec.name, len(t.splits(0, 0, None).test))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["tickets", "24"]


def test_a_report_reads_a_declared_spec_from_its_records(tmp_path):
    write_csv(tmp_path / "t.csv")
    task = catalog.TASKS.get(catalog.task_name(str(declare(tmp_path, 'name = "tickets"\nsource = "t.csv"\n'))))()
    spec = task.spec
    RECORDED_SPECS["tickets"] = task.data_info()["spec"]
    declared.DECLARED.pop("tickets")
    catalog.TASKS._entries.pop("tickets")
    try:
        assert catalog.spec("tickets") == spec
    finally:
        RECORDED_SPECS.pop("tickets")


# ------------------------------------------------------------------------------------------ bad data: exit 2
def snapshot(folder: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


def refused(tmp_path: Path, capsys, task: str, budget: int = 16) -> str:
    results = tmp_path / "results"
    (results / "adhoc").mkdir(parents=True, exist_ok=True)
    before = snapshot(results)
    code = main(["run", "--task", task, "--method", "lora", "--budget", str(budget), "--results", str(results)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert snapshot(results) == before  # nothing recorded, nothing touched
    assert err.startswith("adaptbench: error: ") and "\n" not in err  # one paragraph
    assert "Fix:" in err or "fix" in err.lower()
    return err


def test_missing_column_names_the_columns_that_exist(tmp_path, capsys):
    write_csv(tmp_path / "t.csv", columns=("body", "label"))
    err = refused(tmp_path, capsys, str(declare(tmp_path, 'name = "t"\nsource = "t.csv"\ntext = "message"\n')))
    assert "no text column 'message'" in err and "body, label" in err


def test_a_label_with_one_example(tmp_path, capsys):
    path = write_csv(tmp_path / "t.csv")
    path.write_text(path.read_text() + "one odd row,7\n")
    err = refused(tmp_path, capsys, str(path))
    assert "'7' (1)" in err and "fewer than two" in err


def test_empty_file(tmp_path, capsys):
    (tmp_path / "empty.csv").write_bytes(b"")
    assert "is empty" in refused(tmp_path, capsys, str(declare(tmp_path, 'name = "e"\nsource = "empty.csv"\n')))
    (tmp_path / "header.csv").write_text("text,label\n")
    assert "no rows" in refused(tmp_path, capsys, str(declare(tmp_path, 'name = "h"\nsource = "header.csv"\n')))


def test_not_utf8(tmp_path, capsys):
    path = write_csv(tmp_path / "t.csv")
    path.write_bytes(path.read_bytes().replace(b"review 3", "revi\u00e9w 3".encode("latin-1")))
    err = refused(tmp_path, capsys, str(path))
    assert "not utf-8 text" in err and "encoding" in err


def test_images_that_do_not_decode_are_named(tmp_path, capsys):
    root = write_images(tmp_path / "scans", bad=7)
    err = refused(tmp_path, capsys, str(root))
    assert "7 of 31 images" in err and "broken0.png" in err and "..." in err


def test_fewer_examples_than_the_budget(tmp_path, capsys):
    path = write_csv(tmp_path / "t.csv", n=60)
    err = refused(tmp_path, capsys, str(path), budget=500)
    assert "budget 500" in err and "training pool" in err


def test_a_changed_file_under_a_recorded_name(tmp_path, capsys):
    path = write_csv(tmp_path / "t.csv")
    decl = declare(tmp_path, 'name = "tickets"\nsource = "t.csv"\n')
    res = catalog.resolve(catalog.Cell(catalog.task_name(str(decl)), "lora", 16, 0))
    from bench.core.record import new_record

    store = Store(tmp_path / "results")
    store.write(new_record(res, "failed", "an earlier run"))
    declared.forget_all()
    write_csv(path, seed=1)  # other bytes under the same name
    err = refused(tmp_path, capsys, str(decl))
    assert "changed since the records" in err and "tickets-v2" in err


def test_a_declaration_with_an_unknown_key_or_missing_source(tmp_path, capsys):
    err = refused(tmp_path, capsys, str(declare(tmp_path, 'name = "x"\nsource = "t.csv"\ncolumns = 3\n')))
    assert "unknown key(s) columns" in err
    err = refused(tmp_path, capsys, str(declare(tmp_path, 'name = "y"\nsource = "nowhere.csv"\n')))
    assert "does not exist" in err


def test_a_record_holds_the_dataset(tmp_path):
    write_csv(tmp_path / "t.csv")
    res = catalog.resolve(catalog.Cell(catalog.task_name(str(tmp_path / "t.csv")), "lora", 16, 0))
    from bench.core.record import Record, new_record

    record = new_record(res, "unsupported", "for the test")
    back = Record.from_json(json.loads(record.dumps()))
    assert back.dataset["fingerprint"] == res.task.data_info()["fingerprint"]
    with pytest.raises(DataError, match="has no column named label"):
        (tmp_path / "nolabel.csv").write_text("text,y2\na,1\nb,0\n")
        catalog.task_name(str(tmp_path / "nolabel.csv"))


def test_a_save_to_disk_folder_with_its_own_splits(tmp_path):
    import datasets

    def part(n, seed):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 2, n)
        return datasets.Dataset.from_dict({"sentence": [f"s{i} {WORDS[y]}" for i, y in enumerate(labels)],
                                           "label": labels.tolist()})  # fmt: skip

    datasets.DatasetDict({"train": part(80, 0), "validation": part(20, 1), "test": part(30, 2)}).save_to_disk(
        str(tmp_path / "hub")
    )
    path = declare(tmp_path, f'name = "hubby"\nsource = "{tmp_path / "hub"}"\ntext = "sentence"\n')
    task = catalog.TASKS.get(catalog.task_name(str(path)))()
    splits = task.splits(0, 0, DataRoot.resolve())
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 30)  # its own splits, nothing carved
