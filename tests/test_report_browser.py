"""The report as a person sees it: pages rendered from real committed records (the default suite's replicate A, the
proxy at 3 seeds, the anchors), opened in headless Chromium at 1400 and 800 px. It checks that the sections are
there (overview, decision map, table at a glance, hardware answer, leaderboards, glossary), that every figure is an
inline PNG that decodes, shown at no less than ``MIN_SCALE`` of its size so its text stays legible, that every verdict
is read with its caveats without scrolling sideways or hovering at 1400 px (each leaderboard's verdict columns, the
whole decision map and hardware answer, intervals printed at a glance, every column defined in the glossary, the
two fewshot mechanisms told apart, the backbone and the step cap beside the verdict, a baseline's extra seeds
shown), that the anchors page carries the published numbers, that clicking a leaderboard header sorts it, that the
page never scrolls sideways (tables scroll in their own boxes), that the console stays clean and that nothing but
``data:`` URLs is fetched. It writes full-page screenshots to the test's tmp folder, and to
``$ADAPTBENCH_SCREENSHOTS`` when set (with the top of the default page down to the hardware answer, as in
docs/report-1400-top.png and docs/report-800-top.png).

Needs Debian's ``chromium`` (``apt-get install chromium``; the test is skipped without it) and drives it over the
DevTools protocol with ``tests/_cdp.py``. Run: `.venv/bin/python -m pytest tests/test_report_browser.py -q`.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from _cdp import Browser, find_chromium

from bench.cli import main

pytestmark = pytest.mark.slow  # a report from real records (~10 s on 2 cores) and a browser

BASELINES = Path(__file__).resolve().parent.parent / "results" / "baselines"
TASKS = ("pneumonia-mnist", "glue-sst2")
WIDTHS = (1400, 800)
MIN_SCALE = 0.75  # a figure drawn at 100 dpi with 8-10 pt text is unreadable much below this
# the committed records of each report the test renders: (folder, the suite file or name)
SOURCES = {
    "default": ("default-A-cpu", "default-A-cpu/default.toml"),
    "proxy": ("proxy-cpu", None),
    "anchors": ("anchors-cpu", None),
}
# the columns of a leaderboard a verdict is read from: visible without scrolling sideways at 1400 px
VERDICT_COLUMNS = ("method", "budget", "backbone", "seeds", "against the choice", "flags")


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    """index.html of the default suite (replicate A, 79 records), the proxy (3 seeds) and the anchors, made by
    `adaptbench report` from the committed records as a user runs it."""
    out = {}
    for name, (folder, suite) in SOURCES.items():
        where = tmp_path_factory.mktemp(name)
        args = ["report", "--results", str(BASELINES / folder), "--out", str(where)]
        assert main(args + (["--suite", str(BASELINES / suite)] if suite else [])) == 0
        out[name] = where / "index.html"
    return out


@pytest.fixture(scope="module")
def report(reports) -> Path:
    return reports["default"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    with Browser(chromium, tmp_path_factory.mktemp("chromium-profile")) as b:
        yield b


def _problems(b: Browser, since: int) -> list[str]:
    """Console errors, uncaught exceptions and log errors since ``b.events[since]``."""
    out = []
    for name, p in b.events[since:]:
        if name == "Runtime.exceptionThrown":
            out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description', p)}")
        elif name == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
            out.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
        elif name == "Log.entryAdded" and p["entry"]["level"] == "error":
            out.append(f"log: {p['entry']['text']} ({p['entry'].get('url', '')})")
    return out


def _shoot(b: Browser, tmp_path: Path, name: str, height: float | None = None) -> None:
    path = b.screenshot(tmp_path / f"{name}.png", height)
    if os.environ.get("ADAPTBENCH_SCREENSHOTS"):
        where = Path(os.environ["ADAPTBENCH_SCREENSHOTS"])
        where.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, where / path.name)


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("width", WIDTHS)
def test_the_page_holds_its_sections_and_legible_figures(browser, reports, tmp_path, name, width):
    mark = len(browser.events)
    browser.open(reports[name].as_uri(), width)
    page = browser.eval(
        """(() => {
        const rows = sel => Array.from(document.querySelectorAll(sel)).map(tr => tr.innerText.split('\\t')[0].trim());
        return {
          toc: Array.from(document.querySelectorAll('nav.toc a')).map(a => a.getAttribute('href')),
          overview: rows('#overview table.kv tr'),
          glance: rows('#at-a-glance tbody tr'),
          boards: Array.from(document.querySelectorAll('section[id^=task--] table.sortable'))
            .map(t => [t.closest('section').id, t.tBodies[0].rows.length]),
        };
        })()"""
    )
    assert page["toc"][:3] == ["#overview", "#decision-map", "#at-a-glance"] or name == "anchors", page["toc"]
    assert {"#hardware", "#glossary"} <= set(page["toc"]), "the hardware answer and the glossary are on every page"
    assert {"suite", "what ran", "cells", "hardware", "code", "total wall time"} <= set(page["overview"])
    assert page["boards"] and all(n > 0 for _, n in page["boards"]), "a leaderboard per task, a row per cell"
    if name == "default":
        assert page["glance"] == [*(t for t in TASKS for _ in (64, 256, 1024)), "mean rank"], "a row per (task, budget)"
        assert [b for b, _ in page["boards"]] == [f"task--{t}" for t in TASKS]
    figures = browser.eval(
        """Promise.all(Array.from(document.images).map(img => img.decode().then(() => true, () => false)
          .then(decoded => ({alt: img.alt, src: img.currentSrc.slice(0, 22), decoded,
                             natural: img.naturalWidth, shown: img.getBoundingClientRect().width}))))"""
    )
    assert len(figures) >= 2, "figures per task and across tasks"
    for f in figures:
        assert f["src"] == "data:image/png;base64,", f
        assert f["decoded"] and f["natural"] > 0, f"{f['alt']}: the PNG did not decode"
        assert f["shown"] >= MIN_SCALE * f["natural"], (
            f"{name}: {f['alt']}: shown at {f['shown']:.0f} of its {f['natural']} px at {width} px, too small to read"
        )
    _shoot(browser, tmp_path, f"report-{name}-{width}")
    if name == "default":  # the verdicts, the table at a glance and the hardware answer: docs/report-*-top.png
        bottom = browser.eval(
            "document.querySelector('#hardware table.answers').getBoundingClientRect().bottom + scrollY"
        )
        _shoot(browser, tmp_path, f"report-{width}-top", bottom + 16)
    assert not _problems(browser, mark)


@pytest.mark.parametrize("name", SOURCES)
@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_scrolls_sideways_but_the_tables_inside_their_boxes(browser, reports, name, width):
    browser.open(reports[name].as_uri(), width)
    layout = browser.eval(
        """(() => {
        const de = document.documentElement, out = [];
        for (const el of document.body.querySelectorAll('*')) {
          if (el.getBoundingClientRect().right <= de.clientWidth + 0.5) continue;
          let box = el.parentElement;
          const boxed = b => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(b).overflowX);
          while (box && !boxed(box)) box = box.parentElement;
          if (!box) out.push(`${el.tagName}#${el.id}.${el.className}: ${el.textContent.slice(0, 40)}`);
        }
        return {scroll: de.scrollWidth, client: de.clientWidth, wide: out.slice(0, 8),
                boxed: Array.from(document.querySelectorAll('.scroll')).filter(s => s.scrollWidth > s.clientWidth)
                  .map(s => s.closest('section').id)};
        })()"""
    )
    assert layout["scroll"] <= layout["client"], f"the page scrolls sideways at {width} px: {layout['wide']}"
    assert not layout["wide"], layout["wide"]
    if width == 800 and name == "default":
        assert {"task--pneumonia-mnist", "task--glue-sst2"} <= set(layout["boxed"]), (
            "the leaderboards are wider than 800 px: they scroll in their own boxes"
        )
        scrolled = browser.eval(
            """(() => {
            const box = document.querySelector('#task--glue-sst2 .scroll'), row = box.querySelector('tbody tr');
            box.scrollLeft = box.scrollWidth;
            const b = box.getBoundingClientRect(), m = row.cells[0].getBoundingClientRect();
            const g = row.cells[1].getBoundingClientRect();
            const out = {by: box.scrollLeft, method: m.left - b.left, budget: g.left - m.right};
            box.scrollLeft = 0;
            return out;
            })()"""
        )
        assert scrolled["by"] > 0 and abs(scrolled["method"]) <= 1 and abs(scrolled["budget"]) <= 1, (
            f"scrolled to its end, a leaderboard keeps its method and budget columns in view: {scrolled}"
        )


@pytest.mark.parametrize("name", SOURCES)
def test_every_verdict_is_read_with_its_caveats_without_scrolling_or_hovering(browser, reports, name):
    """At 1400 px: each leaderboard's verdict columns (and the primary metric's) inside its box before any
    sideways scroll, the decision map whole, the hardware answer whole; the table at a glance shows its intervals as
    text; every leaderboard header is defined in the glossary; methods of one name but two mechanisms are told apart."""
    browser.open(reports[name].as_uri(), 1400)
    seen = browser.eval(
        """(() => {
        const fits = el => { const box = el.closest('.scroll');
          return el.getBoundingClientRect().right <= box.getBoundingClientRect().right + 0.5; };
        const boards = Array.from(document.querySelectorAll('section[id^=task--] table.sortable')).map(t => {
          const heads = Array.from(t.tHead.rows[0].cells);
          return {task: t.closest('section').id, heads: heads.map(th => th.textContent),
                  hidden: heads.filter((th, i) => i <= heads.findIndex(h => h.textContent === 'flags') && !fits(th))
                    .map(th => th.textContent)};
        });
        const whole = sel => Array.from(document.querySelectorAll(sel)).map(t => {
          const box = t.closest('.scroll'); return box.scrollWidth <= box.clientWidth; });
        const text = sel => Array.from(document.querySelectorAll(sel)).map(e => e.innerText);
        return {boards, map: whole('#decision-map table'), answer: whole('#hardware table.answers'),
                glance: text('#at-a-glance td.heat'), glanceHead: text('#at-a-glance thead th'),
                mapText: text('#decision-map tbody tr').join('\\n'),
                glossary: text('#glossary th')};
        })()"""
    )
    for board in seen["boards"]:
        assert set(VERDICT_COLUMNS) <= set(board["heads"]), board["heads"]
        assert not board["hidden"], f"{name} {board['task']}: {board['hidden']} off-screen at 1400 px"
        defined = {h.split(" [")[0] for h in seen["glossary"]} | {"test/<metric>"}
        for head in board["heads"]:
            short = head.split(" [")[0]
            short = "test/<metric>" if "/" in short else short
            assert short in defined, f"{name}: the column {head!r} is not in the glossary"
    assert seen["map"] and all(seen["map"]), "the decision map fits at 1400 px"
    assert "not enough seeds (1 of 3)" not in seen["mapText"], "a baseline's extra seeds are the suite's cells"
    if name == "default":
        assert all(seen["answer"]) and seen["answer"], "the hardware answer fits at 1400 px"
        assert all(re.search(r"\d\.\d{3}\s+\S*\d\.\d{3}[–-]\d\.\d{3}|one seed", t) for t in seen["glance"]), (
            "every cell of the table at a glance prints its interval, not only in a tooltip"
        )
        assert {"fewshot (nearest class mean)", "fewshot (in-context LM)"} <= set(seen["glanceHead"])
        assert "fewshot (in-context LM) on smollm2-135m" in seen["mapText"], "the backbone beside the verdict"
        assert "step cap" in seen["mapText"], "the step cap where the verdict is read"


def test_the_anchors_page_shows_the_published_numbers(browser, reports):
    browser.open(reports["anchors"].as_uri(), 1400)
    text = browser.eval("(document.getElementById('references') || {innerText: ''}).innerText")
    assert "published" in text.lower() and re.search(r"\d\.\d{3} ± \d\.\d{3}", text), text[:400]


def test_clicking_a_leaderboard_header_sorts_its_rows(browser, report):
    mark = len(browser.events)
    browser.open(report.as_uri(), 1400)
    column = """(() => {
        const table = document.querySelector('#task--glue-sst2 table.sortable');
        const i = Array.from(table.tHead.rows[0].cells).findIndex(th => th.textContent.startsWith('%s'));
        return Array.from(table.tBodies[0].rows).map(tr => tr.cells[i].getAttribute('data-v'));
        })()"""
    header = """(() => {
        const th = Array.from(document.querySelectorAll('#task--glue-sst2 table.sortable th'))
          .find(th => th.textContent.startsWith('%s'));
        th.scrollIntoView({block: 'center', inline: 'center'});
        const r = th.getBoundingClientRect();
        return [r.left + r.width / 2, r.top + r.height / 2];
        })()"""

    def click(name: str) -> list:
        browser.click(*browser.eval(header % name))
        return browser.eval(column % name)

    before = [float(v) for v in browser.eval(column % "test/accuracy")]
    assert before != sorted(before), "the rows start in budget then method order"
    up = [float(v) for v in click("test/accuracy")]
    assert up == sorted(before), "first click: ascending"
    down = [float(v) for v in click("test/accuracy")]
    assert down == sorted(before, reverse=True), "second click: descending"
    methods = click("method")
    assert methods == sorted(methods), "text columns sort by name"
    arrows = browser.eval(
        "Array.from(document.querySelectorAll('#task--glue-sst2 th[data-dir]')).map(th => th.textContent)"
    )
    assert arrows == ["method"], "only the sorted column shows its direction"
    assert not _problems(browser, mark)


def test_the_console_is_clean_and_nothing_is_fetched_but_data_urls(browser, report):
    mark = len(browser.events)
    for width in WIDTHS:
        browser.open(report.as_uri(), width)
    assert not _problems(browser, mark)
    urls = {p["request"]["url"] for name, p in browser.events[mark:] if name == "Network.requestWillBeSent"}
    assert report.as_uri() in urls
    others = {u[:80] for u in urls - {report.as_uri()} if not u.startswith("data:")}
    assert not others, f"the page fetched {others}: it must be self-contained"
