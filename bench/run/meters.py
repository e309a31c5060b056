"""Measuring cost: peak memory, device choice, and the environment every record carries.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` after a reset at the start of the measured window, and
``max_memory_reserved`` beside it (what the caching allocator held: what the process really took from the GPU).
On the CPU, the process peak RSS (each cell runs in its own process, so it is the cell's) and, beside it, the
cell's own increase over the RSS at the start of the window, sampled by a background thread every 20 ms (the
process peak is mostly libraries: ``import torch`` alone is ~0.5 GB).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA device is visible; use --device auto or cpu")
    return requested


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakMemory:
    """Context manager over the measured window; read ``peak_bytes`` and ``delta_bytes`` after it closes."""

    def __init__(self, device: str, interval_s: float = 0.02) -> None:
        self.device = device
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.delta_bytes = 0
        self.reserved_bytes: int | None = None  # CUDA only
        self._stop = threading.Event()
        self._max_rss = 0

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()
        else:
            self._start = _rss_bytes()
            self._max_rss = self._start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._max_rss = max(self._max_rss, _rss_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            self.peak_bytes = torch.cuda.max_memory_allocated()
            self.reserved_bytes = torch.cuda.max_memory_reserved()
        else:
            self._stop.set()
            self._thread.join()
            self._max_rss = max(self._max_rss, _rss_bytes())
            # ru_maxrss is in KiB on Linux: the whole process's peak, libraries included
            self.peak_bytes = max(self._max_rss, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        self.delta_bytes = max(0, (self.peak_bytes if self.device == "cuda" else self._max_rss) - self._start)


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


class Clock:
    """Wall time with a device sync before each reading, so GPU work is counted where it happens."""

    def __init__(self, device: str) -> None:
        self.device = device

    def now(self) -> float:
        sync(self.device)
        return time.perf_counter()


@functools.cache
def git_info() -> tuple[str | None, bool | None]:
    """(sha, dirty) of the checkout, read once per process: the code a cell runs is the code imported when its
    process (or the fork server it came from) started, so a commit made during a grid run must not relabel it."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None, None
    if sha.returncode != 0:
        return None, None
    return sha.stdout.strip(), bool(dirty.stdout.strip())


def cpu_model() -> str | None:
    """The CPU's model name ("AMD EPYC 7B13"): ``platform`` gives only the architecture on Linux ("x86_64")."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")) and ":" in line:
                    return line.split(":", 1)[1].strip() or None
    except OSError:  # not Linux: platform's answer is the best there is (macOS and Windows name the model)
        pass
    name = platform.processor()
    return name if name and name != platform.machine() else None


def cpu_flags() -> str | None:
    """The CPU's instruction-set flags (/proc/cpuinfo), which decide the kernels a BLAS picks: two CPUs of one model
    name can compute a matmul in a different order."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("flags", "features")) and ":" in line:
                    return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return None


# instruction sets that decide which float kernels torch, oneDNN and the BLAS run (/proc/cpuinfo flags on x86,
# features on Arm): two CPUs that differ in one of these can sum a matmul in another order, and training from scratch
# amplifies that last bit (the proxy's pneumonia-mnist x scratch @64 seed 0: AUROC 0.633 on one machine, 0.449 on
# another). The rest of the flags line (security mitigations, virtualisation) does not change a result.
FLOAT_FLAGS = frozenset(
    {
        *("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni"),
        *("avx512f", "avx512dq", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16"),
        *("amx_tile", "amx_bf16", "amx_fp16", "amx_int8"),
        *("asimd", "asimdhp", "asimddp", "fphp", "bf16", "i8mm", "sve", "sve2"),  # Arm
    }
)


def cpu_ids() -> str | None:
    """The CPU's family and model numbers (/proc/cpuinfo: "family 25 model 17"), which tell apart generations that a
    virtual machine's model name hides ("AMD EPYC"); Arm's implementer and part."""
    wanted = {"cpu family": "family", "model": "model", "cpu implementer": "implementer", "cpu part": "part"}
    found: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                name, _, value = line.partition(":")
                if name.strip().lower() in wanted and value.strip():
                    found.setdefault(wanted[name.strip().lower()], value.strip())
    except OSError:
        return None
    return " ".join(f"{k} {v}" for k, v in found.items()) or None


def machine_class(device: str, threads: int) -> str:
    """What decides a float result besides the code and the seed, readable: ``"; "``-joined parts (the gate names
    the parts that differ between two records). Two records of one class ran the same kernels in the same order, so
    a same-seed rerun of unchanged code reproduces its numbers; across classes it need not. Parts: the CPU model
    and its family/model numbers, the ``FLOAT_FLAGS`` it has, the kernels torch picked at start
    (``torch.backends.cpu.get_cpu_capability()``: DEFAULT, AVX2, AVX512...; ``ATEN_CPU_CAPABILITY`` can lower it),
    the torch version and thread count; on a GPU also its name, compute capability, CUDA and cuDNN versions."""
    import torch

    flags = sorted(set((cpu_flags() or "").split()) & FLOAT_FLAGS)
    ids = cpu_ids()
    model = (cpu_model() or platform.machine() or "?") + (f" ({ids})" if ids else "")
    parts = [f"cpu {model}", f"isa {' '.join(flags) or 'none recorded'}"]
    capability = getattr(torch.backends.cpu, "get_cpu_capability", None)
    parts.append(f"kernels {capability() if capability else 'unknown'}")
    parts += [f"torch {torch.__version__}", f"threads {threads}"]
    if device == "cuda":
        major, minor = torch.cuda.get_device_capability(0)
        parts += [f"gpu {torch.cuda.get_device_name(0)} (sm {major}.{minor})", f"cuda {torch.version.cuda}"]
        parts.append(f"cudnn {torch.backends.cudnn.version()}")
    return "; ".join(p.replace(";", ",") for p in parts)


def environment(device: str, threads: int) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    def version(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    sha, dirty = git_info()
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    numerics = {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "device": device,
        "gpu": gpu,
        "cuda": torch.version.cuda if device == "cuda" else None,
        **{pkg: version(pkg) for pkg in ("torch", "numpy", "transformers", "peft", "timm", "scikit-learn")},
    }
    return {
        "git_sha": sha,
        "dirty": dirty,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "peft": version("peft"),
        "timm": version("timm"),
        "bitsandbytes": version("bitsandbytes"),
        "cuda": torch.version.cuda if device == "cuda" else None,
        "gpu_name": gpu,
        "cpu": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "hostname": platform.node(),
        "machine": hashlib.sha256(json.dumps(numerics, sort_keys=True).encode()).hexdigest()[:16],
        "machine_class": machine_class(device, threads),
    }
