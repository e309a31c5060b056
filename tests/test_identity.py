"""A cell's identity names its backbone's weights and its data, not only their names, and the report never pools
records of different backbones, weights or data as seeds of one row.

- Keys: a backbone from a local folder is keyed by the sha256 of its files (other weights under the same path: another
  key; the same bytes: the same key), read once per process; a hub name by the commit the local hub cache holds; the
  built-in entries add nothing (committed records keep their keys, pinned below).
- Rows: ``bench.analysis.cells.method_cells`` groups by (task, budget, method, backbone, weights, data).
Run: `.venv/bin/python -m pytest tests/test_identity.py -q`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench.analysis.cells import method_cells, row_keys
from bench.analysis.stats import min_seeds
from bench.analysis.tables import tables
from bench.backbones import identity
from bench.catalog import method_class, method_label, resolve, spec
from bench.core.api import Cell
from bench.core.backbone import BACKBONES, get_backbone
from bench.core.record import Record, new_record
from bench.core.store import Store

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines" / "default-A-cpu" / "default"


def _tiny_bert(folder: Path, seed: int) -> Path:
    """A 2-layer BERT (hidden 32) saved with save_pretrained: config.json and model.safetensors."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    BertModel(BertConfig(vocab_size=100, **small), add_pooling_layer=False).save_pretrained(folder)
    return folder


def _key(backbone: str, method: str = "lora") -> str:
    return resolve(Cell("glue-sst2", method, 64, 0, {"backbone": backbone})).key


# ---------------------------------------------------------------------------------------------------- keys
def test_other_weights_under_one_folder_are_another_cell_and_the_same_bytes_the_same(tmp_path):
    folder = _tiny_bert(tmp_path / "my-encoder", seed=0)
    saved = tmp_path / "first-weights"
    shutil.copytree(folder, saved)
    first = _key(f"hf:{folder}")
    assert first == _key(f"hf:{folder}"), "the same folder, untouched: the same key"

    _tiny_bert(folder, seed=1)  # other weights, same path, same file names and sizes
    assert (folder / "model.safetensors").stat().st_size == (saved / "model.safetensors").stat().st_size
    second = _key(f"hf:{folder}")
    assert second != first, "replaced weights must not find the records of the old ones"

    for f in saved.iterdir():  # the first weights' bytes back, with a new mtime: the first key again
        shutil.copyfile(f, folder / f.name)
    assert _key(f"hf:{folder}") == first

    res = resolve(Cell("glue-sst2", "lora", 64, 0, {"backbone": f"hf:{folder}"}))
    ident = res.backbone_identity
    assert ident["files"] == ["config.json", "model.safetensors"] and len(ident["sha256"]) == 64
    record = new_record(res, "ok")
    assert record.key == res.key and record.backbone_identity == ident
    assert Record.from_json(json.loads(record.dumps())).backbone_identity == ident, "recorded, and read back"


def test_the_causal_family_and_a_local_timm_checkpoint_are_keyed_by_their_bytes(tiny_backbones):
    import hashlib

    causal = tiny_backbones["tiny-hf-causal"]
    folder = Path(causal.split(":", 1)[1])
    assert get_backbone(causal).identity() == identity.local_identity(folder)
    assert "model.safetensors" in get_backbone(causal).identity()["files"]
    timm_file = Path(get_backbone("tiny-timm").weights_file)
    pair = f"{timm_file.name}\0{hashlib.sha256(timm_file.read_bytes()).hexdigest()}\n".encode()
    assert get_backbone("tiny-timm").identity() == {
        "sha256": hashlib.sha256(pair).hexdigest(),
        "files": [timm_file.name],
    }


def test_a_file_is_hashed_once_per_process_until_it_changes(tmp_path, monkeypatch):
    f = tmp_path / "model.safetensors"
    f.write_bytes(b"a" * 4096)
    reads = []
    real = identity._read_sha256
    monkeypatch.setattr(identity, "_read_sha256", lambda p: reads.append(p) or real(p))
    first = identity.file_sha256(f)
    assert identity.file_sha256(f) == first and len(reads) == 1, "the second digest comes from the cache"
    f.write_bytes(b"b" * 4096)  # same size, new bytes: its mtime moved, so it is read again
    assert identity.file_sha256(f) != first and len(reads) == 2


def test_a_hub_name_is_keyed_by_the_commit_of_the_local_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(identity, "hub_cache", lambda: tmp_path)
    name = "hf:example-org/tiny-encoder"
    unknown = _key(name)
    assert resolve(Cell("glue-sst2", "lora", 64, 0, {"backbone": name})).backbone_identity == {"revision": "unknown"}
    refs = tmp_path / "models--example-org--tiny-encoder" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("0123456789abcdef0123456789abcdef01234567\n")
    pinned = _key(name)
    assert pinned != unknown
    (refs / "main").write_text("fedcba9876543210fedcba9876543210fedcba98")
    assert _key(name) not in (pinned, unknown), "the hub moved main: another cell"
    timm = get_backbone("timm:test_resnet").identity()
    assert timm["hub"].startswith("timm/test_resnet") and timm["revision"] == "unknown"


def test_the_built_in_backbones_add_nothing_and_keep_their_committed_keys():
    assert all(BACKBONES.get(name).identity() is None for name in BACKBONES.names() if not name.startswith("tiny"))
    pinned = {  # committed records of today's versions, one per built-in backbone of the default suite
        "glue-sst2__lora__b64__s0__83e49860b289": "minilm-l6",
        "pneumonia-mnist__lora__b64__s0__9768508176fc": "efficientnet-lite0",
        "glue-sst2__fewshot__b64__s0__c5c622fda29d": "smollm2-135m",
    }
    for key, backbone in pinned.items():
        r = json.loads((BASELINES / f"{key}.json").read_text())
        assert r["backbone"] == backbone and "backbone_identity" not in r
        res = resolve(Cell(r["task"], r["method"], r["budget"], r["seed"], r["overrides"], suite=r["suite"]))
        assert res.backbone_identity is None and res.key == key


# ---------------------------------------------------------------------------------------------------- rows
def _ok(method: str, seed: int, score: float, backbone: str, ident=None, task="glue-sst2", fingerprint=None):
    r = new_record(resolve(Cell(task, method, 64, seed, suite="t")), "ok")
    r.backbone, r.backbone_identity = backbone, ident
    r.key += f"-{backbone}-{json.dumps(ident)}-{fingerprint}"
    r.metrics = {f"test/{spec(task).primary_metric}": score}
    if fingerprint:
        r.dataset = {"fingerprint": fingerprint}
    return r


def test_two_backbones_never_share_a_row_and_the_default_keeps_its_plain_name(tmp_path):
    records = [
        _ok("lora", 0, 0.531, "minilm-l6"),
        _ok("lora", 0, 0.531, "hf:/models/my-encoder", {"sha256": "ab" * 32}),
    ]
    records += [_ok("fewshot", 0, 0.6, "smollm2-135m"), _ok("scratch", 0, 0.5, "minilm-l6")]
    cells = method_cells(records)[("glue-sst2", 64)]
    assert set(cells) == {"lora", "lora @ hf:/models/my-encoder", "fewshot", "scratch"}
    assert [c.primary.n for c in (cells["lora"], cells["lora @ hf:/models/my-encoder"])] == [1, 1], "not 2 seeds"
    assert cells["lora @ hf:/models/my-encoder"].records[0].backbone == "hf:/models/my-encoder"
    # what the report asks of a row key is its method's: class, seed rule, label (with the mechanism)
    assert method_class("lora @ hf:/models/my-encoder") is method_class("lora")
    assert min_seeds("fewshot @ hf-causal:/m") == min_seeds("fewshot") != min_seeds("no-such-method")
    assert method_label("fewshot @ hf-causal:/m", "glue-sst2") == "fewshot (in-context LM) @ hf-causal:/m"
    rows = tables(Store(tmp_path), records, labels_from_data=False)["glue-sst2"]
    variant = next(r for r in rows if r.method == "lora @ hf:/models/my-encoder")
    assert variant.backbones == ("hf:/models/my-encoder",) and variant.gain is not None, "held against scratch"
    assert [r.method for r in rows].index("lora @ hf:/models/my-encoder") == [r.method for r in rows].index("lora") + 1


def test_one_backbone_name_with_other_weights_or_other_data_never_pools():
    a, b = {"sha256": "1a2b3c4d" + "0" * 56}, {"sha256": "5e6f7a8b" + "0" * 56}
    records = [_ok("lora", 0, 0.5, "hf:/models/x", a), _ok("lora", 1, 0.6, "hf:/models/x", b)]
    records += [_ok("lora", 2, 0.7, "hf:/models/x", None)]  # written before identities were recorded
    records += [_ok("lora", 0, 0.7, "minilm-l6")]
    keys = set(row_keys(records).values())
    assert keys == {"lora", *(f"lora @ hf:/models/x [weights {w}]" for w in ("1a2b3c4d", "5e6f7a8b", "not recorded"))}
    same_prefix = [_ok("lora", 0, 0.5, "hf:/m", {"sha256": "1a2b3c4d" + "1" * 56}), _ok("lora", 1, 0.6, "hf:/m", a)]
    assert set(row_keys(same_prefix).values()) == {"lora", "lora #2"}, "a shared short name still makes two rows"
    data = [
        _ok("full", 0, 0.5, "minilm-l6", fingerprint="aaaa1111"),
        _ok("full", 1, 0.6, "minilm-l6", fingerprint="bb2"),
    ]
    assert set(row_keys(data).values()) == {"full [data aaaa1111]", "full [data bb2]"}


def test_a_task_run_entirely_on_another_backbone_keeps_plain_names():
    """The MedMNIST v2 suite runs every method on medmnist-resnet18: no row is renamed."""
    records = [_ok(m, 0, 0.8, "medmnist-resnet18", task="breast-mnist") for m in ("scratch", "full", "fewshot")]
    assert sorted(row_keys(records).values()) == ["fewshot", "full", "scratch"]
