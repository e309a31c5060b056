"""What runs inside a cell's process: seed, load, probe the untouched backbone, adapt, train, evaluate, probe the
adapted backbone, and assemble the typed record. ``bench.run.harness`` starts the process and turns a death into a
status; this module is the body. In this order: seed everything and fix the thread count; load the pretrained
backbone; probe it (the forgetting baseline); load the backbone to adapt (random for scratch, 4-bit for QLoRA);
prepare the method; count parameters; train with validation-based selection (or build a no-gradient predictor)
inside the memory window, validating on the task's validation set or on a share of the budget (``validation``),
and with ``refit`` retrain on the whole budget for the selected number of steps; evaluate test once; probe the
adapted backbone; time merged inference (LoRA family).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import random
import time
from pathlib import Path
from typing import Any

from bench.core.api import Resolved
from bench.core.backbone import get_backbone
from bench.core.cache import FeatureCache
from bench.core.data import DataRoot
from bench.core.model import count_params, fingerprint, make_head, quantized_share, tensor_digests
from bench.core.record import (
    GAP,
    TEST,
    TEST_OOD,
    VAL,
    Cost,
    Env,
    Params,
    Record,
    Selection,
    SplitSizes,
    keyed,
    metric_key,
    new_record,
)
from bench.run import forgetting as fg
from bench.run.meters import PeakMemory, environment, pick_device

SAVE_ENV = "ADAPTBENCH_SAVE_MODEL"  # set by `adaptbench export`: the folder a cell saves its adapted model into
WEIGHTS = "model.safetensors"


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


def save_adapted(model, base_digests: set[str], folder: Path) -> dict[str, Any]:
    """Write the tensors of ``model`` (an AdaptModel) whose values are not among the untouched backbone's
    (``base_digests``), and return what was saved (count, bytes)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    digests = tensor_digests(model)
    keep = {n: t.detach().cpu().contiguous() for n, t in state.items() if digests[n] not in base_digests}
    save_file(keep, str(folder / WEIGHTS))
    return {"tensors": len(keep), "bytes": int(sum(t.numel() * t.element_size() for t in keep.values()))}


def execute(res: Resolved, data: DataRoot, device_request: str = "auto", grad_accum: int = 1) -> Record:
    """Run a resolved cell in this process and return its record (status ok, or an exception propagates).
    ``grad_accum``: micro-batches per optimizer step (the harness's retry after running out of memory)."""
    import numpy as np

    from bench.run.flops import cell_flops
    from bench.run.loop import Runner
    from bench.run.model import AdaptModel
    from bench.run.tuning import Tuner, uses_cv

    wall_start = time.perf_counter()
    cell, spec, method, cfg = res.cell, res.task.spec, res.method, res.train
    seed_everything(cell.seed, cfg.threads)
    device = pick_device(device_request)
    stratify = spec.kind == "classification"
    splits = res.task.splits(cell.budget, cell.seed, data).limit_eval(cfg.eval_limit, stratify)
    splits = splits.half(cfg.test_half, stratify)
    # where selection validates: a method without gradient steps validates nothing, so its budget stays whole
    validation, whole_budget = (cfg.validation if method.trains else "none"), None
    cv = method.trains and uses_cv(cfg, len(splits.train))  # k-fold on the whole budget, then a refit
    if cv:
        whole_budget = splits.train.take(np.arange(len(splits.train)), name="budget")
    elif validation == "budget":
        splits, whole_budget = splits.hold_out(cfg.val_fraction, cell.seed, stratify)
    sizes = res.task.input_size  # the other size keeps the loader's default: a vision batcher has no max_len

    backbone = get_backbone(res.backbone)
    loaded = backbone.load(pretrained=True, **sizes)
    loaded.encoder.to(device)
    probes = backbone.probes  # the first is the primary one (``forgetting``), the rest ``forgetting_extra``
    if not cfg.extra_probes:
        probes = probes[:1]
    base_fingerprint = fingerprint(loaded.encoder)  # the untouched weights' sha256: names every cache entry
    before = {
        p: fg.run_probe(p, loaded, data, device, cfg.probe_limit, fingerprint=base_fingerprint, subset=cfg.probe_subset)
        for p in probes
    }
    if not method.pretrained or method.quantize:
        # the probe baseline above is always the untouched full-precision pretrained model
        loaded = backbone.load(pretrained=method.pretrained, quantize=method.quantize, device=device, **sizes)
        loaded.encoder.to(device)

    outputs = spec.num_labels if spec.kind == "classification" else 1
    tunes = method.trains and not method.linear_probe and (res.tune is not None or cv or cfg.extend_max > 1)
    # nested tuning prepares a fresh copy per candidate and fold: keep the backbone as it is before ``prepare``
    # changes it in place (LoRA injects its layers into the encoder); a 4-bit backbone is loaded again instead
    pristine = copy.deepcopy(loaded.encoder) if tunes and not method.quantize else None
    save_to = os.environ.get(SAVE_ENV)  # `adaptbench export`: keep the adapted model's own tensors
    base_digests = set(tensor_digests(loaded.encoder).values()) if save_to else set()
    model = AdaptModel(loaded.encoder, make_head(loaded.feature_dim, outputs))
    model = method.prepare(model, backbone, res.task).to(device)
    loaded.encoder = model.encoder  # the probe must see the adapted encoder (e.g. with LoRA layers injected)
    params = count_params(model)
    params.update(quantized_share(model.encoder))
    digests = tensor_digests(model.encoder)

    runner = Runner(model, loaded.batcher, res.task, cfg, device, grad_accum=grad_accum)
    if method.cache_features or not method.trains:  # their backbone is the untouched one: share its features
        runner.feature_cache = FeatureCache(
            {
                "backbone": res.backbone,
                "weights": base_fingerprint,
                "task": [spec.name, spec.version, dataclasses.asdict(res.task)],
                "precision": cfg.precision,
                "device": device,
            }
        )
    tuned = None
    with PeakMemory(device) as mem:
        cached, setup_s, fit, refit = method.cache_features, 0.0, None, None
        if method.trains and method.linear_probe and cv:
            fit = runner.fit_probe_cv(method, whole_budget, cfg.cv_folds, cell.seed)
        elif tunes:
            build = _builder(res, backbone, loaded, pristine, device, grad_accum, runner.feature_cache)
            tuner = Tuner(build, method, res.tune, cfg, res.task, cell.seed, say=runner.progress)
            tuned = tuner.run(splits.train if not cv else None, splits.val if not cv else None, whole_budget)
            runner, model, fit, refit, method = tuned.runner, tuned.runner.model, tuned.fit, tuned.refit, tuned.method
            loaded.encoder = model.encoder
        elif method.trains:
            initial = runner.snapshot() if cfg.refit else None
            fit = runner.fit(method, splits.train, splits.val, cell.seed)
            if cfg.refit:  # the selected number of steps again, from the same start, on the whole budget
                runner.restore(initial)
                refit = runner.fit(
                    method, whole_budget, None, cell.seed, schedule=fit.schedule_steps, stop_at=fit.best_step
                )
        else:
            t0 = runner.clock.now()
            predictor = runner.fit_predictor(method, splits.train, cell.seed, loaded.extras.get("tokenizer"))
            cached, setup_s = predictor.on_features, runner.clock.now() - t0
        test_metrics, eval_rate = runner.evaluate(splits.test, cached)
        ood_metrics = runner.evaluate(splits.test_ood, cached)[0] if splits.test_ood else {}
    if save_to and method.trains:
        save_adapted(runner.model, base_digests, Path(save_to))
    adapted = tensor_digests(model.encoder)  # hashed once: adapter bytes and the probe's cache key
    params["adapter_bytes"] = _changed_bytes(digests, adapted, model.encoder)
    runner.model.eval()  # the predictor actually used (few-shot methods replace it)
    sample = runner.inputs(splits.test, np.arange(min(8, len(splits.test))))
    flops = cell_flops(
        runner.model, sample, method=method, fit=fit, device=device, precision=cfg.precision, threads=cfg.threads
    )
    forgetting = {
        p: fg.probe_forgetting(p, *before[p], method.pretrained, loaded, data, device, cfg, adapted, cell.task)
        for p in probes
    }
    merge_cost = _merged_throughput(method, runner, splits.test, cached)

    metrics = {**keyed(TEST, test_metrics), **keyed(TEST_OOD, ood_metrics)}
    # domain-shift gap: in-domain minus out-of-domain; every metric in bench.core.metrics is higher-is-better, so
    # positive = worse under shift
    metrics.update(keyed(GAP, {k: test_metrics[k] - v for k, v in ood_metrics.items()}))
    if fit is not None:
        metrics.update(keyed(VAL, fit.best_val))
    record = new_record(res, "ok")
    record.metrics = metrics
    if tuned is not None:
        record.tuning = tuned.info
        record.hparams["method"].update(tuned.chosen)  # the values this replicate chose (the key names the space)
    record.forgetting = forgetting[probes[0]] if probes else None  # a backbone without a probe (random init only)
    record.forgetting_extra = {p: forgetting[p] for p in probes[1:]}
    record.params = Params(**params)
    record.splits = SplitSizes(
        train=len(splits.train),
        val=len(whole_budget) if cv else len(splits.val),
        test=len(splits.test),
        test_ood=len(splits.test_ood) if splits.test_ood else None,
        official=res.task.official_splits,
        validation=validation,
        refit_train=len(whole_budget) if refit else None,
        folds=cfg.cv_folds if cv else None,
        test_half=cfg.test_half or None,
    )
    record.cost = Cost(
        device=device,
        peak_mem_bytes=mem.peak_bytes,
        peak_mem_delta_bytes=mem.delta_bytes,
        peak_mem_kind="cuda_max_allocated" if device == "cuda" else "process_peak_rss",
        train_samples_per_s=fit.train_samples_per_s if fit else None,
        feature_samples_per_s=fit.feature_samples_per_s if fit else None,
        head_train_time_s=fit.head_time_s if fit and method.cache_features else None,
        feature_cache=runner.feature_cache.summary() if runner.feature_cache is not None else None,
        eval_samples_per_s=eval_rate,
        train_time_s=(fit.train_time_s + (refit.train_time_s if refit else 0.0)) if fit else setup_s,
        tuning_steps=tuned.steps if tuned else None,
        tuning_time_s=tuned.time_s if tuned else None,
        feature_time_s=fit.feature_time_s if fit else 0.0,
        wall_time_s=time.perf_counter() - wall_start,
        steps=fit.steps if fit else 0,
        epochs=fit.epochs if fit else 0.0,
        peak_mem_reserved_bytes=mem.reserved_bytes,
        **flops.as_dict(),
        **runner.compile_info(),
        **merge_cost,
    )
    record.selection = Selection(
        on=metric_key(VAL, spec.primary_metric),
        best_step=fit.best_step if fit else None,
        history=fit.history if fit else [],
        validation=validation,
        stopped_by=fit.stopped_by if fit else None,
        stopped_at=fit.steps if fit else None,
        schedule_steps=fit.schedule_steps if fit else None,
        refit={"steps": refit.steps, "train": len(whole_budget), "train_time_s": refit.train_time_s} if refit else None,
    )
    record.method_notes = runner.notes
    record.flags, record.flag_notes = collapse_flags(
        runner.outputs.get(splits.test.name), spec.kind, splits.test.labels
    )
    record.weights = loaded.source if method.pretrained else "random-init"
    record.data_root = str(data.path)
    record.env = Env(**environment(device, cfg.threads))
    record.arrays = {  # per-example test outputs, for paired comparisons between methods
        split.name: {"ids": split.ids, "outputs": runner.outputs[split.name], "labels": split.labels}
        for split in (splits.test, splits.test_ood)
        if split is not None and split.name in runner.outputs
    }
    return record


def _builder(res: Resolved, backbone, loaded, pristine, device: str, grad_accum: int, feature_cache):
    """``build(method)`` for nested tuning and folds: a fresh Runner over a copy of the backbone as it was before any
    method touched it, prepared by ``method``, its head drawn from the cell's seed every time (so candidates and folds
    start from the same weights and differ only in what they are meant to). A 4-bit backbone is loaded again."""
    import torch

    from bench.run.loop import Runner
    from bench.run.model import AdaptModel

    spec = res.task.spec
    outputs = spec.num_labels if spec.kind == "classification" else 1

    def build(method):
        torch.manual_seed(res.cell.seed)
        if pristine is None:
            encoder = backbone.load(pretrained=method.pretrained, quantize=method.quantize, device=device,
                                    **res.task.input_size).encoder  # fmt: skip
        else:
            encoder = copy.deepcopy(pristine)
        model = method.prepare(AdaptModel(encoder, make_head(loaded.feature_dim, outputs)), backbone, res.task)
        runner = Runner(model.to(device), loaded.batcher, res.task, res.train, device, grad_accum=grad_accum)
        runner.feature_cache = feature_cache
        return runner

    return build


def _merged_throughput(method, runner, test, cached: bool, n: int = 256) -> dict[str, float]:
    """For mergeable methods: eval throughput on the first ``n`` test examples with the adapters separate and then
    folded into the weights, measured back to back, and the largest output difference between the two (a check
    that merging preserved the function). Runs after the forgetting probe, so the probe saw the unmerged model."""
    import numpy as np

    if not method.mergeable:  # the unmerged pass would be thrown away: skip it (it cost zeroshot a third of a cell)
        return {}
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


def collapse_flags(outputs: Any, kind: str, labels: Any = None) -> tuple[list[str], dict[str, str]]:
    """(flags, why): ``["degenerate"]`` when every test prediction is the same (one class for classification, a
    constant score for regression); the record stays ``ok`` and the report shows it. The note says which: scores
    that are constant, or rank the items no better than chance (AUROC within two null standard errors of 0.5), mean
    training collapsed; scores that still rank the items (``labels`` given) mean only the decision threshold put
    every item in one class, which accuracy punishes and AUROC does not."""
    import numpy as np

    if outputs is None or len(outputs) < 2:
        return [], {}
    out = np.asarray(outputs, dtype=np.float64)
    if kind == "classification" and out.ndim == 2 and out.shape[1] > 1:
        classes = np.unique(out.argmax(axis=1))
        if len(classes) == 1:
            n, c = len(out), int(classes[0])
            ranking = _ranking(out, labels)
            if ranking is not None:
                auroc, chance = ranking
                if auroc > chance:
                    note = (
                        f"every one of the {n} test items got the same predicted class ({c}: the threshold), though "
                        f"the scores rank the items (AUROC {auroc:.2f}); accuracy-type metrics see one class"
                    )
                    return ["degenerate"], {"degenerate": note}
                note = (
                    f"every one of the {n} test predictions is class {c} and the scores rank the items no better "
                    f"than chance (AUROC {auroc:.2f}): training collapsed"
                )
                return ["degenerate"], {"degenerate": note}
            note = f"every one of the {n} test predictions is class {c}: training collapsed"
            return ["degenerate"], {"degenerate": note}
    else:
        scores = out.reshape(len(out), -1)[:, 0]
        if not np.isfinite(scores).all() or scores.std() <= 1e-6 * max(1.0, abs(scores.mean())):
            note = f"the {len(out)} test predictions are constant ({scores.mean():.4g}): training collapsed"
            return ["degenerate"], {"degenerate": note}
    return [], {}


def _ranking(out: Any, labels: Any) -> tuple[float, float] | None:
    """(AUROC, the AUROC chance could reach) of classification outputs: binary, the second class's score margin;
    more classes, the macro one-vs-rest mean. Chance: 0.5 plus two standard errors of the AUROC of scores unrelated to
    the labels, sqrt((n1 + n0 + 1) / (12 n1 n0)) (Mann-Whitney), for the smallest class. None when the scores are
    constant (nothing ranks), not finite, or the labels have one class."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    if labels is None:
        return None
    y = np.asarray(labels).reshape(-1)
    if len(y) != len(out) or not np.isfinite(out).all():
        return None
    margin = out - out.max(axis=1, keepdims=True)
    probs = np.exp(margin) / np.exp(margin).sum(axis=1, keepdims=True)
    present = np.unique(y)
    if len(present) < 2 or probs.std(axis=0).max() <= 1e-9:
        return None
    try:
        if out.shape[1] == 2:
            auroc = float(roc_auc_score(y, out[:, 1] - out[:, 0]))
        else:
            auroc = float(np.mean([roc_auc_score(y == k, probs[:, int(k)]) for k in present if int(k) < out.shape[1]]))
    except ValueError:
        return None
    n1 = min(int((y == k).sum()) for k in present)
    n0 = len(y) - n1
    return auroc, 0.5 + 2 * math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))
