"""The regression gate's table (``adaptbench compare``): one line per cell with what moved (baseline -> candidate,
the change and the baseline's seed sd), the rules it failed with their tolerances and notes under it, which cells
were held to the same-seed rule on one machine class and which not (naming both classes and the parts that differ),
the machine-sensitive cells the records show, and a summary line. The rule itself is in ``bench.analysis.gate``."""

from __future__ import annotations

import json
import math

from bench.analysis.gate import (
    FORGETTING,
    MEMORY,
    OTHER,
    PRIMARY,
    RULES,
    SAME,
    UNKNOWN,
    Comparison,
    Moved,
    Row,
    class_id,
)


def _moved(moved: Moved | None, digits: int, scale: float = 1.0) -> str:
    """``baseline -> candidate (change[ vs mean], sd across the baseline's seeds)``."""
    if moved is None:
        return "-"
    sd = "" if math.isnan(moved.base_sd) else f", sd {moved.base_sd / scale:.{digits}f}"
    mean = "" if moved.paired else " vs mean"
    same = ", same seed and machine class" if moved.same_machine else ""
    change = f"{moved.change / scale:+.{digits}f}{mean}{sd}{same}"
    return f"{moved.base / scale:.{digits}f} -> {moved.cand / scale:.{digits}f} ({change})"


def _statuses(row: Row) -> str:
    """A cell without numbers to compare: its statuses (e.g. unsupported -> unsupported)."""

    def side(records):
        return "/".join(sorted({r.status for r in records.values()})) or "-"

    return (
        "-" if all(r.ok for r in (*row.base.values(), *row.cand.values())) else f"{side(row.base)} -> {side(row.cand)}"
    )


def report_text(result: Comparison, baseline: str, candidate: str) -> str:
    """The table (one line per cell, what failed and notes under it) and a summary line."""
    head = ("cell", "seeds b/c", "primary test metric: baseline -> candidate", "forgetting drop", "trainable")
    head += ("peak memory MiB", "examples/s: train, else eval", "verdict")
    lines = []
    table = []
    for row in result.rows:
        primary = row.moved.get(PRIMARY)
        thr = row.moved.get("throughput")
        rate = "-"
        if thr is not None:
            ratio = f" x{thr.cand / thr.base:.2f}" if thr.base else ""
            rate = f"{thr.base:.1f} -> {thr.cand:.1f}{ratio}{' !' if row.throughput_moved else ''}"
        table.append(
            (
                row.label,
                f"{len(row.base)}/{len(row.cand)}",
                f"{row.metric} {_moved(primary, 3)}" if primary else _statuses(row),
                _moved(row.moved.get(FORGETTING), 3),
                row.params,
                _moved(row.moved.get(MEMORY), 0, 2**20),
                rate,
                row.verdict,
            )
        )
    widths = [max(len(str(r[i])) for r in [head, *table]) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip())
    for row, cols in zip(result.rows, table, strict=True):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
        lines += [f"    FAIL {c.rule}: {c.text}" for c in row.failures]
        lines += [f"    note: {n}" for n in row.notes]
    moved_settings = _settings_changed(result.rows)
    if moved_settings:
        lines.append(
            f"{len(moved_settings)} missing cells have a new cell beside them with the same task, method and budget "
            f"but other settings (e.g. {moved_settings[0]}): if the suite's settings changed on purpose, make a new "
            "baseline"
        )
    lines += machine_lines(result)
    lines.append("")
    lines.append(summary_line(result, baseline, candidate))
    return "\n".join(lines)


def _named(machine_class: str) -> str:
    return "not recorded" if machine_class == "unknown" else f"{class_id(machine_class)} ({machine_class})"


def differing(a: str, b: str) -> str:
    """The parts of two machine classes that differ (``isa avx2 fma -> isa avx2 avx512f fma``)."""

    def parts(c: str) -> dict[str, str]:
        return {p.split(" ", 1)[0]: p for p in c.split("; ")}

    pa, pb = parts(a), parts(b)
    names = dict.fromkeys([*pa, *pb])
    return "; ".join(f"{pa.get(n, f'{n} -')} -> {pb.get(n, f'{n} -')}" for n in names if pa.get(n) != pb.get(n))


def _cells(n: int) -> str:
    return f"{n} cell{'s' * (n != 1)}"


def machine_lines(result: Comparison) -> list[str]:
    """Which cells the same-seed rule held (same machine class), which it did not and why, naming both classes, and
    the machine-sensitive cells the records show."""
    rows = [r for r in result.rows if r.machine]
    if not rows:
        return []
    lines = ["", "same seed, same machine class (the tight rule, bench.analysis.gate):"]
    same = [r for r in rows if r.machine == SAME]
    lines.append(
        f"  held to the metric's margin (same seed and machine class: a rerun reproduces its numbers): {len(same)} "
        f"of {_cells(len(rows))} with a paired seed"
    )
    groups: dict[tuple[str, tuple[str, str]], list[Row]] = {}
    for r in rows:
        if r.machine != SAME:
            groups.setdefault((r.machine, r.classes), []).append(r)
    for (state, (a, b)), members in sorted(groups.items(), key=lambda g: -len(g[1]))[:4]:
        why = "the machine class differs" if state == OTHER else "a machine class is not recorded"
        lines.append(
            f"  same-seed equality not checked, {why}, in {_cells(len(members))} (the seed-spread rule instead): "
            f"baseline class {_named(a)}; candidate class {_named(b)}"
        )
        if state == OTHER and not a.startswith("machine ") and not b.startswith("machine "):
            lines.append(f"    they differ in: {differing(a, b)}")
        elif state == UNKNOWN:
            lines.append("    (records written before the machine class was recorded: make a new baseline to check it)")
    if len(groups) > 4:
        lines.append(f"  ... and {len(groups) - 4} more pairs of machine classes")
    sensitive = [r for r in result.rows if r.sensitive]
    if sensitive:
        shown = ", ".join(f"{r.label} ({r.sensitive})" for r in sensitive[:8]) + (", ..." if len(sensitive) > 8 else "")
        lines.append(
            f"  machine-sensitive in these records ({_cells(len(sensitive))}: same key and seed, a primary metric "
            f"beyond the margin on another machine): {shown}"
        )
    return lines


def _settings_changed(rows: list[Row]) -> list[str]:
    """For each missing cell with a new cell of the same task, method and budget: the settings that differ."""
    new = {r.ident[:3]: json.loads(r.ident[3]) for r in rows if not r.base}
    out = []
    for r in rows:
        if not r.cand and r.ident[:3] in new:
            a, b = json.loads(r.ident[3]), new[r.ident[:3]]
            out.append(
                ", ".join(
                    f"{key} {a.get(key, '-')} -> {b.get(key, '-')}"
                    for key in sorted({*a, *b})
                    if a.get(key) != b.get(key)
                )
            )
    return out


def summary_line(result: Comparison, baseline: str, candidate: str) -> str:
    rows = result.rows
    held_rows = [r for r in rows if r.base]
    failed = [r for r in held_rows if r.failed]
    new = [r for r in rows if not r.base]
    by_rule = {rule: sum(any(c.rule == rule for c in r.failures) for r in failed) for rule in RULES}
    rules = ", ".join(f"{rule} {n}" for rule, n in by_rule.items() if n)
    moved = sum(r.throughput_moved for r in rows)
    tail = f"; {len(new)} new cell{'s' * (len(new) != 1)} (not in the baseline)" if new else ""
    paired = [r for r in rows if r.machine]
    if paired:
        same = sum(r.machine == SAME for r in paired)
        tail += f"; same seed on the same machine class held to the margin in {same} of {len(paired)} paired cells"
    if moved:
        tail += f"; throughput moved beyond k sd in {moved} (marked !, information only: it depends on the machine)"
    if failed:
        names = ", ".join(r.label for r in failed[:5]) + (", ..." if len(failed) > 5 else "")
        return (
            f"FAIL: {len(failed)} of {len(held_rows)} baseline cells fail ({rules}): {names}. k = {result.k:g}; "
            f"baseline {baseline}, candidate {candidate}{tail}"
        )
    return (
        f"PASS: all {len(held_rows)} baseline cells within tolerance (k = {result.k:g}); baseline {baseline}, "
        f"candidate {candidate}{tail}"
    )
