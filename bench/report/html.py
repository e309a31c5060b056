"""The report page's style, its few lines of script and its table helper: one self-contained file, offline.

Layout: a readable column up to 1300 px; every table sits in its own horizontally scrolling box, so a wide table never
makes the page scroll sideways (from 800 px up); a shadow at the box's edge says more columns lie that way, and a
leaderboard's method and budget columns stay in view while it scrolls (its cells do not wrap). Print: details open,
landscape pages, tables wrapped to the page's width (no cell clipped) and not cut through a row, header rows repeated
on each page, a figure kept on one page where it fits (one without a narrow layout shrunk to fit), colours kept.
Script: click a column header to sort (numbers numerically, by the cell's ``data-v`` when it has one; empty cells
last), follow a link into a collapsed drill-down and it opens.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1300px;color:#222;padding:0 1rem;line-height:1.4}
h1{font-size:1.5rem} h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
.scroll{overflow-x:auto;max-width:100%;margin:.5rem 0 1.2rem;
 background:linear-gradient(to right,#fff 40%,#fff0) left/2rem 100% no-repeat local,
  linear-gradient(to left,#fff 40%,#fff0) right/2rem 100% no-repeat local,
  radial-gradient(farthest-side at 0 50%,#0003,#0000) left/.7rem 100% no-repeat scroll,
  radial-gradient(farthest-side at 100% 50%,#0003,#0000) right/.7rem 100% no-repeat scroll}
table{border-collapse:collapse;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right;vertical-align:top}
th{background:#f3f3f3} td:first-child,th:first-child,.l{text-align:left} td:first-child{white-space:nowrap}
table.kv th{text-align:left;white-space:nowrap} table.kv td{text-align:left}
table.sortable th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable td{white-space:nowrap} table.sortable td.flag{white-space:normal;min-width:12rem}
table.sortable{border-collapse:separate;border-spacing:0} table.sortable :is(th,td){border-width:0 1px 1px 0}
table.sortable tr>:first-child{border-left-width:1px} table.sortable thead th{border-top-width:1px}
table.sortable tr>:nth-child(-n+2){position:sticky;left:0;background:#fff}
table.sortable tr>:first-child{width:6.5rem;min-width:6.5rem;max-width:6.5rem;overflow:hidden;text-overflow:ellipsis}
table.sortable tbody td:first-child{white-space:normal}
table.sortable tr>:nth-child(2){left:6.5rem} table.sortable thead tr>:nth-child(-n+2){background:#f3f3f3}
table.sortable th[data-dir=asc]::after{content:" \\25B2"} table.sortable th[data-dir=desc]::after{content:" \\25BC"}
td.heat{-webkit-print-color-adjust:exact;print-color-adjust:exact;white-space:nowrap}
.nw{white-space:nowrap} .meta{color:#555;font-size:.85rem} .bad{color:#a00} .flag{color:#a00}
table.decision td:nth-child(3){min-width:11rem} table.decision td:nth-child(4){min-width:12rem}
table.decision td:nth-child(5){min-width:24rem} .cmp{margin:0 0 .2rem} .cmp.better>b,.cmp.worse>b{color:#a00}
.cmp.equivalent>b{color:#060}
code{background:#f5f5f5;padding:0 .2rem;overflow-wrap:anywhere}
img{max-width:100%;height:auto} figure{margin:1rem 0}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.78rem;background:#f8f8f8;padding:.4rem;margin:.2rem 0}
details{margin:.3rem 0} summary{cursor:pointer}
nav.toc ol{columns:2 16rem;font-size:.9rem;margin:.3rem 0}
@media print{
 body{max-width:none;margin:0;padding:0;font-size:10pt}
 .scroll{overflow:visible;background:none;max-width:none} table{font-size:7pt;max-width:100%}
 th,td{padding:.1rem .25rem;min-width:0!important;white-space:normal!important;overflow-wrap:break-word}
 table.sortable tr>:nth-child(-n+2){position:static}
 table.sortable tr>:first-child{width:auto;max-width:none;overflow:visible;text-overflow:clip}
 tr,img,pre,summary,figure,table.kv{break-inside:avoid} thead{display:table-header-group}
 h2,h3,summary{break-after:avoid} figcaption{break-before:avoid}
 figure>img{width:auto;height:auto;max-width:100%;max-height:6.2in} summary{list-style:none}
 nav.toc{display:none} table.sortable th::after{content:none!important}
}
@page{size:landscape}
@media print{details::details-content{content-visibility:visible;display:contents}}
"""

SCRIPT = """
(function(){
 function key(tr,i){var td=tr.children[i];if(!td)return null;
  var v=td.hasAttribute('data-v')?td.getAttribute('data-v'):td.textContent.trim();
  if(v===''||v==='\\u2013')return null;var n=Number(v);return isNaN(n)?v.toLowerCase():n}
 document.querySelectorAll('table.sortable').forEach(function(table){
  var heads=table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads,function(th,i){th.addEventListener('click',function(){
   var asc=th.getAttribute('data-dir')!=='asc';
   Array.prototype.forEach.call(heads,function(h){h.removeAttribute('data-dir')});
   th.setAttribute('data-dir',asc?'asc':'desc');
   var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
   rows.sort(function(a,b){var x=key(a,i),y=key(b,i);
    if(x===null||y===null)return (x===null)-(y===null);
    var c=(typeof x==='number'&&typeof y==='number')?x-y:
     (typeof x==='number'?-1:typeof y==='number'?1:(x<y?-1:x>y?1:0));
    return asc?c:-c});
   rows.forEach(function(tr){body.appendChild(tr)})})})});
 function openTarget(){var t=location.hash&&document.getElementById(decodeURIComponent(location.hash.slice(1)));
  while(t){if(t.tagName==='DETAILS')t.open=true;t=t.parentElement}}
 window.addEventListener('hashchange',openTarget);openTarget();
 window.addEventListener('beforeprint',function(){document.querySelectorAll('details').forEach(function(d){d.open=true})});
})();
"""


@dataclass(frozen=True)
class TD:
    """One table cell: ``text`` (escaped unless ``raw``), an optional sort value, inline style and tooltip."""

    text: str
    value: float | str | None = None  # data-v: what the column sorts by
    style: str = ""
    title: str = ""
    raw: bool = False  # ``text`` is HTML already
    cls: str = ""


def _td(cell: TD | str) -> str:
    if not isinstance(cell, TD):
        return f"<td>{html.escape(cell)}</td>"
    attrs = ""
    if cell.value is not None:
        attrs += f" data-v='{html.escape(str(cell.value), quote=True)}'"
    for name, value in (("style", cell.style), ("title", cell.title), ("class", cell.cls)):
        if value:
            attrs += f" {name}='{html.escape(value, quote=True)}'"
    return f"<td{attrs}>{cell.text if cell.raw else html.escape(cell.text)}</td>"


def table(header: Sequence[str], rows: Sequence[Sequence[TD | str]], cls: str = "") -> str:
    """A table in its own horizontally scrolling box; ``cls`` "sortable" makes its header clickable. A header sits
    on the side of its column's text (left over the columns whose first cell is left-aligned, ``cls`` "l")."""
    first = rows[0] if rows else []
    left = [i < len(first) and isinstance(first[i], TD) and "l" in first[i].cls.split() for i in range(len(header))]
    head = "".join(
        ("<th class='l'>" if lft else "<th>") + f"{html.escape(h)}</th>" for h, lft in zip(header, left, strict=True)
    )
    body = "\n".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    return (
        f"<div class='scroll'><table{f' class={cls!r}' if cls else ''}><thead><tr>{head}</tr></thead>"
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def anchor(*parts: object) -> str:
    """An id from names ("glue-sst2", "lora", 64 -> "glue-sst2--lora--64"): letters, digits, - and _ only."""
    text = "--".join(str(p) for p in parts)
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)
