"""The machine's peak: a small GEMM probe, measured once per machine and cached, and the nominal GPU peaks.

MFU needs a denominator. On the CPU it is the measured one: the best of 3 timed 2048x2048 fp32 matmuls after a
warm-up, with the cell's thread count (the CPU's vendor peak is not something torch can tell). On CUDA it is the
GPU's nominal dense bf16 peak when the cell runs in bf16 (the number MFU is usually quoted against), else the
measured fp32 GEMM (TF32 on); the measured bf16 and fp32 GEMMs are recorded either way. The probe is cached in
``$ADAPTBENCH_CACHE/machine/peak-<key>.json`` keyed by CPU model or GPU name, thread count and torch version; a
file that cannot be read or does not match is measured again, never trusted. On a shared machine the first
measurement is what later cells use: delete the file to measure again.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from bench.core.cache import cache_dir
from bench.core.store import atomic_write_text
from bench.run.meters import cpu_model, sync

# dense (no sparsity) bf16 tensor-core peaks in FLOP/s, from the vendors' data sheets; matched on the name torch
# reports, most specific first
NOMINAL_BF16_PEAK: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),  # SXM
    ("A100", 312e12),
    ("L40S", 362e12),
    ("A10G", 70e12),
    ("L4", 121e12),
)


@dataclass(frozen=True)
class Peak:
    measured: float | None  # FLOP/s of the probe that is this cell's basis when there is no nominal one
    nominal: float | None  # the GPU's dense bf16 data-sheet peak when the cell runs bf16 on CUDA
    basis: str  # what MFU is measured against, in words


def nominal_bf16_peak(gpu_name: str) -> float | None:
    for pattern, flops in NOMINAL_BF16_PEAK:
        if pattern.lower() in gpu_name.lower():
            return flops
    return None


def gemm_flops_per_s(device: str, dtype, size: int = 2048, runs: int = 3, reps: int = 1) -> float:
    """Best of ``runs`` timings of ``reps`` ``size x size`` matmuls, after one warm-up run."""
    import torch

    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for i in range(runs + 1):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        sync(device)
        if i:  # the first run is the warm-up
            best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 * reps / best


def _measure(device: str, threads: int) -> dict[str, float]:
    import torch

    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        return {
            "bf16": gemm_flops_per_s("cuda", torch.bfloat16, size=8192, reps=10),
            "fp32": gemm_flops_per_s("cuda", torch.float32, size=8192, reps=10),
        }
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {"fp32": gemm_flops_per_s("cpu", torch.float32)}
    finally:
        torch.set_num_threads(previous)


def machine_key(device: str, threads: int) -> dict[str, str | int]:
    import torch

    name = torch.cuda.get_device_name(0) if device == "cuda" else (cpu_model() or platform.machine())
    return {"device": device, "name": name, "threads": threads, "torch": torch.__version__}


def measured_peaks(device: str, threads: int, cache: Path | None = None) -> dict[str, float]:
    """{dtype: FLOP/s} of the GEMM probe for this machine, from the cache when a valid entry exists."""
    key = machine_key(device, threads)
    slug = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = (cache or cache_dir()) / "machine" / f"peak-{device}-{slug}.json"
    try:
        stored = json.loads(path.read_text())
        peaks = stored["flops_per_s"]
        if stored["key"] == key and peaks and all(isinstance(v, float) and v > 0 for v in peaks.values()):
            return peaks
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # missing, unreadable or not ours: measure again
    peaks = _measure(device, threads)
    atomic_write_text(path, json.dumps({"key": key, "flops_per_s": peaks, "measured_at": time.time()}, indent=1))
    return peaks


def peak_for(device: str, threads: int, precision: str) -> Peak:
    """The peak a cell's MFU is measured against (see the module docstring)."""
    peaks = measured_peaks(device, threads)
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name(0)
        nominal = nominal_bf16_peak(name) if precision == "bf16" else None
        if nominal:
            return Peak(peaks.get("bf16"), nominal, f"nominal dense bf16 peak of {name}")
        return Peak(peaks["fp32"], None, f"measured fp32 GEMM (TF32) on {name}")
    return Peak(peaks["fp32"], None, f"measured fp32 GEMM on the CPU, {threads} threads")
