"""The page's glossary: every method the report shows (what it trains, from its registry ``description``, under the
label the page uses), the words of its verdicts and columns, and the flags (``bench.analysis.flags.FLAGS``), each
defined once. The tables here are the declared ones; nothing else on the page defines a term at length.
"""

from __future__ import annotations

import html

from bench import catalog
from bench.analysis.flags import FLAGS
from bench.analysis.overview import method_rank

esc = html.escape

# the verdicts' words and the columns' names -> what they mean
TERMS: dict[str, str] = {
    "chosen on validation (★)": "the method with the best mean validation score of the primary metric among those "
    "with enough seeds and stored predictions; the test set is used only to check that choice",
    "better / worse": "the test set shows the method above / below the choice: the paired difference's Holm-adjusted "
    "p-value is under 0.05 (better: the validation choice is reversed)",
    "equivalent (☆)": "the difference lies within the metric's margin (±, in the metric's units): two one-sided "
    "tests, Holm-adjusted",
    "undecided": "neither: the test set and seeds cannot tell yet; the map says how many more seeds would",
    "undecided at this compute": "a row where at least one comparison is undecided: a good answer, not a failure",
    "left out": "a method the decision map could not compare: too few seeds, no stored predictions, over a memory cap",
    "margin": "the smallest difference that matters, declared per metric (0.01 of accuracy or AUROC): inside it two "
    "methods are equivalent",
    "Holm-adjusted": "the p-values of a family of comparisons (the whole decision map; the gains over scratch) "
    "corrected together so that the chance of any false claim in the family stays at 5%",
    # the leaderboards' columns, by their headers
    "method": "the adaptation strategy (the methods table above says what each trains); a mechanism in brackets "
    "where one name covers two",
    "budget": "the labelled training examples the cell could use (its validation examples are carved from them "
    "unless the suite says otherwise); all = the task's whole training set",
    "backbone": "the pretrained model the method adapted (or prompted): compare methods on different backbones "
    "knowing that the backbone differs too",
    "seeds": "independent repetitions of a cell (training subset, initialisation, data order); for a method that "
    "does not train (fewshot, zeroshot) each seed is a draw of the demonstrations or of the prompt's phrasing",
    "test/<metric> [95%: kind]": "the mean over seeds of a test metric with its 95% interval; the kind says what it "
    "counts: seeds+items (the seeds' spread and the test set's sampling), items (one seed: the test set only), "
    "seeds (no stored predictions: the seeds' t-interval). test_ood/: the shifted test set; gap/: in-domain minus "
    "shifted",
    "against the choice": "this method minus the one chosen on validation at the same budget, with its 95% interval "
    "and Holm-adjusted p, and the outcome (the decision map's comparison)",
    "flags": "the caveats of the row (below: flags), and step cap k/n",
    "gain over scratch [95%]": "the method's primary metric minus training from scratch at the same budget (paired "
    "on the test items), Holm-adjusted as one family; significantly below 0 is negative transfer",
    "trainable params": "parameters that receive gradients (and their share of the model's)",
    "saved MiB": "what must be stored beside the base model to serve this adaptation (the adapter or changed "
    "weights; the whole model for full fine-tuning and scratch)",
    "peak mem MiB": "peak memory of the cell: process peak RSS on a CPU, CUDA max allocated on a GPU",
    "peak rise MiB": "the cell's own increase of memory over what the process held when it started",
    "train s": "time spent in training steps (nested tuning's candidates and folds included when tuned)",
    "wall s": "the cell's whole time: loading, tuning, training, evaluation and probes",
    "train ex/s": "training examples per second of step time (warm-up steps excluded)",
    "eval ex/s": "test examples scored per second",
    "forgetting drop [95%]": "a held-out probe (e.g. ImageNet top-1 or WikiText perplexity) on the untouched "
    "pretrained backbone minus the same probe on the adapted one: positive means the adaptation forgot",
    "median (range)": "costs are the median over seeds with the lowest and highest seed in brackets, so one slow "
    "seed does not move the figure",
    "step cap k/n": "in k of n seeds the run ended at its step cap, not by patience or convergence: the cap, not the "
    "method, set its length",
}


def methods_glossary(pairs: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(label, backbones, what trains) for the report's (task, method) pairs, one row per label."""
    rows: dict[str, tuple[set[str], str]] = {}
    for task, method in sorted(set(pairs), key=lambda tm: (method_rank(tm[1]), tm[0])):
        label = catalog.method_label(method, task)
        known = method in catalog.METHODS.names()
        what = catalog.method_class(method).description if known else "not registered in this checkout"
        rows.setdefault(label, (set(), what))[0].add(task)
    return [(label, ", ".join(sorted(tasks)), what) for label, (tasks, what) in rows.items()]


def glossary_html(pairs: list[tuple[str, str]]) -> list[str]:
    methods = "".join(
        f"<tr><th>{esc(label)}</th><td>{esc(what)}</td><td>{esc(tasks)}</td></tr>"
        for label, tasks, what in methods_glossary(pairs)
    )
    terms = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in TERMS.items())
    flags = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in FLAGS.items())
    return [
        "<section id='glossary'><h2>Glossary</h2>",
        "<h3>Methods: what each trains</h3>",
        f"<div class='scroll'><table class='kv'><thead><tr><th>method</th><th>what it trains</th><th>tasks here</th>"
        f"</tr></thead>{methods}</table></div>",
        "<h3>Verdicts and columns</h3>",
        f"<div class='scroll'><table class='kv'>{terms}</table></div>",
        "<h3>Flags</h3>",
        f"<div class='scroll'><table class='kv'>{flags}</table></div>",
        "</section>",
    ]


def glossary_markdown(pairs: list[tuple[str, str]]) -> list[str]:
    lines = ["## Glossary", "", "| method | what it trains | tasks here |", "|---|---|---|"]
    lines += [f"| {label} | {what} | {tasks} |" for label, tasks, what in methods_glossary(pairs)]
    lines += ["", "| term | meaning |", "|---|---|", *(f"| {k} | {v} |" for k, v in TERMS.items())]
    lines += ["", "| flag | meaning |", "|---|---|", *(f"| {k} | {v} |" for k, v in FLAGS.items())]
    return lines
