"""The "Hardware" section (``bench.analysis.hardware``, ``bench.report.hardware``): medians and ranges over seeds,
records of different machines never pooled, the feature cache's state per seed with warm costs kept apart, the answers
(fastest to train and to serve, lightest, smallest), and the section on the committed default-A records."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from bench.analysis.hardware import (
    COLD,
    NO_TRAINING,
    PARTLY,
    UNUSED,
    WARM,
    WARM_ONLY,
    Machine,
    cache_state,
    cost_rows,
    hardware_report,
    machine_of,
    spread,
)
from bench.core.record import Cost, Env, Params, Record
from bench.core.store import Store
from bench.report.hardware import (
    ANCHOR,
    HEADER,
    answer_lines,
    cache_text,
    hardware_html,
    hardware_markdown,
    measured_text,
    parts_text,
    rate,
    row_cells,
    seconds,
)
from bench.report.sections import SECTIONS, glance_html

DEFAULT_A = Path(__file__).resolve().parent.parent / "results" / "baselines" / "default-A-cpu"


def _rec(method: str, seed: int, *, task: str = "t", budget: int = 64, gpu: str | None = None, cache=None, **cost):
    """An ok record with the costs given (device cpu on an "EPYC" with 2 threads, unless ``gpu`` names a GPU)."""
    r = Record("k", "s", "", "ok", task, 1, method, 1, "b", budget, seed, {})
    saved = cost.pop("saved", 400)
    fields = {"device": "cuda" if gpu else "cpu", "steps": 10, "train_time_s": 10.0, "wall_time_s": 20.0}
    r.cost = Cost(**{**fields, **cost}, feature_cache=cache)
    r.params = Params(total=1000, trainable=110, trainable_no_head=100, adapter_bytes=saved)
    r.env = Env(cpu_model="EPYC", threads=2, gpu_name=gpu)
    return r


def test_a_spread_is_the_median_with_the_range_over_seeds():
    s = spread([20.0, 22.0, 270.0, None, float("nan")])
    assert (s.median, s.low, s.high, s.n) == (22.0, 20.0, 270.0, 3)
    assert s.text(lambda x: f"{x:.0f}") == "22 (20–270)"
    assert spread([5.0]).text(lambda x: f"{x:.0f}") == "5", "one seed: its value, no range"
    assert spread([5.0, 5.001]).text(lambda x: f"{x:.1f}") == "5.0", "a range that formats as one value"
    assert spread([None]) is None


def test_records_of_different_machines_are_never_pooled():
    cpu = [_rec("lora", s, train_samples_per_s=10.0 + s) for s in range(3)]
    gpu = [_rec("lora", s, gpu="NVIDIA H100 80GB HBM3", train_samples_per_s=1000.0 + s) for s in range(3)]
    fewer_threads = _rec("lora", 3, train_samples_per_s=5.0)
    fewer_threads.env.threads = 1
    rows = cost_rows([*gpu, *cpu, fewer_threads])
    assert [(r.machine.device, r.machine.threads, r.seeds) for r in rows] == [
        ("cpu", 1, 1),
        ("cpu", 2, 3),
        ("cuda", 2, 3),
    ]
    assert rows[1].train_ex_s.value.high == 12.0, "no GPU speed in the CPU row"
    assert rows[2].train_ex_s.value.low == 1000.0 and rows[2].machine.name == "NVIDIA H100 80GB HBM3"
    assert machine_of(cpu[0]) == Machine("cpu", "EPYC", 2)
    page = "\n".join(hardware_html(SimpleNamespace(hardware=hardware_report([*gpu, *cpu]))))
    cpu_table = page[page.index("<h3>t on CPU EPYC") :]
    cpu_table = cpu_table[: cpu_table.index("</table>")]
    gpu_table = page[page.index("<h3>t on GPU NVIDIA H100") :]
    assert "1,000" not in cpu_table and "11.0" in cpu_table, "a GPU record never lands in a CPU table"
    assert "1,000" in gpu_table[: gpu_table.index("</table>")]
    assert page.index("Answers: CPU EPYC") < page.index("Answers: GPU NVIDIA H100"), "each machine its own answers"


def test_cache_state_per_seed_and_warm_costs_kept_apart():
    cold = _rec("frozen", 0, cache={"hits": 0, "computed": 500}, eval_samples_per_s=75.0)
    cold2 = _rec("frozen", 1, cache={"hits": 0, "computed": 500}, eval_samples_per_s=72.0)
    partly = _rec("frozen", 2, cache={"hits": 437, "computed": 63}, eval_samples_per_s=118_718.0)
    warm = _rec("fewshot", 0, cache={"hits": 376, "computed": 0}, eval_samples_per_s=60_000.0, steps=0)
    unused = _rec("zeroshot", 0, cache={"hits": 0, "computed": 0}, eval_samples_per_s=6.6, steps=0)
    assert [cache_state(r) for r in (cold, partly, warm, unused)] == [COLD, PARTLY, WARM, UNUSED]
    assert cache_state(_rec("lora", 0)) is None
    frozen, fewshot, zeroshot = cost_rows([cold, cold2, partly, warm, unused])
    assert frozen.test_ex_s.value.high == 75.0 and frozen.test_ex_s.warm.median == 118_718.0
    assert measured_text(frozen.test_ex_s, rate) == "73.5 (72.0–75.0); warm: 118,718"
    assert measured_text(fewshot.test_ex_s, rate) == "warm: 60,000"
    assert zeroshot.test_ex_s.warm is None, "a cache that was not read leaves the cost cold"
    assert cache_text(frozen) == (
        "computed in the cell (2 seeds, 500 examples each); partly served from the cache (seed 2: 437 served, "
        "63 computed)"
    )
    assert cache_text(zeroshot) == "cache not read (seed 0)" and cache_text(cost_rows([_rec("lora", 0)])[0]) == "–"
    assert parts_text(row_cells(frozen)[HEADER.index("feature cache")]) == cache_text(frozen)


def test_the_answers_pick_fastest_lightest_smallest_and_name_what_they_leave_out():
    records = []
    for seed in range(3):
        records += [
            _rec("full", seed, train_time_s=60.0 + seed, eval_samples_per_s=80.0, peak_mem_bytes=3 * 2**30,
                 saved=90 * 2**20),
            _rec("lora", seed, train_time_s=40.0, tuning_time_s=100.0 + seed, eval_samples_per_s=60.0,
                 eval_samples_per_s_merged=85.0 + seed, eval_samples_per_s_unmerged=58.0, merge_max_abs_diff=1e-6,
                 peak_mem_bytes=2 * 2**30, saved=2**20),
            _rec("frozen", seed, train_time_s=2.0, eval_samples_per_s=90_000.0, peak_mem_bytes=2**29, saved=0,
                 cache={"hits": 500, "computed": 0}),
            _rec("fewshot", seed, train_time_s=0.5, steps=0, eval_samples_per_s=5.5, peak_mem_bytes=4 * 2**30,
                 saved=0, cache={"hits": 0, "computed": 0}),
        ]  # fmt: skip
    (a,) = hardware_report(records).answers
    assert a.train.best == ("full",) and a.train.value.median == 61.0, "lora's time includes its tuning (101 s)"
    assert a.train.runner_up == "lora" and a.train.runner_value.median == 101.0 and not a.train.overlap
    assert {(x.method, x.why) for x in a.train.left} == {("fewshot", NO_TRAINING), ("frozen", WARM_ONLY)}
    assert a.serve.best == ("full",) and a.serve.value.median == 80.0, "ranked on test ex/s, the measure all have"
    assert a.serve.runner_up == "lora" and a.serve.runner_value.median == 60.0, "frozen's 90,000 came from the cache"
    assert a.serve.speedups == (("lora", 86.0 / 58.0),), "what merging buys, on its own examples"
    assert a.memory.best == ("lora",), "frozen's memory is a warm cell's"
    assert a.store.best == ("frozen", "fewshot") and a.store.runner_up == "lora"
    head, lines = answer_lines(a.train, seconds, "s")
    assert head == "full: 61.0\u00a0s" and lines[0] == "next: lora 101\u00a0s"
    assert "no training: fewshot (test 5.50\u00a0ex/s)" in lines and "frozen: not ranked (warm cache)" in lines
    head, lines = answer_lines(a.serve, rate, "ex/s")
    assert head == "full: 80.0\u00a0ex/s" and lines[-1] == "lora merged: 1.48x unmerged"


def test_overlapping_ranges_are_said():
    records = [_rec("full", s, train_time_s=t) for s, t in enumerate((10.0, 12.0, 30.0))]
    records += [_rec("lora", s, train_time_s=t) for s, t in enumerate((11.0, 13.0, 14.0))]
    (a,) = hardware_report(records).answers
    assert a.train.best == ("full",) and a.train.overlap
    assert answer_lines(a.train, seconds, "s")[1][0] == "next: lora 13.0\u00a0s, ranges overlap"


def test_the_section_on_the_committed_default_a_records():
    records = [r for r in Store(DEFAULT_A).records("default") if r.suite == "default"]
    data = SimpleNamespace(hardware=hardware_report([r for r in records if r.ok]))
    page = "\n".join(hardware_html(data))
    md = "\n".join(hardware_markdown(data))
    assert page.startswith(f"<section id='{ANCHOR}'>") and "Answers: CPU AMD EPYC, 1 thread (device cpu)" in page
    answers = page[: page.index("</table>")]
    pairs = {(r.task, r.budget) for r in records if r.ok}
    assert len(pairs) == 6
    for task, budget in pairs:
        assert f"<td class='l'>{task}</td><td>{budget}</td>" in answers, (task, budget)
        assert f"| {task} | {budget} |" in md, (task, budget)
    assert "process peak RSS" in page and "no training: fewshot" in page and "merged" in page
    assert "MFU – for frozen, fewshot, zeroshot" in page, "why CPU rows without MFU have none"
    assert md.index("### Answers") < md.index("### pneumonia-mnist on") < md.index("### glue-sst2 on")
    shown = [section.html for section in SECTIONS]
    assert shown.index(hardware_html) == shown.index(glance_html) + 1, "right after the table at a glance"


def test_an_answer_resting_on_fewer_seeds_than_the_row_says_so():
    frozen = [_rec("frozen", 0, train_time_s=0.5, cache={"hits": 0, "computed": 192})]
    frozen += [_rec("frozen", s, train_time_s=6.0, cache={"hits": 128, "computed": 64}) for s in (1, 2)]
    (a,) = hardware_report([*frozen, *(_rec("lora", s, train_time_s=2.0) for s in range(3))]).answers
    assert a.train.best == ("frozen",) and a.train.value.n == 1 and a.train.best_of == 3
    assert answer_lines(a.train, seconds, "s") == ("frozen: 0.5\u00a0s (1 of 3 seeds)", ["next: lora 2.0\u00a0s"])
