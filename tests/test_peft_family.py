"""The ``peft:<config>`` method family (methods/peft_config.py) and the registry's families: names and keys, a config
file's identity, the trip to a fresh process, what peft refuses, the trainable count against peft's own
``get_nb_trainable_parameters``, AdaLoRA's allocation inside the loop, and (slow) real cells through the harness.
Run: `.venv/bin/python -m pytest tests/test_peft_family.py -q` (add `-m slow` for the real cells)."""

from __future__ import annotations

import copy
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.catalog import METHODS, resolve
from bench.core.api import Cell
from bench.core.registry import Registry, UnknownNameError

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"^[a-z0-9-]+__[a-z0-9-]+__b\d+__s\d+__[0-9a-f]{12}$")  # what a record's file is named by


# ------------------------------------------------------------------------------------------- the registry
def test_a_family_builds_an_entry_once_and_answers_unknown_names_with_suggestions():
    built = []

    class Entry:
        def __init__(self, argument):
            self.name = f"fam-{argument.lower()}"

    def build(argument):
        if argument == "bad":
            raise UnknownNameError("unknown argument 'bad'")
        built.append(argument)
        return Entry(argument)

    reg: Registry = Registry("thing")
    reg.register("plain")(object)
    reg.add_family("fam", build)
    a = reg.get("fam:X")
    assert reg.get("fam:X") is a and built == ["X"]  # cached
    assert "fam:Y" in reg and "fam:" not in reg and "nope:Y" not in reg and "plain" in reg
    assert reg.canonical("fam:X") == "fam-x" and reg.get("fam-x") is a  # its own name, once built
    assert reg.canonical("plain") == "plain" and reg.names() == ["plain"] and len(reg) == 1
    with pytest.raises(UnknownNameError, match="Did you mean 'fam:X'"):
        reg.get("fma:X")
    with pytest.raises(UnknownNameError, match=r"Did you mean 'plain'.*Or a family: fam:<argument>"):
        reg.get("plan")
    with pytest.raises(UnknownNameError, match="names nothing"):
        reg.get("fam:")
    with pytest.raises(UnknownNameError, match="unknown argument"):
        reg.get("fam:bad")
    with pytest.raises(ValueError, match="duplicate thing family"):
        reg.add_family("fam", build)

    class Unsafe:
        name = "fam/with:slash"

    reg.add_family("unsafe", lambda argument: Unsafe())
    with pytest.raises(ValueError, match="plain name"):
        reg.get("unsafe:x")


# ------------------------------------------------------------------------------------------- names and keys
def test_every_spelling_of_a_config_is_one_method_with_a_file_safe_name_and_its_fields_as_hyperparameters():
    a = resolve(Cell("glue-sst2", "peft:LoHaConfig", 64, 0, {"r": "4"}))
    b = resolve(Cell("glue-sst2", "peft:loha", 64, 0, {"r": 4}))
    assert a.cell.method == b.cell.method == "peft-loha" and a.key == b.key and KEY.match(a.key)
    assert a.key.startswith("glue-sst2__peft-loha__b64__s0__")
    assert type(a.method) is type(b.method) and a.method.r == 4 and a.method.alpha == 8  # peft's default alpha
    assert {"lr", "head_lr", "r", "alpha", "rank_dropout", "module_dropout"} <= set(a.hparams["method"])
    cls = METHODS.get("peft:loha")
    assert cls.name == "peft-loha" and cls.version == 1 and "LoHaConfig" in cls.description and cls.marker == "hada_"
    assert resolve(Cell("glue-sst2", "peft-loha", 64, 0, {"r": 4})).key == a.key  # the recorded name, once built
    dora = resolve(Cell("glue-sst2", "peft:dora", 64, 0))
    assert dora.cell.method == "peft-dora" and dora.method.use_dora and dora.method.peft_config().use_dora
    assert dora.key != resolve(Cell("glue-sst2", "peft:LoraConfig", 64, 0)).key
    assert resolve(Cell("glue-sst2", "peft:vera", 64, 0)).method.marker == "vera_lambda_"
    assert resolve(Cell("glue-sst2", "peft:adalora", 64, 0, {"total_step": "50"})).method.total_step == 50
    for spelling in ("peft:ln_tuning", "peft:LNTuningConfig", "peft:lntuning"):  # refused, whatever the spelling
        with pytest.raises(ValueError, match="needs target_modules"):
            resolve(Cell("glue-sst2", spelling, 64, 0))


def test_prompt_learning_and_unknown_configs_are_refused_with_the_fix():
    for name in ("peft:PrefixTuningConfig", "peft:PromptTuningConfig", "peft:p_tuning"):
        with pytest.raises(ValueError, match=r"use the prefix method.*or the prompt method"):
            resolve(Cell("glue-sst2", name, 64, 0))
    with pytest.raises(UnknownNameError, match="Did you mean 'peft:LoHaConfig'"):
        resolve(Cell("glue-sst2", "peft:LoHaConfg", 64, 0))
    with pytest.raises(UnknownNameError, match="Did you mean 'peft:loha'"):
        resolve(Cell("glue-sst2", "pft:loha", 64, 0))
    with pytest.raises(ValueError, match="Invalid peft-oft settings: You can only specify either r"):
        resolve(Cell("glue-sst2", "peft:oft", 64, 0, {"r": 4}))  # peft's own check (oft_block_size is set)
    with pytest.raises(ValueError, match="Did you mean 'r'"):
        resolve(Cell("glue-sst2", "peft:loha", 64, 0, {"rr": 4}))


def _save(config, folder: Path) -> Path:
    config.save_pretrained(str(folder))
    return folder / "adapter_config.json"


def test_a_config_file_is_named_by_its_content_and_its_values_are_the_defaults(tmp_path):
    from peft import LoHaConfig

    first = _save(LoHaConfig(r=4, alpha=16, target_modules=["query", "value"]), tmp_path / "a")
    second = tmp_path / "elsewhere" / "my-config.json"
    second.parent.mkdir()
    data = json.loads(first.read_text())
    data["base_model_name_or_path"], data["inference_mode"] = "some/other-model", True  # bookkeeping only
    second.write_text(json.dumps(data, indent=4))
    a = resolve(Cell("glue-sst2", f"peft:{first}", 64, 0))
    b = resolve(Cell("glue-sst2", f"peft:{second}", 64, 0))
    c = resolve(Cell("glue-sst2", f"peft:{first.parent}", 64, 0))  # the folder save_pretrained wrote
    assert re.fullmatch(r"peft-loha-[0-9a-f]{12}", a.cell.method) and a.cell.method == b.cell.method == c.cell.method
    assert a.key == b.key == c.key and KEY.match(a.key) and "/" not in a.key
    assert a.method.r == 4 and a.method.alpha == 16
    assert sorted(a.method.peft_config().target_modules) == ["query", "value"]
    assert not a.method.peft_config().inference_mode  # a saved config says true: it would train nothing
    assert resolve(Cell("glue-sst2", f"peft:{first}", 64, 0, {"r": 2})).method.r == 2  # --set still applies
    changed = tmp_path / "changed.json"  # (a path is read once per process: the registry caches its entry)
    changed.write_text(json.dumps({**data, "alpha": 32}))
    other = resolve(Cell("glue-sst2", f"peft:{changed}", 64, 0))
    assert other.cell.method != a.cell.method and other.method.alpha == 32  # new content, another method
    with pytest.raises(ValueError, match="does not exist"):
        resolve(Cell("glue-sst2", f"peft:{tmp_path / 'missing.json'}", 64, 0))
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps({**data, "not_a_setting": 1}))
    with pytest.raises(ValueError, match="not_a_setting not settings of LoHaConfig"):
        resolve(Cell("glue-sst2", f"peft:{unknown}", 64, 0))


def test_family_cells_come_back_from_a_fresh_process_as_the_same_cells(tmp_path):
    """A cell travels pickled to its own process (forkserver, or a Ray worker elsewhere): an entry built at run time
    is rebuilt there through the registry, a config file's from its content (the file need not be there)."""
    from peft import LoKrConfig

    file = _save(LoKrConfig(r=2, target_modules=["query"]), tmp_path / "cfg")
    cells = [
        resolve(Cell("glue-sst2", "peft:vera", 64, 0, {"r": "16", "lr": "0.01"})),
        resolve(Cell("pneumonia-mnist", f"peft:{file}", 64, 1)),
        resolve(Cell("glue-sst2", "peft:adalora", 64, 0, {"total_step": 30})),
    ]
    assert pickle.loads(pickle.dumps(cells)) == cells
    blob = pickle.dumps((cells, type(cells[1].method)))
    file.unlink()
    script = (
        "import json, pickle, sys\n"
        "cells, cls = pickle.loads(sys.stdin.buffer.read())\n"
        "print(json.dumps([[r.key, r.cell.method, r.hparams['method'], type(r.method).__name__] for r in cells]"
        " + [type(cells[1].method) is cls, cells[2].method.peft_config().total_step]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input=blob, capture_output=True, cwd=ROOT, timeout=300, check=False
    )
    assert out.returncode == 0, out.stderr.decode()[-3000:]
    *back, same_class, total_step = json.loads(out.stdout.decode().strip().splitlines()[-1])
    assert back == [[r.key, r.cell.method, r.hparams["method"], type(r.method).__name__] for r in cells]
    assert same_class and total_step == 30


# ------------------------------------------------------------------------------------------- on real modules
def _prepared(load_named, backbone: str, name: str, sets: dict | None = None):
    from bench.core.model import make_head
    from bench.run.model import AdaptModel

    loaded = load_named(backbone)
    task = "glue-sst2" if loaded.spec.modality == "text" else "pneumonia-mnist"
    res = resolve(Cell(task, name, 64, 0, {"backbone": loaded.spec.name, **(sets or {})}))
    reason = res.unsupported_reason()
    if reason:
        return res, None, loaded, reason
    model = AdaptModel(copy.deepcopy(loaded.encoder), make_head(loaded.feature_dim, 2))
    return res, res.method.prepare(model, loaded.spec, res.task), loaded, None


def peft_count(method, loaded) -> int:
    """peft's own count of the adapter's trainable parameters: ``get_peft_model`` on a copy of the backbone with the
    same config, ``get_nb_trainable_parameters``."""
    import warnings

    from peft import get_peft_model

    encoder = copy.deepcopy(loaded.encoder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(encoder, method.peft_config(encoder, loaded.spec))
    return model.get_nb_trainable_parameters()[0]


COUNTED = [
    ("tiny-hf", "peft:loha", {}),
    ("tiny-hf", "peft:vera", {}),
    ("tiny-timm", "peft:loha", {}),
    ("tiny-hf", "peft:lokr", {}),
    ("tiny-hf", "peft:dora", {}),
    ("tiny-hf", "peft:adalora", {"init_r": 6, "target_r": 2}),
    ("tiny-hf", "peft:oft", {"oft_block_size": 16}),
    ("tiny-hf", "peft:boft", {}),
    ("tiny-hf", "peft:vblora", {"vector_length": 16, "num_vectors": 32}),  # a vector bank shared by every layer
    ("tiny-hf", "peft:ia3", {}),
    ("tiny-hf", "peft:lora", {"bias": "all"}),  # peft trains every bias too
    ("tiny-timm", "peft:dora", {}),
]


@pytest.mark.parametrize(("backbone", "name", "sets"), COUNTED, ids=[f"{b}-{n}-{len(s)}" for b, n, s in COUNTED])
def test_the_trainable_count_is_pefts_own(load_named, backbone, name, sets):
    from bench.core.model import count_params

    res, model, loaded, reason = _prepared(load_named, backbone, name, sets)
    assert reason is None
    counts = count_params(model)
    assert counts["trainable_no_head"] == peft_count(res.method, loaded) > 0
    assert counts["trainable"] == counts["trainable_no_head"] + loaded.feature_dim * 2 + 2  # and the head
    trained = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    if sets.get("bias") != "all":
        assert all(res.method.marker in n for n in trained)


def test_what_peft_refuses_is_unsupported_with_its_reason(load_named, tmp_path):
    """VeRA adapts linear layers only (a CNN's pointwise convolutions are not), a file's target modules that the
    backbone lacks, a block size that divides no layer: each an ``unsupported`` cell with peft's words, no run."""
    from peft import LoraConfig

    _, model, _, reason = _prepared(load_named, "tiny-timm", "peft:vera")
    assert model is None and "peft refuses VeraConfig" in reason and "compatible with VeRA" in reason
    _, _, _, reason = _prepared(load_named, "tiny-timm", "peft:fourierft")
    assert "is not supported" in reason
    file = _save(LoraConfig(target_modules=["q_proj", "v_proj"]), tmp_path)
    _, _, _, reason = _prepared(load_named, "tiny-hf", f"peft:{file}")
    assert "not found in the base model" in reason
    _, _, _, reason = _prepared(load_named, "tiny-hf", "peft:boft", {"boft_block_size": 5})  # BOFT: known on a copy
    assert "peft refuses BOFTConfig" in reason
    _, model, _, reason = _prepared(load_named, "tiny-hf", "peft:hra")
    assert reason is None and model is not None


def test_vera_keeps_its_shared_projections_after_injection(load_named):
    import torch

    _, model, loaded, _ = _prepared(load_named, "tiny-hf", "peft:vera", {"r": 16})
    shared = {id(m.vera_A) for m in model.encoder.modules() if hasattr(m, "vera_lambda_d")}
    assert len(shared) == 1  # one projection for every layer, held by each as a submodule
    batch = loaded.batcher(["a fine film", "not good"])
    with torch.no_grad():
        assert torch.isfinite(model(**batch)).all()


def test_adalora_allocates_ranks_and_regularises_inside_the_loop(load_named):
    """The loop's order: on_step (with the previous step's gradients), forward + penalty, backward, optimizer step.
    By the end the allocator has pruned to the target budget (``tfinal`` steps with fixed ranks)."""
    import torch
    from torch import nn

    res, model, loaded, _ = _prepared(
        load_named, "tiny-hf", "peft:adalora", {"init_r": 4, "target_r": 1, "tinit": 1, "tfinal": 2, "lr": 0.01}
    )
    method = res.method
    batch = loaded.batcher(["a gripping, funny film", "dull and far too long", "not bad at all", "an utter mess"])
    labels = torch.tensor([0, 1, 0, 1])
    opt = torch.optim.AdamW([g for g in method.param_groups(model) if g["params"]])
    penalties = []
    total = 8
    for step in range(1, total + 1):
        method.on_step(model, step, total)
        method.train_mode(model)
        extra = method.penalty(model)
        penalties.append(float(extra))
        loss = nn.functional.cross_entropy(model(**batch), labels) + extra
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    allocator, config = model._peft_adalora
    assert config.total_step == total and all(p > 0 for p in penalties)
    kept = sum(sum(mask) for mask in config.rank_pattern.values())
    assert kept == config.target_r * len(allocator.name_set)  # the final budget: target_r per adapted matrix
    method.on_step(model, total + 1, total)  # past the end: masked to the pattern
    for name, p in model.encoder.named_parameters():
        if "lora_E" in name:
            assert int((p != 0).sum()) <= sum(config.rank_pattern[name])


# ------------------------------------------------------------------------------------------- real cells
@pytest.mark.slow
@pytest.mark.parametrize("task", ["glue-sst2", "pneumonia-mnist"])
def test_a_real_peft_cell_runs_through_the_harness_and_counts_as_peft_does(tmp_path, task, load_named):
    """LoHa through ``run_cell`` (its own forkserver process: the Resolved is unpickled there) on the real backbone
    and data, with the proxy's short settings; the record's trainable count is peft's. VeRA on the CNN is an
    ``unsupported`` record, decided before any process starts."""
    import time

    from bench.core.store import Store
    from bench.run.harness import run_cell

    store = Store(tmp_path)
    short = {"probe_limit": 40, "eval_limit": 128, "batch_size": 16, "min_steps": 4, "epochs": 1, "max_evals": 2}
    if task == "pneumonia-mnist":
        short["image_size"] = 32
    started = time.perf_counter()
    record = run_cell(Cell(task, "peft:LoHaConfig", 64, 0, {"r": 4, **short}, suite="peft"), store=store, quiet=True)
    took = time.perf_counter() - started
    assert record.status == "ok", record.error
    assert record.method == "peft-loha" and record.key.startswith(f"{task}__peft-loha__b64__s0__")
    assert store.get("peft", record.key) == record and record.hparams["method"]["r"] == 4
    assert record.cost.steps == 4 and 0.0 <= record.metrics[f"test/{record.selection.on.split('/')[-1]}"] <= 1.0
    method = resolve(Cell(task, "peft:LoHaConfig", 64, 0, {"r": 4, **short})).method
    loaded = load_named(record.backbone)
    assert record.params.trainable_no_head == peft_count(method, loaded) > 0
    print(f"\n{task} peft-loha cell: {took:.1f} s, trainable_no_head {record.params.trainable_no_head}")
    if task == "pneumonia-mnist":
        vera = run_cell(Cell(task, "peft:vera", 64, 0, short, suite="peft"), store=store, quiet=True)
        assert vera.status == "unsupported" and "compatible with VeRA" in vera.error
