"""``adaptbench recommend``: which method for *this* dataset, at *these* label budgets, within *this* time?

Given a dataset (a declaration, a data file or an image folder: ``tasks/declared.py``), the user's budgets, a time
budget and optional constraints, it writes a suite for that dataset with the default suite's protocol (nested tuning
of the learning rate inside each seed, k-fold selection below 128 labels, adaptive seeds with the sequential test's
error control), runs it with the grid (so it resumes: a second call runs only what is missing), and writes a report:

- the verdict per budget: the validation choice and the test set's verdict on every other method (``worse``,
  ``equivalent``, ``better``, ``undecided``), Holm-adjusted as one family (``bench.analysis.decision_map``);
- the methods ruled out by the constraints: by the adapter's size before anything runs (parameters counted on the
  prepared model), by measured peak memory and test-time latency after their first seeds (never by a guess);
- the learning curve of each method with an extrapolation of the labels that reach ``--target`` (a log-linear fit of
  the primary metric on log(labels), its interval from resampling seeds, and how far beyond the largest budget it
  reaches: beyond 4x it is marked unreliable);
- the commands that reproduce it; the HTML report of the records (``adaptbench report``) beside it.

Time: reference methods (frozen, lora, full) come first; the others join while the plan's estimate of the first look
(3 seeds of every cell) stays under 70% of ``--time``, so the adaptive looks have room. A budget too small even for
the references runs what fits and says so.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench import catalog
from bench.analysis.allocation import next_look
from bench.analysis.cells import method_cells
from bench.analysis.decision_map import Decision, decisions
from bench.core.backbone import get_backbone
from bench.core.model import make_head
from bench.core.record import TEST, Record, metric_key
from bench.core.registry import suggest
from bench.core.store import RESULTS_ROOT, Store
from bench.report.page import write_report
from bench.run.executor import make_executor
from bench.run.grid import run_grid
from bench.run.plan import CostModel, load_records
from bench.suite import load_suite

REFERENCES = ("frozen", "lora", "full")
EXTRAS = ("bitfit", "adapter", "fewshot")
FIRST_LOOK_SHARE = 0.7  # of --time: the first look's estimate must fit here, the adaptive looks use the rest
SEEDS = (0, 1, 2)
LR_GRIDS = {  # DOMAIN.md's ranges, as in the default suite
    ("full", "vision"): [3e-5, 1e-4, 3e-4],
    ("full", "text"): [2e-5, 5e-5, 1e-4],
    ("lora", "vision"): [3e-4, 1e-3, 3e-3],
    ("lora", "text"): [3e-4, 1e-3, 3e-3],
    ("adapter", "vision"): [3e-4, 1e-3, 3e-3],
    ("adapter", "text"): [3e-4, 1e-3, 3e-3],
    ("bitfit", "vision"): [3e-4, 1e-3, 3e-3],
    ("bitfit", "text"): [3e-4, 1e-3, 3e-3],
}


def parse_time(text: str) -> float:
    """``30m``, ``1h``, ``90s``, ``1h30m`` or a number of minutes -> seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * 60
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", text)
    if not parts or "".join(a + b for a, b in parts) != text.replace(" ", ""):
        raise ValueError(f"--time {text!r}: use e.g. 30m, 1h, 1h30m or 90s")
    return sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)


def parse_size(text: str, unit: str = "G") -> float:
    """``8G``, ``512M``, ``8`` (in ``unit``) -> bytes."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", text.strip().lower())
    if not m:
        raise ValueError(f"{text!r} is not a size; use e.g. 8G or 512M")
    scale = {"": unit.lower(), "k": "k", "m": "m", "g": "g", "t": "t"}[m.group(2)]
    return float(m.group(1)) * {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[scale]


@dataclass
class Constraints:
    max_memory_bytes: float | None = None
    max_adapter_mb: float | None = None
    max_latency_ms: float | None = None

    def ruled_out(self, records: Sequence[Record]) -> dict[str, str]:
        """method -> why, from what its records measured (the largest value over its records)."""
        out: dict[str, str] = {}
        for method in sorted({r.method for r in records}):
            mine = [r for r in records if r.method == method and r.ok and r.cost]
            if not mine:
                continue
            peak = max(r.cost.peak_mem_bytes or 0 for r in mine)
            if self.max_memory_bytes and peak > self.max_memory_bytes:
                out[method] = f"peak memory {peak / 2**30:.2f} GiB > {self.max_memory_bytes / 2**30:.2f} GiB (measured)"
                continue
            rates = [r.cost.eval_samples_per_s for r in mine if r.cost.eval_samples_per_s]
            if self.max_latency_ms and rates:
                ms = 1000 / min(rates)
                if ms > self.max_latency_ms:
                    out[method] = (
                        f"test-time {ms:.1f} ms per example > {self.max_latency_ms:g} ms (measured, batched at "
                        f"{mine[0].hparams.get('train', {}).get('eval_batch_size', '?')})"
                    )
                    continue
            saved = max(
                ((r.params.adapter_bytes or 0) + 4 * (r.params.trainable - r.params.trainable_no_head))
                for r in mine
                if r.params
            )  # the adaptation's tensors plus the head's, fp32
            if self.max_adapter_mb and saved / 2**20 > self.max_adapter_mb:
                out[method] = f"adapter {saved / 2**20:.1f} MiB > {self.max_adapter_mb:g} MiB (measured)"
        return out


def block_settings(method: str, budget: int, modality: str) -> dict[str, Any]:
    """The default suite's protocol for one (method, budget): k-fold selection below 128 labels, otherwise a
    carved validation share with early stopping; training length scaled with the budget (about 2.5 epochs of 16)."""
    if budget and budget < 128:
        settings: dict[str, Any] = {"cv_folds": 3}
        if method not in ("frozen", "fewshot", "zeroshot"):
            settings.update(max_steps=30, eval_every=5, extend_max=1)
        return settings
    steps = max(96, min(400, round(2.5 * (budget or 1024) / 16)))
    if method in ("frozen", "fewshot", "zeroshot"):
        return {}
    return {"max_steps": steps, "eval_every": max(1, steps // 6), "patience": 3}


def suite_text(
    declaration: Path | str, name: str, modality: str, methods: Sequence[str], budgets: Sequence[int], minutes: float
) -> str:
    lines = [
        f'description = "adaptbench recommend: {name}, methods {", ".join(methods)}, budgets '
        f'{", ".join(map(str, budgets))}"',
        f"seeds = {list(SEEDS)}",
        "timeout_s = 1800",
        "",
        "[adaptive]",
        "max_seeds = 5",
        "batch = 2",
        f"minutes = {max(1, math.floor(minutes))}",
        "",
        "[set]",
        "threads = 1",
        "probe_limit = 250",
        "extra_probes = false",
        'probe_subset = "spread"',
        "batch_size = 16",
        "epochs = 100",
        'validation = "budget"',
        'tie_break = "loss"',
        "tune_extend = 2",
        "extend_max = 2",
        'length_unit = "tokens"' if modality == "text" else "",
    ]
    for method in methods:
        for budget in budgets:
            settings = block_settings(method, budget, modality)
            lines += ["", "[[matrix]]", f"tasks = [{json.dumps(str(declaration))}]", f'methods = ["{method}"]']
            lines.append(f"budgets = [{budget}]")
            if settings:
                lines.append("set = { " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in settings.items()) + " }")
            grid = LR_GRIDS.get((method, modality))
            if grid:
                lines.append("tune = { lr = [" + ", ".join(f"{v:g}" for v in grid) + "] }")
            if method == "fewshot":
                lines.append("seeds = [0, 1, 2, 3, 4]")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the curve
@dataclass
class Curve:
    """A method's learning curve and the labels a target would take on its log-linear extrapolation."""

    method: str
    budgets: list[int]
    means: list[float]
    target: float | None = None
    reached_at: int | None = None  # a measured budget whose mean already reaches the target
    labels: float | None = None  # extrapolated labels for the target (point)
    interval: tuple[float, float] | None = None
    note: str = ""


def learning_curve(method: str, points: dict[int, list[float]], target: float | None, sign: float) -> Curve:
    """Fit ``score = a + b log(n)`` on every seed's score; resample seeds (within each budget) for the interval of
    the labels that reach ``target``. ``sign`` is +1 when higher is better."""
    budgets = sorted(b for b in points if b > 0 and points[b])
    curve = Curve(method, budgets, [float(np.mean(points[b])) for b in budgets], target)
    if target is None:
        return curve
    hit = [b for b, m in zip(budgets, curve.means, strict=True) if sign * (m - target) >= 0]
    if hit:
        curve.reached_at = hit[0]
        curve.note = f"reached at {hit[0]} labels (measured)"
        return curve
    if len(budgets) < 2:
        curve.note = "one budget measured: no curve to extrapolate (ask for two or more budgets)"
        return curve

    def solve(xs: np.ndarray, ys: np.ndarray) -> float:
        b, a = np.polyfit(np.log(xs), ys, 1)
        if sign * b <= 0 or (target - a) / b > 50:
            return math.inf  # flat or falling, or beyond e^50 labels
        return float(math.exp((target - a) / b))

    xs = np.concatenate([[b] * len(points[b]) for b in budgets]).astype(float)
    ys = np.concatenate([points[b] for b in budgets]).astype(float)
    point = solve(xs, ys)
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(2000):
        ys_b = np.concatenate([rng.choice(points[b], size=len(points[b])) for b in budgets])
        draws.append(solve(xs, ys_b))
    lo, hi = np.percentile(draws, [2.5, 97.5])
    curve.labels, curve.interval = point, (float(lo), float(hi))
    top = budgets[-1]
    if not math.isfinite(point):
        curve.note = "the curve does not rise: the target is not reached by adding labels on this evidence"
    else:
        reach = point / top
        caveat = "unreliable beyond 4x the largest budget measured" if reach > 4 else "within 4x of the measurements"
        curve.note = f"{reach:.1f}x the largest budget measured ({top}); {caveat}"
    return curve


# ------------------------------------------------------------------------------------------------ the command
@dataclass
class Recommendation:
    name: str
    out: Path
    decisions: list[Decision]
    ruled_out: dict[str, str]
    not_run: dict[str, str]
    curves: list[Curve]
    commands: list[str]
    report: Path | None = None
    records: list[Record] = field(default_factory=list)
    time: str = ""


def recommend(
    dataset: str,
    budgets: Sequence[int] | None,
    time_s: float,
    out: Path | None = None,
    constraints: Constraints | None = None,
    methods: Sequence[str] | None = None,
    target: float | None = None,
    jobs: int = 1,
    data_root: str | None = None,
    estimate: Callable[[Any], float] | None = None,
    say: Callable[[str], None] = print,
    quiet: bool = True,
) -> Recommendation:
    constraints = constraints or Constraints()
    name = catalog.task_name(dataset)
    spec = catalog.spec(name)
    budgets = list(budgets or spec.budgets)
    out = Path(out or f"recommend/{name}")
    out.mkdir(parents=True, exist_ok=True)
    decl_dir = out / "datasets"
    decl_dir.mkdir(exist_ok=True)
    info = catalog.TASKS.get(name)().data_info() or {}
    if info.get("declared"):  # the suite names the dataset by a copy of its declaration, beside it
        declaration: Path | str = decl_dir / f"{name}.toml"
        declaration.write_text(catalog.declaration_toml(info["declared"]))
    else:  # a built-in task: by its name
        declaration = name

    candidates = list(methods or [*REFERENCES, *EXTRAS])
    not_run: dict[str, str] = {}
    for m in candidates:
        if m not in catalog.METHODS:
            raise ValueError(f"--methods: {suggest(m, catalog.METHODS.names(), 'method')}")
    ruled = _adapter_size_rule(name, candidates, budgets, constraints)
    for m, why in ruled.items():
        not_run[m] = f"ruled out before running: {why}"
    candidates = [m for m in candidates if m not in ruled]

    if estimate is None:
        model = CostModel(load_records([RESULTS_ROOT / "baselines", out / "results"]))

        def estimate(cell) -> float:
            return model.estimate(cell).seconds

    store = Store(out / "results")
    chosen: list[str] = []
    spent = 0.0
    for m in candidates:
        text = suite_text(declaration, name, spec.modality, [*chosen, m], budgets, time_s / 60)
        path = out / "recommend.toml"
        path.write_text(text)
        suite = load_suite(str(path))
        todo = [c for c in suite.cells if not store.has_ok(suite.name, catalog.resolve(c).key)]  # a rerun resumes
        cost = sum(estimate(c) for c in todo) / max(1, jobs)
        if chosen and cost > FIRST_LOOK_SHARE * time_s:
            not_run[m] = (
                f"not run: the first look with it would take ~{cost / 60:.0f} min of the {time_s / 60:.0f} min asked "
                "(plan's estimate); ask for more --time to include it"
            )
            continue
        chosen.append(m)
        spent = cost
    text = suite_text(declaration, name, spec.modality, chosen, budgets, time_s / 60)
    suite_path = out / "recommend.toml"
    suite_path.write_text(text)
    suite = load_suite(str(suite_path))
    say(
        f"recommend {name}: methods {', '.join(chosen)} at budgets {', '.join(map(str, budgets))}; first look "
        f"estimated ~{spent / 60:.1f} min of {time_s / 60:.0f} min"
        + (f"; not run: {', '.join(not_run)}" if not_run else "")
    )
    executor = make_executor("local", jobs, None, None, "auto")
    started = time.perf_counter()
    try:
        result = run_grid(
            suite,
            store,
            data_root=data_root,
            quiet=quiet,
            executor=executor,
            extend=lambda records, look: next_look(suite, store, records, look),
        )
    finally:
        executor.close()
    took = time.perf_counter() - started
    records = [r for r in result.records if r.ok]
    ruled_after = constraints.ruled_out(records)
    kept = [r for r in records if r.method not in ruled_after]
    cells = method_cells(kept, catalog.spec)
    order = [(name, b) for b in budgets if (name, b) in cells]
    found = decisions(store, cells, catalog.spec, constraints.max_memory_bytes, order=order)
    curves = []
    for m in sorted({r.method for r in kept}):
        points: dict[int, list[float]] = {}
        for r in kept:
            if r.method == m and metric_key(TEST, spec.primary_metric) in r.metrics:
                points.setdefault(r.budget, []).append(r.metrics[metric_key(TEST, spec.primary_metric)])
        curves.append(learning_curve(m, points, target, spec.sign))
    commands = [
        f"adaptbench recommend --task {declaration} --budgets {','.join(map(str, budgets))} "
        f"--time {math.ceil(time_s / 60)}m --out {out}",
        f"adaptbench grid --suite {suite_path} --results {out / 'results'}",
        f"adaptbench report --results {out / 'results'}",
    ]
    rec = Recommendation(name, out, found, {**ruled, **ruled_after}, not_run, curves, commands, records=records)
    rec.time = (
        f"{len(records)} ok records; this call ran for {took / 60:.1f} min of the {time_s / 60:.0f} min asked (the "
        f"first look was planned at ~{spent / 60:.1f} min by `adaptbench plan`'s estimate, {jobs} cells at a time)"
    )
    try:
        rec.report = write_report(suite.name, store, out / "report")
    except ValueError as e:  # no ok record: the text report says why
        say(f"report: not written ({e})")
    (out / "recommendation.md").write_text(recommendation_text(rec, spec))
    return rec


def _adapter_size_rule(name: str, methods: Sequence[str], budgets: Sequence[int], c: Constraints) -> dict[str, str]:
    """Methods whose saved adaptation (trainable tensors besides the head) exceeds ``max_adapter_mb``, counted on the
    prepared model before anything trains."""
    if not c.max_adapter_mb:
        return {}
    out = {}
    for m in methods:
        res = catalog.resolve(catalog.Cell(name, m, budgets[0], 0))
        size = adapter_bytes(res)
        if size is not None and size / 2**20 > c.max_adapter_mb:
            out[m] = f"adapter {size / 2**20:.1f} MiB > {c.max_adapter_mb:g} MiB (counted on the prepared model)"
    return out


def adapter_bytes(res) -> int | None:
    """Bytes of the trainable tensors a method adds or changes in the backbone (fp32), counted on the backbone as
    the method prepares it (random weights: the count does not depend on them); None for a method that trains
    nothing or cannot run on this backbone."""
    if not res.method.trains or res.unsupported_reason():
        return None
    from bench.run.model import AdaptModel

    backbone = get_backbone(res.backbone)
    loaded = backbone.load(pretrained=False, **res.task.input_size)
    outputs = res.task.spec.num_labels if res.task.spec.kind == "classification" else 1
    model = res.method.prepare(AdaptModel(loaded.encoder, make_head(loaded.feature_dim, outputs)), backbone, res.task)
    return int(sum(p.numel() * 4 for p in model.encoder.parameters() if p.requires_grad))


def recommendation_text(rec: Recommendation, spec) -> str:
    metric = spec.primary_metric
    lines = [f"# Recommendation for {rec.name}", ""]
    lines += [f"Primary metric: {metric} ({spec.direction}); {spec.description}.", ""]
    if rec.time:
        lines += [f"Compute: {rec.time}.", ""]
    lines += ["## Verdict per budget", ""]
    for d in rec.decisions:
        if d.best is None:
            lines.append(f"- **{d.budget} labels**: no verdict ({d.note or 'no method qualifies'})")
            continue
        val = d.validation.get(d.best, math.nan)
        parts = [
            f"- **{d.budget} labels**: **{d.best}** (chosen on validation, {metric} {val:.3f}; "
            f"{d.seeds.get(d.best, 0)} seeds)"
        ]
        for group, label in (
            (d.worse, "worse on test (adjusted)"),
            (d.equivalent, "equivalent within the margin"),
            (d.better, "better on test: the validation choice is reversed"),
            (d.undecided, "undecided at this compute"),
        ):
            if group:
                diffs = ", ".join(f"{m} ({_diff(d, m)})" for m in group)
                parts.append(f"  - {label}: {diffs}")
        if d.excluded:
            parts.append("  - left out: " + "; ".join(f"{m}: {why}" for m, why in sorted(d.excluded.items())))
        if not d.diffs:
            parts.append("  - confidence: no other method ran at this budget, so nothing was compared")
            lines += parts
            continue
        confident = not d.undecided and not d.better
        parts.append(
            "  - confidence: "
            + (
                "every comparison decided (Holm-adjusted, 5% family-wise)"
                if confident
                else "not every comparison is decided at this compute (the adaptive design adds seeds only where 5 "
                "could decide; the test set bounds the rest): treat the choice as provisional"
            )
        )
        lines += parts
    if rec.ruled_out or rec.not_run:
        lines += ["", "## Ruled out or not run", ""]
        lines += [f"- {m}: {why}" for m, why in sorted(rec.ruled_out.items())]
        lines += [f"- {m}: {why}" for m, why in sorted(rec.not_run.items()) if m not in rec.ruled_out]
    lines += ["", "## Learning curves", ""]
    lines.append(
        "| method | " + " | ".join(f"{b}" for b in sorted({b for c in rec.curves for b in c.budgets})) + " | target |"
    )
    all_b = sorted({b for c in rec.curves for b in c.budgets})
    lines.append("|---|" + "---|" * (len(all_b) + 1))
    for c in rec.curves:
        cells = [f"{dict(zip(c.budgets, c.means, strict=True)).get(b, math.nan):.3f}" for b in all_b]
        if c.target is None:
            tgt = "-"
        elif c.reached_at:
            tgt = c.note
        elif c.labels is not None and math.isfinite(c.labels):
            lo, hi = c.interval or (math.nan, math.nan)
            top = 100 * max(c.budgets)
            high = f"{hi:,.0f}" if hi <= top else f"> {top:,} (the curve may be flat)"
            tgt = f"~{c.labels:,.0f} labels [{lo:,.0f}, {high}]; {c.note}"
        else:
            tgt = c.note
        lines.append(f"| {c.method} | " + " | ".join(cells) + f" | {tgt} |")
    lines += [
        "",
        "Curves are test means over seeds; the extrapolation fits the metric on log(labels) and resamples seeds for "
        "its 95% interval. A log-linear fit ignores saturation: read far extrapolations as optimistic.",
        "",
        "## Reproduce",
        "",
        "```",
        *rec.commands,
        "```",
    ]
    if rec.report:
        lines += ["", f"HTML report: {rec.report}"]
    return "\n".join(lines) + "\n"


def _diff(d: Decision, method: str) -> str:
    diff = d.diffs.get(method)
    if diff is None:
        return "-"
    return f"{d.best} - {method} = {diff.diff:+.3f} [{diff.low:+.3f}, {diff.high:+.3f}]"
