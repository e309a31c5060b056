"""run_cell: the only place that seeds, times, measures memory and turns errors into statuses.

Each cell runs in its own process: a crash, a kill or an out-of-memory cannot take the matrix down, and peak
memory is the cell's own. The processes are forked from a multiprocessing fork server that has imported torch,
transformers, peft, timm and the registries once (``PRELOAD``): a fresh interpreter spends ~10 s on those imports,
which dominated small cells. Nothing else is shared: the fork server never touches a device or a thread pool, and
each child receives the parent's current environment. Before the process starts, the parent checks what a user
can get wrong (names, settings, budget against the pool, data files: ``check_inputs``) and raises, writing no
record. The child writes the record; if it dies without doing so, the parent writes one whose status says how
(``killed`` by a named signal, ``oom``, ``timeout``, ``failed``) with the exit code and the end of its stderr, so
a failed cell is a record, never a silent gap. Inside the child, in this order: seed everything and fix the thread
count; load the pretrained backbone; probe the untouched base model (forgetting baseline); prepare the method;
count parameters; train with validation-based selection inside the memory window; evaluate test once; probe the
adapted backbone; write the record.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import multiprocessing
import os
import random
import signal
import sys
import tempfile
import threading
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.api import Cell, Resolved, resolve_hparams
from bench.data import DataRoot
from bench.store import SCHEMA_VERSION, Store

DEFAULT_TIMEOUT_S = 3600
ERROR_TAIL = 4000
# imported once in the fork server, so each cell's process starts with them loaded
PRELOAD = [
    "bench.preload",
    "torch",
    "transformers",
    "peft",
    "timm",
    "sklearn.metrics",
    "scipy.stats",
    "bench.harness",
    "methods",
    "tasks",
]
_context_lock = threading.Lock()
_context = None


def _cell_context():
    """The fork-server context, created once per parent process (its server starts at the first cell and records
    the checkout's git state as it imports the code, see ``meters.git_info``)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def base_record(res: Resolved, status: str, error: str | None = None) -> dict[str, Any]:
    cell = res.cell
    return {
        "schema": SCHEMA_VERSION,
        "key": res.key,
        "suite": cell.suite,
        "created_at": now_iso(),
        "status": status,
        "error": error,
        "task": cell.task,
        "task_version": res.task.spec.version,
        "method": cell.method,
        "method_version": res.method.version,
        "backbone": res.backbone,
        "budget": cell.budget,
        "seed": cell.seed,
        "hparams": res.hparams,
        "overrides": dict(cell.overrides),
    }


# ------------------------------------------------------------------------------------------- parent
# What an allocation failure says, in the exception or in the stderr of a process that died of one.
OOM_PATTERNS = ("MemoryError", "can't allocate memory", "out of memory", "OutOfMemoryError")


def check_inputs(res: Resolved, data: DataRoot, pool_sizes: dict[str, int] | None = None) -> None:
    """Refuse a cell whose inputs are wrong before a process starts, with one clear message: its data files (the
    task's and its backbone's probes') must be present and verified, or be downloadable now (``DataError``), and
    its budget must fit the training pool (``ValueError``). A task's declared budgets are known to fit; any other
    budget costs one load of the pool (cached in ``pool_sizes`` by task settings)."""
    from bench.backbones import get_backbone
    from bench.probes import PROBES

    probes = get_backbone(res.backbone).probes
    for rel in dict.fromkeys([*res.task.files(), *(f for p in probes for f in PROBES[p].files)]):
        data.file(rel)  # fetches a missing file when online, then verifies its checksum; else DataError
    budget = res.cell.budget
    if budget < 0:
        raise ValueError(f"budget {budget} is negative; use a number of training examples, or 0 for the whole pool")
    if budget == 0 or budget in res.task.spec.budgets:
        return
    ident = repr(res.task)
    sizes = pool_sizes if pool_sizes is not None else {}
    if ident not in sizes:
        sizes[ident] = len(res.task.load(data).train)
    if budget > sizes[ident]:
        raise ValueError(
            f"budget {budget} exceeds the {sizes[ident]}-example training pool of {res.cell.task}; "
            'use --budget 0 (in a suite: budgets = "task+full" or 0) for the whole pool'
        )


def run_cell(
    cell: Cell,
    store: Store | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    quiet: bool = False,
    checked: bool = False,
) -> dict[str, Any]:
    """Run one cell in a fresh process and return its record (also written to the store). User errors (names,
    settings, budget, missing or corrupt data) raise here, before any process starts, and write no record;
    ``checked`` says the caller (the grid) has already checked the inputs."""
    store = store or Store()
    res = resolve_hparams(cell)  # bad names and settings fail here, before any process starts
    reason = res.unsupported_reason()
    if reason:
        record = base_record(res, "unsupported", reason)
        store.write(record)
        return record
    if not checked:
        check_inputs(res, DataRoot.resolve(data_root))

    with tempfile.TemporaryDirectory(prefix="adaptbench-cell-") as tmp:
        done_file, stderr_path = Path(tmp) / "done.json", Path(tmp) / "stderr.txt"
        args = (
            dataclasses.asdict(cell),
            str(done_file),
            device,
            str(store.root),
            str(data_root) if data_root else None,
            dict(os.environ),
            str(stderr_path),
            quiet,
            os.getpid(),
        )
        started = time.perf_counter()
        proc = _cell_context().Process(target=_child_entry, args=args, name=f"adaptbench-{res.key}")
        proc.start()
        proc.join(timeout_s)
        code = proc.exitcode
        if code is None:  # still running: out of time
            proc.kill()
            proc.join()
        if done_file.exists():
            return json.loads(done_file.read_text())
        tail = stderr_path.read_text(errors="replace")[-ERROR_TAIL:] if stderr_path.exists() else ""
        status, error, signal_name = exit_status(code, tail, timeout_s)
        record = base_record(res, status, f"{error}\n--- stderr tail ---\n{tail}")
        record["exit_code"] = code
        record["signal"] = signal_name
        record["cost"] = {"wall_time_s": time.perf_counter() - started}
        store.write(record)
        return record


def exit_status(code: int | None, stderr_tail: str, timeout_s: float) -> tuple[str, str, str | None]:
    """(status, error, signal name) of a cell process that ended without writing its record. ``code`` is
    multiprocessing's exit code: None = still running at the time limit, negative = ended by that signal."""
    if code is None:
        return "timeout", f"cell exceeded {timeout_s:.0f} s and was killed", "SIGKILL"
    oom = any(p in stderr_tail for p in OOM_PATTERNS)
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        if oom:
            return "oom", f"cell process ran out of memory and was ended by {name}", name
        hint = " (by a user, a scheduler, or the kernel's OOM killer when memory ran out)" if name == "SIGKILL" else ""
        return "killed", f"cell process was killed by {name}{hint} before writing a record", name
    if oom:
        return "oom", f"cell process ran out of memory and exited with code {code} without writing a record", None
    return "failed", f"cell process exited with code {code} without writing a record", None


# -------------------------------------------------------------------------------------------- child
def seed_everything(seed: int, threads: int) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False


def _changed_bytes(before: dict[str, str], after: dict[str, str], module) -> int:
    """Bytes of the backbone tensors whose values adaptation changed: what must be saved beside the base model."""
    state = module.state_dict()
    return sum(state[n].numel() * state[n].element_size() for n in after if before.get(n) != after[n])


def execute(res: Resolved, data: DataRoot, device_request: str = "auto") -> dict[str, Any]:
    """Run a resolved cell in this process and return its record (status ok, or an exception propagates)."""
    import numpy as np

    from bench.backbones import get_backbone
    from bench.loop import Runner
    from bench.meters import PeakMemory, environment, forward_flops_per_example, pick_device
    from bench.model import AdaptModel, count_params, make_head, quantized_share, tensor_digests
    from bench.probes import run_probe

    wall_start = time.perf_counter()
    cell, spec, method, cfg = res.cell, res.task.spec, res.method, res.train
    seed_everything(cell.seed, cfg.threads)
    device = pick_device(device_request)
    splits = res.task.splits(cell.budget, cell.seed, data).limit_eval(cfg.eval_limit, spec.kind == "classification")
    sizes = {"image_size": getattr(res.task, "image_size", 224), "max_len": getattr(res.task, "max_len", 128)}

    backbone = get_backbone(res.backbone)
    loaded = backbone.load(pretrained=True, **sizes)
    loaded.encoder.to(device)
    probes = backbone.probes  # the first is the primary one (``forgetting``), the rest ``forgetting_extra``
    before = {p: run_probe(p, loaded, data, device, cfg.probe_limit)[0] for p in probes}
    if not method.pretrained or method.quantize:
        # the probe baseline above is always the untouched full-precision pretrained model
        loaded = backbone.load(pretrained=method.pretrained, quantize=method.quantize, device=device, **sizes)
        loaded.encoder.to(device)

    outputs = spec.num_labels if spec.kind == "classification" else 1
    model = AdaptModel(loaded.encoder, make_head(loaded.feature_dim, outputs))
    model = method.prepare(model, backbone, res.task).to(device)
    loaded.encoder = model.encoder  # the probe must see the adapted encoder (e.g. with LoRA layers injected)
    params = count_params(model)
    params.update(quantized_share(model.encoder))
    digests = tensor_digests(model.encoder)

    runner = Runner(model, loaded.batcher, res.task, cfg, device)
    with PeakMemory(device) as mem:
        cached, setup_s, fit = method.cache_features, 0.0, None
        if method.trains:
            fit = runner.fit(method, splits.train, splits.val, cell.seed)
        else:
            t0 = runner.clock.now()
            predictor = runner.fit_predictor(method, splits.train, cell.seed, loaded.extras.get("tokenizer"))
            cached, setup_s = predictor.on_features, runner.clock.now() - t0
        test_metrics, eval_rate = runner.evaluate(splits.test, cached)
        ood_metrics = runner.evaluate(splits.test_ood, cached)[0] if splits.test_ood else {}
    adapted = tensor_digests(model.encoder)  # hashed once: adapter bytes and the probe's cache key
    params["adapter_bytes"] = _changed_bytes(digests, adapted, model.encoder)
    runner.model.eval()  # the predictor actually used (few-shot methods replace it)
    flops = forward_flops_per_example(runner.model, runner.inputs(splits.test, np.arange(min(8, len(splits.test)))))
    forgetting = {
        p: _forgetting(p, before[p], method.pretrained, loaded, data, device, cfg.probe_limit, adapted) for p in probes
    }
    merge_cost = _merged_throughput(method, runner, splits.test, cached)

    metrics = {f"test/{k}": v for k, v in test_metrics.items()}
    metrics.update({f"test_ood/{k}": v for k, v in ood_metrics.items()})
    # domain-shift gap: in-domain minus out-of-domain; every metric in bench.metrics is higher-is-better, so
    # positive = worse under shift
    metrics.update({f"gap/{k}": test_metrics[k] - v for k, v in ood_metrics.items()})
    if fit is not None:
        metrics.update({f"val/{k}": v for k, v in fit.best_val.items()})
    record = base_record(res, "ok")
    record.update(
        {
            "metrics": metrics,
            "forgetting": forgetting[probes[0]],
            "forgetting_extra": {p: forgetting[p] for p in probes[1:]},
            "params": params,
            "splits": {
                "train": len(splits.train),
                "val": len(splits.val),
                "test": len(splits.test),
                "test_ood": len(splits.test_ood) if splits.test_ood else None,
                "official": res.task.official_splits,
            },
            "cost": {
                "device": device,
                "peak_mem_bytes": mem.peak_bytes,
                "peak_mem_delta_bytes": mem.delta_bytes,
                "peak_mem_kind": "cuda_max_allocated" if device == "cuda" else "process_peak_rss",
                "train_samples_per_s": fit.train_samples_per_s if fit else None,
                "eval_samples_per_s": eval_rate,
                "train_time_s": fit.train_time_s if fit else setup_s,
                "feature_time_s": fit.feature_time_s if fit else 0.0,
                "wall_time_s": time.perf_counter() - wall_start,
                "steps": fit.steps if fit else 0,
                "epochs": fit.epochs if fit else 0.0,
                "fwd_flops_per_example": flops,
                **merge_cost,
            },
            "selection": {
                "on": f"val/{spec.primary_metric}",
                "best_step": fit.best_step if fit else None,
                "history": fit.history if fit else [],
            },
            "method_notes": runner.notes,
            **collapse_flags(runner.outputs.get(splits.test.name), spec.kind),
            "weights": loaded.source if method.pretrained else "random-init",
            "data_root": str(data.path),
            "env": environment(device, cfg.threads),
        }
    )
    return record


def _forgetting(probe, before, pretrained, loaded, data, device, limit, digests) -> dict[str, Any]:
    """The probe on the adapted backbone beside its value on the untouched pretrained one."""
    from bench.probes import PROBES, run_probe

    spec = PROBES[probe]
    if not pretrained:
        return {
            "probe": probe,
            "before": before,
            "after": None,
            "drop": None,
            "note": "not applicable: scratch never had the pretrained weights",
        }
    after, after_cached = run_probe(probe, loaded, data, device, limit, digests=digests)
    return {
        "probe": probe,
        "before": before,
        "after": after,
        # positive = forgot, whichever way the probe's metric points
        "drop": (before - after) if spec.higher_is_better else (after - before),
        "higher_is_better": spec.higher_is_better,
        "after_from_identical_weights": after_cached,
        "limit": spec.effective_limit(limit),
    }


def _merged_throughput(method, runner, test, cached: bool, n: int = 256) -> dict[str, float]:
    """For mergeable methods: eval throughput on the first ``n`` test examples with the adapters separate and then
    folded into the weights, measured back to back, and the largest output difference between the two (a check
    that merging preserved the function). Runs after the forgetting probe, so the probe saw the unmerged model."""
    import numpy as np

    sub = test.take(np.arange(min(n, len(test))))
    before, unmerged = runner.predict(sub, cached)
    try:
        if not method.merge(runner.model):
            return {}
    except (RuntimeError, NotImplementedError, ValueError) as e:  # recorded, and the cell's results stand
        return {"eval_samples_per_s_unmerged": unmerged, "merge_error": f"{type(e).__name__}: {e}"}
    after, merged = runner.predict(sub, cached)
    return {
        "eval_samples_per_s_unmerged": unmerged,
        "eval_samples_per_s_merged": merged,
        "merge_max_abs_diff": float(np.abs(after - before).max()),
    }


def _child_entry(
    cell: dict,
    done_file: str,
    device: str,
    results: str,
    data_root: str | None,
    env: dict,
    stderr: str,
    quiet: bool,
    parent: int,
) -> None:
    """First thing in the cell's process: the parent's environment now (not the fork server's from when it
    started), stderr to a file the parent reads if the cell dies, stdout silenced when asked, and a watchdog that
    ends the cell if the process that asked for it is gone (a killed grid leaves no orphan computing)."""
    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    os.environ.clear()
    os.environ.update(env)
    fd = os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    if quiet:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    sys.exit(child_main(Cell(**cell), done_file, device, results, data_root))


def _exit_with(parent: int, every_s: float = 1.0) -> None:
    while True:
        time.sleep(every_s)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(143)


def child_main(cell: Cell, done_file: str, device: str, results: str | None, data_root: str | None) -> int:
    """Body of the per-cell process: always writes a record, whatever happens. A cell that runs out of memory is
    retried once with half the micro-batch and twice the gradient accumulation (same effective batch, same
    number of optimizer steps, so the same cell and key); ``record["retry"]`` says so."""
    store = Store(results)
    res = resolve_hparams(cell)
    data = DataRoot.resolve(data_root)
    record = _attempt(res, data, device, grad_accum=1)
    if record["status"] == "oom" and res.train.batch_size >= 2:
        first_error = (record.get("error") or "").strip().splitlines()
        gc.collect()  # the failed attempt's tensors are unreachable now that _attempt returned
        _empty_cuda_cache()
        record = _attempt(res, data, device, grad_accum=2)
        record["retry"] = {
            "reason": "oom",
            "micro_batch": math.ceil(res.train.batch_size / 2),
            "grad_accum": 2,
            "eval_batch": max(1, res.train.eval_batch_size // 2),
            "first_error": first_error[-1] if first_error else "",
        }
    store.write(record)
    tmp = Path(done_file).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, default=str))
    os.replace(tmp, done_file)
    return 0 if record["status"] == "ok" else 1


def _attempt(res: Resolved, data: DataRoot, device: str, grad_accum: int) -> dict[str, Any]:
    """One run of the cell; any exception becomes a record with a status that says what happened."""
    from bench.data import DataError
    from bench.loop import DivergedError, grad_accumulation

    try:
        with grad_accumulation(grad_accum):
            return execute(res, data, device)
    except Exception as e:  # every failure becomes a record
        text = "".join(traceback.format_exception(e))
        if isinstance(e, DataError) and not os.environ.get("ADAPTBENCH_DEBUG"):
            text = str(e)  # one paragraph that names the file and the fix; the traceback adds nothing
        if len(text) > ERROR_TAIL:  # keep where it started and how it ended
            text = text[: ERROR_TAIL // 4] + "\n[...]\n" + text[-3 * ERROR_TAIL // 4 :]
        if isinstance(e, DivergedError):
            record = base_record(res, "diverged", text)
            record["divergence"] = {"step": e.step, "loss": str(e.loss)}
            return record
        return base_record(res, "oom" if _is_oom(e) else "failed", text)


def collapse_flags(outputs: Any, kind: str) -> dict[str, Any]:
    """``flags`` (``["degenerate"]`` when every test prediction is the same: one class for classification, a
    constant score for regression, i.e. training collapsed) and ``flag_notes`` (why), for an ok record."""
    import numpy as np

    if outputs is None or len(outputs) < 2:
        return {"flags": [], "flag_notes": {}}
    out = np.asarray(outputs, dtype=np.float64)
    if kind == "classification" and out.ndim == 2 and out.shape[1] > 1:
        classes = np.unique(out.argmax(axis=1))
        if len(classes) == 1:
            note = f"every one of the {len(out)} test predictions is class {int(classes[0])}: training collapsed"
            return {"flags": ["degenerate"], "flag_notes": {"degenerate": note}}
    else:
        scores = out.reshape(len(out), -1)[:, 0]
        if not np.isfinite(scores).all() or scores.std() <= 1e-6 * max(1.0, abs(scores.mean())):
            note = f"the {len(out)} test predictions are constant ({scores.mean():.4g}): training collapsed"
            return {"flags": ["degenerate"], "flag_notes": {"degenerate": note}}
    return {"flags": [], "flag_notes": {}}


def _empty_cuda_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _is_oom(e: BaseException) -> bool:
    """An allocation failure: Python's MemoryError, CUDA's OutOfMemoryError, or the CPU allocator's
    RuntimeError ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(e, MemoryError):
        return True
    try:
        import torch

        if isinstance(e, torch.cuda.OutOfMemoryError):
            return True
    except ImportError:
        pass
    return isinstance(e, RuntimeError) and any(p in str(e) for p in OOM_PATTERNS[1:])
