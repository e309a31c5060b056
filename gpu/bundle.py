"""Build the folders a GPU run carries: one per backbone, each holding that backbone's weights and its task's data.

The device machine (``run`` tool, gpu/README.md) has torch, transformers, peft and timm but neither this project's
weight packages nor a network, and it receives only the working tree plus at most 8 git-ignored folders, 64 MiB in
all. So ``make gpu-bundle`` writes, per backbone, ``.gpu-bundle/<name>/``:

- ``site/<module>/``: the files of the weight package at the paths the loader looks for. The loaders find a weight
  package by path (``importlib.util.find_spec``, never imported: bench/backbones/vision.py ``package_dir``), so with
  ``site/`` first on ``PYTHONPATH`` they read the bundle's copy and record the same ``package:<name>`` source; no
  loader change is needed. A stub ``__init__.py`` makes the copy a regular package, which wins over a namespace
  portion and, being earlier on the path, over an installed copy.
- ``data/``: the data root (``ADAPTBENCH_DATA``): the task's files and every file the backbone's forgetting probes
  read (the harness checks them all before a cell starts, extra probes included), byte-identical to the mirror, so
  the pinned sha256 sums (bench/checksums.txt) still verify them.
- ``MANIFEST.json``: every file with its size and sha256, what it is, the checkout it was built from and how the
  weights were converted; gpu/check.sh verifies the bundle against it before anything runs.

Weights: MiniLM's fp32 checkpoint (87 MiB) cannot travel, so its floating tensors are rounded to fp16 (43 MiB) and
``config.json`` says ``dtype: float32``, which makes transformers 5 (whose default is ``dtype="auto"``) load it back
as fp32: the model trains in fp32 on weights that differ from the CPU runs' by fp16 rounding (the largest relative
change is 2^-11 for normal values; MANIFEST.json records the largest absolute one). EfficientNet-Lite0's checkpoint
(18 MiB) travels unchanged: its loader reads a ``.pth`` with ``torch.load``, and identical weights make the GPU's
EfficientNet cells directly comparable to the CPU's.

Usage: ``.venv/bin/python gpu/bundle.py [--out .gpu-bundle] [--only minilm] [--limit-mib 60]``; exits 1 when a
bundle is over the limit.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: the project itself is importable from the checkout
    sys.path.insert(0, str(REPO))

from bench.backbones.vision import package_dir  # noqa: E402
from bench.catalog import TASKS, probe_files  # noqa: E402
from bench.core.backbone import BACKBONES  # noqa: E402
from bench.core.data import DataRoot, sha256  # noqa: E402

MIB = 1 << 20
LIMIT_MIB = 60  # per bundle: the device call's 64 MiB also carries the working tree (~11 MiB)
CALL_LIMIT_MIB = 64  # what one device call may carry in all (working tree + carried paths)
STUB = '"""Weights copied by gpu/bundle.py for a GPU run; never imported (the loader finds this folder by path)."""\n'


@dataclass(frozen=True)
class Bundle:
    """One carry-able folder: a backbone and the foundation task of the default suite that uses it."""

    name: str  # the folder under .gpu-bundle/ and check.sh's argument
    backbone: str  # registry name
    task: str  # the default suite's foundation task on this backbone


BUNDLES = {
    "minilm": Bundle("minilm", "minilm-l6", "glue-sst2"),
    "efficientnet": Bundle("efficientnet", "efficientnet-lite0", "pneumonia-mnist"),
}


def data_files(bundle: Bundle) -> list[str]:
    """The data root's files a cell of the bundle's task needs: the task's and all of its backbone's probes'."""
    task = TASKS.get(bundle.task)()
    return list(dict.fromkeys([*task.files(), *probe_files(bundle.backbone)]))


def _module(requirement: str) -> str:
    return requirement.split("==")[0].strip().replace("-", "_")


def copy_weights(bundle: Bundle, site: Path) -> dict:
    """Copy (and where it must shrink, convert) the backbone's weight package into ``site``; returns how."""
    spec = BACKBONES.get(bundle.backbone)
    package = getattr(spec, "package", None)
    src = package_dir(package) if package else None
    if src is None:
        raise SystemExit(f"{bundle.backbone}: weight package {package} is not installed here: run `make setup` first")
    dst = site / _module(package)
    dst.mkdir(parents=True)
    (dst / "__init__.py").write_text(STUB)
    subdir = getattr(spec, "package_subdir", None)
    if subdir is not None:  # a transformers checkpoint folder (bench/backbones/text.py HFEncoder)
        return _fp16_checkpoint(src / subdir, dst / subdir)
    files = sorted(src.rglob(spec.weights_glob))  # a timm checkpoint file (bench/backbones/vision.py TimmBackbone)
    if not files:
        raise SystemExit(f"{bundle.backbone}: {src} holds no {spec.weights_glob}")
    target = dst / files[0].relative_to(src)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(files[0], target)
    return {"weights": "unchanged copy of the package's checkpoint (fp32)", "package": package}


def _fp16_checkpoint(src: Path, dst: Path) -> dict:
    """The checkpoint folder with floating tensors in fp16 and ``dtype: float32`` in config.json (loads as fp32)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", ".gitattributes"))
    worst = 0.0
    for file in sorted(src.glob("*.safetensors")):
        state = load_file(file)
        small = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
        for k, v in state.items():
            if v.is_floating_point():
                worst = max(worst, float((small[k].float() - v.float()).abs().max()))
        note = f"fp16 copy of {src} by gpu/bundle.py (floating tensors rounded from fp32)"
        save_file(small, dst / file.name, metadata={"format": "pt", "adaptbench_bundle": note})
    config = json.loads((dst / "config.json").read_text())
    config["dtype"] = config["torch_dtype"] = "float32"  # transformers 5 loads dtype="auto": keep it fp32
    (dst / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return {
        "weights": "floating tensors rounded to fp16; config.json dtype float32, so they load as fp32",
        "max_abs_rounding_error": worst,
    }


def checkout() -> dict:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    return {"git_sha": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain", "-uno"))}


def build(bundle: Bundle, out: Path, data: DataRoot) -> dict:
    """Write ``out/<bundle.name>/`` afresh and return its manifest."""
    root = out / bundle.name
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    conversion = copy_weights(bundle, root / "site")
    what = {}
    for rel in data_files(bundle):
        src = data.file(rel)  # verified against its pinned sha256 first
        target = root / "data" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        what[f"data/{rel}"] = "data file (unchanged copy of the mirror's)"
    files = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        kind = what.get(rel) or ("weights" if rel.startswith("site/") else "other")
        files.append({"path": rel, "bytes": path.stat().st_size, "sha256": sha256(path), "what": kind})
    manifest = {
        "bundle": bundle.name,
        "backbone": bundle.backbone,
        "task": bundle.task,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "built_from": checkout(),
        "data_root": str(data.path),
        "conversion": conversion,
        "total_bytes": sum(f["bytes"] for f in files),
        "files": files,
    }
    (root / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def tree_bytes() -> int:
    """Bytes of what a device call sends besides the carried paths: tracked and untracked-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=False,
    ).stdout
    paths = (REPO / p for p in listed.decode().split("\0") if p)
    return sum(p.stat().st_size for p in paths if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".gpu-bundle")
    ap.add_argument("--only", choices=sorted(BUNDLES), action="append", help="build only this bundle (repeatable)")
    ap.add_argument("--limit-mib", type=float, default=LIMIT_MIB, help="fail when a bundle is larger")
    ap.add_argument("--data-root", help="the data root to copy from (default: as the benchmark resolves it)")
    args = ap.parse_args(argv)
    data = DataRoot.resolve(args.data_root)
    tree = tree_bytes()
    over = []
    for name in args.only or list(BUNDLES):
        manifest = build(BUNDLES[name], args.out, data)
        size = manifest["total_bytes"]
        call = size + tree
        flag = "OVER THE LIMIT" if size > args.limit_mib * MIB else "ok"
        print(
            f"{args.out / name}: {size / MIB:.1f} MiB in {len(manifest['files'])} files ({flag}; limit "
            f"{args.limit_mib:g} MiB); with the working tree ({tree / MIB:.1f} MiB) a call carries {call / MIB:.1f} "
            f"of {CALL_LIMIT_MIB} MiB"
        )
        if size > args.limit_mib * MIB or call > CALL_LIMIT_MIB * MIB:
            over.append(name)
    if over:
        print(f"error: too large to carry: {', '.join(over)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
