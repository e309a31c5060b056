"""run_cell: the only place that seeds, times, measures memory and turns errors into statuses.

Each cell runs in its own process: a crash, a kill or an out-of-memory cannot take the matrix down, and peak
memory is the cell's own. The processes are forked from a multiprocessing fork server that has imported torch,
transformers, peft, timm and the registries once (``PRELOAD``): a fresh interpreter spends ~10 s on those imports,
which dominated small cells. Nothing else is shared: the fork server never touches a device or a thread pool, and
each child receives the parent's current environment. The child writes the record; if it dies without doing
so, the parent writes a ``failed`` (or ``timeout``) record with the exit code and the end of its stderr, so a
failed cell is a record, never a silent gap. Inside the child, in this order: seed everything and fix the thread
count; load the pretrained backbone; probe the untouched base model (forgetting baseline); prepare the method;
count parameters; train with validation-based selection inside the memory window; evaluate test once; probe the
adapted backbone; write the record.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
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
def run_cell(
    cell: Cell,
    store: Store | None = None,
    data_root: str | Path | None = None,
    device: str = "auto",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    quiet: bool = False,
) -> dict[str, Any]:
    """Run one cell in a fresh process and return its record (also written to the store)."""
    store = store or Store()
    res = resolve_hparams(cell)  # bad names and settings fail here, before any process starts
    reason = res.unsupported_reason()
    if reason:
        record = base_record(res, "unsupported", reason)
        store.write(record)
        return record

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
        if code is None:
            status, error = "timeout", f"cell exceeded {timeout_s:.0f} s and was killed"
        else:
            status = "oom" if code in (-9, 137) else "failed"
            error = f"cell process exited with code {code} without writing a record"
        record = base_record(res, status, f"{error}\n--- stderr tail ---\n{tail}")
        record["cost"] = {"wall_time_s": time.perf_counter() - started}
        store.write(record)
        return record


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
    """Body of the per-cell process: always writes a record, whatever happens."""
    store = Store(results)
    res = resolve_hparams(cell)
    try:
        record = execute(res, DataRoot.resolve(data_root), device)
    except Exception as e:  # every failure becomes a record with its traceback
        status = "oom" if _is_oom(e) else "failed"
        text = "".join(traceback.format_exception(e))
        if len(text) > ERROR_TAIL:  # keep where it started and how it ended
            text = text[: ERROR_TAIL // 4] + "\n[...]\n" + text[-3 * ERROR_TAIL // 4 :]
        record = base_record(res, status, text)
    store.write(record)
    tmp = Path(done_file).with_suffix(".tmp")
    tmp.write_text(json.dumps(record, default=str))
    os.replace(tmp, done_file)
    return 0 if record["status"] == "ok" else 1


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, MemoryError):
        return True
    try:
        import torch

        return isinstance(e, torch.cuda.OutOfMemoryError)
    except ImportError:
        return False
