"""The command line and the HTML report. Run: `.venv/bin/python -m pytest tests/test_cli_and_report.py -q`."""

from __future__ import annotations

import copy
import subprocess
import sys

import pandas as pd
import pytest

from bench.analysis.stats import seed_summary
from bench.catalog import resolve
from bench.cli import main
from bench.core.api import Cell
from bench.core.record import Cost, Env, Forgetting, Params, new_record
from bench.core.store import Store
from bench.report.page import render_html, write_report


def test_ls_lists_every_registry(capsys):
    """Each section lists exactly its registry's names, one per line, first on the line (a name found elsewhere in the
    output, e.g. in a description, does not count)."""
    from bench import catalog
    from bench.core.backbone import BACKBONES
    from bench.suite import suite_names

    assert main(["ls"]) == 0
    sections: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line.endswith(":") and not line.startswith(" "):
            sections[line[:-1]] = current = []
        elif line.startswith("  ") and not line.startswith("  +") and ":" not in line.split()[0]:
            current.append(line.split()[0])
    assert sections["tasks"] == sorted(catalog.TASKS.names()), "every registered task, in order"
    assert sections["methods"] == sorted(catalog.METHODS.names())
    assert sections["backbones"] == sorted(BACKBONES.names())
    assert sections["suites"] == sorted(suite_names())
    assert {"pneumonia-mnist", "glue-sst2"} <= set(sections["tasks"]) and "lora" in sections["methods"]


def test_an_unknown_method_exits_non_zero_with_suggestions():
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--task", "glue-sst2", "--method", "lorra", "--budget", "64"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "unknown method 'lorra'" in proc.stderr and "Did you mean 'lora'" in proc.stderr


def test_an_unknown_task_exits_non_zero_with_suggestions(capsys):
    assert main(["run", "--task", "pneumonia", "--method", "lora", "--budget", "64"]) == 2
    assert "Did you mean 'pneumonia-mnist'" in capsys.readouterr().err


def _records():
    out = []
    for method, acc in (("frozen", [0.70, 0.72, 0.74]), ("lora", [0.80, 0.82, 0.81])):
        for seed, a in enumerate(acc):
            r = new_record(resolve(Cell("glue-sst2", method, 64, seed, suite="t")), "ok")
            r.metrics = {"test/accuracy": a, "val/accuracy": a + 0.01}
            r.forgetting = Forgetting("stsb-spearman", before=0.87, after=0.87 - 0.01 * seed, drop=0.01 * seed)
            r.params = Params(total=1000, trainable=10, trainable_no_head=0, adapter_bytes=0)
            r.cost = Cost(
                device="cpu",
                peak_mem_bytes=2**30,
                peak_mem_delta_bytes=2**28,
                train_samples_per_s=10.0,
                eval_samples_per_s=20.0,
                train_time_s=5.0,
                wall_time_s=9.0,
            )
            r.env = Env(git_sha="abc", dirty=False, threads=2, torch="x")
            out.append(r)
    failed = copy.deepcopy(out[0])
    failed.status, failed.error, failed.method = "failed", "Traceback ...\nRuntimeError: exploded", "full"
    return [*out, failed]


def test_a_seed_interval_is_a_t_interval_over_seeds():
    i = seed_summary([0.70, 0.72, 0.74])
    assert abs(i.mean - 0.72) < 1e-12 and abs(i.high - i.mean - 4.302653 * 0.02 / 3**0.5) < 1e-5
    one = seed_summary([0.5])
    assert one.mean == 0.5 and not one.has_interval and one.describe() == "0.500 (one seed)"


def test_report_is_self_contained_and_lists_failures(tmp_path):
    html = render_html("t", _records())
    assert "data:image/png;base64," in html and "<script src" not in html and "http" not in html
    assert "0.720 [0.670, 0.770]" in html, "3 seeds -> mean and 95% t-interval"
    assert "RuntimeError: exploded" in html and "glue-sst2 x full" in html
    store = Store(tmp_path)
    for r in _records():
        store.write(r)
    path = write_report("t", store, tmp_path / "out")
    assert path.read_text().startswith("<!doctype html>")
    # summary.md's tables show the page's intervals (one table builder: bench.analysis.tables)
    assert "| lora | 64 | minilm-l6 | 3 | 0.810 [0.785, 0.835]" in (tmp_path / "out" / "summary.md").read_text()


def test_ls_matrix_gives_a_reason_for_every_unsupported_cell(capsys):
    assert main(["ls", "--matrix"]) == 0
    out = capsys.readouterr().out
    assert "pneumonia-mnist x prefix (efficientnet-lite0): prefix tuning prepends key/value vectors" in out
    header = out.splitlines()[0]
    assert "prefix" in header and "lora" in header


def test_a_suite_report_shows_only_its_current_cells_and_says_what_it_left_out(tmp_path):
    from bench.suite import load_suite

    store = Store(tmp_path)
    current, stale = _records()[0], copy.deepcopy(_records()[3])
    cell = load_suite("proxy").cells[0]
    current.key, current.suite, current.task, current.method = (
        resolve(cell).key,
        "proxy",
        cell.task,
        cell.method,
    )
    stale.key, stale.suite = "from-an-earlier-definition", "proxy"
    store.write(current)
    store.write(stale)
    html = write_report("proxy", store, tmp_path / "out").read_text()
    assert "1 ok cells" in html and "1 records of cells outside the suite" in html
    exported = pd.read_csv(tmp_path / "out" / "records.csv").set_index("key")["in_report"].to_dict()
    assert exported == {current.key: True, "from-an-earlier-definition": False}, "every record read is exported"
    assert f"{len(load_suite('proxy').cells) - 1} of the suite" in html
    assert "2 ok cells" in write_report("proxy", store, tmp_path / "all", all_records=True).read_text()


def test_more_seeds_of_a_suite_cell_are_the_suites_cells():
    """The proxy's baseline holds seeds 0-2 of a suite declaring seed 0: the extra seeds are shown (the report once
    hid them as 'outside the suite's current definition' and every row read 'not enough seeds (1 of 3)'), and the
    cells counted as missing are the definition's own."""
    import dataclasses

    from bench.suite import current_records, load_suite

    cell = load_suite("proxy").cells[0]
    records = []
    for seed in (0, 1, 2):
        r = copy.deepcopy(_records()[0])
        r.key, r.suite, r.task, r.method, r.budget, r.seed = (
            resolve(dataclasses.replace(cell, seed=seed)).key, "proxy", cell.task, cell.method, cell.budget, seed
        )  # fmt: skip
        records.append(r)
    other = copy.deepcopy(records[2])
    other.key = "another-setting-at-seed-2"
    kept, notes = current_records("proxy", [*records, other])
    assert [r.seed for r in kept] == [0, 1, 2]
    assert any("1 records of cells outside" in n for n in notes), notes
    assert any(
        f"{len(load_suite('proxy').cells) - 1} of the suite's {len(load_suite('proxy').cells)}" in n for n in notes
    )


def test_every_help_text_renders(capsys):
    """argparse formats help strings with %: a bare "95%" once crashed `adaptbench --help`."""
    import argparse

    import pytest

    from bench.cli import build_parser

    parser = build_parser()
    parser.format_help()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        assert name in sub.format_help()
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0 and "summary" in capsys.readouterr().out


def test_version_prints_the_installed_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("adaptbench ")
