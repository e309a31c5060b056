"""What a report is about, in one place: what ran, on which hardware and code, when, for how long, and how it went.

``build_overview`` computes it once from the records (every field read from them, nothing from the machine that
writes the report); ``Overview.rows`` turns it into (label, text) pairs that the HTML page and summary.md both
render, so the two cannot disagree.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.core.record import OK, UNSUPPORTED, Record

VERSIONED = ("python", "torch", "transformers", "peft", "timm")


@dataclass(frozen=True)
class Overview:
    suite: str
    source: str  # the records folder read
    n_records: int
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    budgets: tuple[int, ...]
    seeds: tuple[int, ...]
    backbones: tuple[str, ...]
    ok: int
    degenerate: int  # ok records flagged degenerate
    not_ok: dict[str, int]  # status -> records (failed, oom, killed, timeout, diverged)
    unsupported: int
    unreadable: int  # record files that could not be read
    cpus: dict[str, int]  # CPU description -> records
    gpus: dict[str, int]
    devices: dict[str, int]  # cost.device -> records
    threads: dict[int, int]
    hosts: dict[str, int]
    shas: dict[str, int]  # git sha -> records ("?" when unknown)
    dirty: int  # records from a checkout with uncommitted changes
    versions: dict[str, dict[str, int]]  # package -> version -> records
    first: str | None  # earliest created_at
    last: str | None
    wall_time_s: float  # sum of cost.wall_time_s over every record that has it
    wall_time_records: int
    n_read: int | None = None  # records read from the folder, when the report shows fewer (see its notes)
    generated: str = field(default_factory=lambda: f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")

    def rows(self) -> list[tuple[str, str]]:
        """(label, text) pairs, in the order a reader asks: what, how it went, where, which code, when."""
        not_ok = sum(self.not_ok.values())
        statuses = f" ({', '.join(f'{n} {s}' for s, n in sorted(self.not_ok.items()))})" if not_ok else ""
        cells = (
            f"{self.ok} ok cells ({self.degenerate} flagged degenerate), {not_ok} failed{statuses}, "
            f"{self.unsupported} unsupported"
        )
        if self.unreadable:
            cells += f", {self.unreadable} unreadable record files"
        hardware = f"CPU {_counted(self.cpus)}"
        if self.gpus:
            hardware += f"; GPU {_counted(self.gpus)}"
        hardware += f"; device {_counted(self.devices)}; torch threads {_counted(self.threads)}"
        if self.hosts:
            hardware += f"; host {_counted(self.hosts)}"
        shas = _counted({sha[:10]: n for sha, n in self.shas.items()})
        code = f"git {shas}" + (f" ({self.dirty} records from uncommitted changes)" if self.dirty else "")
        for package in VERSIONED:
            seen = self.versions.get(package, {})
            if seen:
                code += f"; {package} {_counted(seen)}"
        s = self.wall_time_s
        span = f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"
        wall = f"{s:,.0f} s ({span}) over {_n(self.wall_time_records, 'record')}"
        shown = _n(self.n_records, "record")
        if self.n_read is not None and self.n_read != self.n_records:
            shown += f" shown of {self.n_read} read (the notes below say why)"
        return [
            ("suite", f"{self.suite}: {shown} in {self.source}"),
            (
                "what ran",
                f"{_n(len(self.tasks), 'task')} ({', '.join(self.tasks)}); {_n(len(self.methods), 'method')} "
                f"({', '.join(self.methods)}); budgets {', '.join(budget_text(b) for b in self.budgets)}; seeds "
                f"{', '.join(map(str, self.seeds))}; backbones {', '.join(self.backbones)}",
            ),
            ("cells", cells),
            ("hardware", hardware),
            ("code", code),
            ("records written", f"{_date(self.first)} to {_date(self.last)}" if self.first else "unknown"),
            ("total wall time", wall),
            ("generated", self.generated),
        ]

    def markdown(self) -> list[str]:
        return ["| | |", "|---|---|", *(f"| {label} | {text.replace('|', '/')} |" for label, text in self.rows())]


def build_overview(
    suite: str,
    records: Sequence[Record],
    source: str | Path | None = None,
    unreadable: int = 0,
    n_read: int | None = None,
) -> Overview:
    """The overview of ``records`` (all statuses), read from ``source`` (``n_read``: how many records the folder
    held, when the report shows only some of them)."""
    ok = [r for r in records if r.ok]
    envs = [r.env for r in records if r.env is not None]
    versions: dict[str, dict[str, int]] = {}
    for package in VERSIONED:
        seen = Counter(str(getattr(e, package)) for e in envs if getattr(e, package))
        if seen:
            versions[package] = dict(seen)
    created = sorted(r.created_at for r in records if r.created_at)
    walls = [r.cost.wall_time_s for r in records if r.cost and r.cost.wall_time_s is not None]
    return Overview(
        suite=suite,
        source=str(source or suite),
        n_records=len(records),
        tasks=tuple(_ordered_tasks({r.task for r in records})),
        methods=tuple(sorted({r.method for r in records}, key=method_rank)),
        budgets=tuple(sorted({r.budget for r in records}, key=lambda b: (b == 0, b))),
        seeds=tuple(sorted({r.seed for r in records})),
        backbones=tuple(sorted({r.backbone for r in records if r.backbone})),
        ok=len(ok),
        degenerate=sum("degenerate" in r.flags for r in ok),
        not_ok=dict(Counter(r.status for r in records if r.status not in (OK, UNSUPPORTED))),
        unsupported=sum(r.status == UNSUPPORTED for r in records),
        unreadable=unreadable,
        cpus=dict(Counter(_cpu(e) for e in envs)),
        gpus=dict(Counter(e.gpu_name for e in envs if e.gpu_name)),
        devices=dict(Counter(str(r.cost.device) for r in ok if r.cost and r.cost.device)),
        threads=dict(Counter(e.threads for e in envs if e.threads is not None)),
        hosts=dict(Counter(e.hostname for e in envs if e.hostname)),
        shas=dict(Counter(e.git_sha or "?" for e in envs)),
        dirty=sum(bool(e.dirty) for e in envs),
        versions=versions,
        first=created[0] if created else None,
        last=created[-1] if created else None,
        wall_time_s=float(sum(walls)),
        wall_time_records=len(walls),
        n_read=n_read,
    )


MAIN_TASKS = ("pneumonia-mnist", "glue-sst2")  # the two foundation tasks every method runs on: first everywhere
METHOD_ORDER = ["scratch", "frozen", "full", "lora"]


def _ordered_tasks(tasks) -> list[str]:
    return sorted(tasks, key=task_rank)


def task_rank(task: str) -> tuple[int, str]:
    """Main tasks first (in ``MAIN_TASKS`` order), then the rest alphabetically."""
    return (MAIN_TASKS.index(task) if task in MAIN_TASKS else len(MAIN_TASKS), task)


def method_rank(name: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(name) if name in METHOD_ORDER else len(METHOD_ORDER), name)


def _cpu(env) -> str:
    model = env.cpu_model or f"{env.cpu or '?'} (model not recorded)"
    return f"{model}, {env.cpu_count} cores" if env.cpu_count else model


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def budget_text(b: int) -> str:
    """A budget as the pages write it: its number, or "all" for 0 (the whole training set)."""
    return "all" if b == 0 else str(b)


def _date(stamp: str | None) -> str:
    return (stamp or "?")[:16].replace("T", " ") + " UTC"


def _counted(values: dict) -> str:
    """ "a" for one value; "a (3), b (1)" (records each) when the records disagree."""
    if not values:
        return "not recorded"
    if len(values) == 1:
        return str(next(iter(values)))
    return ", ".join(f"{v} ({n})" for v, n in sorted(values.items(), key=lambda kv: (-kv[1], str(kv[0]))))
