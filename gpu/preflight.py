"""The GPU run's first step (gpu/check.sh): what the machine is, and proof that the bundle alone serves the run.

Prints the GPU, driver, CUDA and the versions of torch, transformers, peft and timm; verifies every file of the
bundle against its MANIFEST.json (size and sha256); then loads the bundle's backbone through the registry, as a
cell does, and checks that its weights came from the bundle (``package_dir`` resolves inside it, the record's
source is the package's), that they are fp32 (an fp16 copy must load as fp32), and that the data root is the
bundle's. Writes the same facts to ``<out>/preflight.json``; exits 1 when a check fails, so no cell runs on the
wrong weights or data.

Usage: ``python gpu/preflight.py BUNDLE_DIR --device cuda|cpu --out DIR``.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "executable": sys.executable}
    for pkg in ("torch", "transformers", "peft", "timm", "tokenizers", "safetensors", "scikit-learn", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def gpu_facts() -> dict:
    import torch

    facts: dict = {"cuda_available": torch.cuda.is_available(), "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            cudnn=torch.backends.cudnn.version(),
        )
    if shutil.which("nvidia-smi"):
        query = "--query-gpu=name,driver_version,memory.total,clocks.max.sm"
        smi = subprocess.run(["nvidia-smi", query, "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        facts["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    return facts


def verify_manifest(root: Path) -> list[str]:
    """Problems with the bundle's files against its manifest (empty: every file present, same size and sha256)."""
    from bench.core.data import sha256

    manifest = json.loads((root / "MANIFEST.json").read_text())
    problems = []
    for f in manifest["files"]:
        path = root / f["path"]
        if not path.is_file():
            problems.append(f"missing: {f['path']}")
        elif path.stat().st_size != f["bytes"] or sha256(path) != f["sha256"]:
            problems.append(f"changed: {f['path']}")
    return problems


def check_backbone(root: Path, device: str) -> dict:
    """Load the bundle's backbone as a cell does; the facts that show where its weights and data came from."""
    import torch

    from bench.backbones.vision import package_dir
    from bench.core.backbone import BACKBONES
    from bench.core.data import DataRoot

    manifest = json.loads((root / "MANIFEST.json").read_text())
    spec = BACKBONES.get(manifest["backbone"])
    found = package_dir(spec.package)
    loaded = spec.load(device=device)
    params = list(loaded.encoder.parameters())
    dtypes = sorted({str(p.dtype) for p in params})
    data_root = DataRoot.resolve().path.resolve()
    return {
        "backbone": spec.name,
        "package_dir": str(found),
        "from_bundle": found is not None and found.resolve().is_relative_to(root.resolve()),
        "source": loaded.source,
        "param_dtypes": dtypes,
        "fp32": dtypes == [str(torch.float32)],
        "params": sum(p.numel() for p in params),
        "data_root": str(data_root),
        "data_from_bundle": data_root == (root / "data").resolve(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    args = ap.parse_args(argv)
    report: dict = {"versions": versions(), "machine": gpu_facts(), "cpu_count": os.cpu_count()}
    for key, value in {**report["versions"], **report["machine"]}.items():
        print(f"  {key}: {value}")
    problems = verify_manifest(args.bundle)
    report["manifest_problems"] = problems
    print(f"  bundle {args.bundle}: {problems or 'every file matches MANIFEST.json'}")
    if args.device == "cuda" and not report["machine"]["cuda_available"]:
        problems.append("no CUDA device visible to torch")
    loaded = check_backbone(args.bundle, args.device)
    report["backbone"] = loaded
    for key, value in loaded.items():
        print(f"  {key}: {value}")
    for check in ("from_bundle", "fp32", "data_from_bundle"):
        if not loaded[check]:
            problems.append(f"backbone check failed: {check}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "preflight.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    if problems:
        print("preflight FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print("preflight ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
