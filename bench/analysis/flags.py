"""The flags of a method at one task and budget, computed once (``cell_flags``) and explained once (``FLAGS``): the
summary, the page's leaderboards and summary.md all take both from here.

- did-not-learn: the interval of the primary metric over seeds reaches the majority-class baseline (one seed: the
  paired bootstrap against the majority predictor; ``bench.analysis.baselines``);
- degenerate: a seed predicted one class (or a constant score) for every test item (the record's own flag);
- few-seeds: fewer seeds than a ranking needs (``bench.analysis.stats.min_seeds``);
- still-improving k/n: in k of n seeds the best validation pass was the run's last (``still_improving``);
- grid-edge k/n: in k of n seeds the tuned value chosen is at an edge of a grid widened to its limit;
- negative-transfer: significantly below scratch at the same budget (``bench.analysis.cells.gain_over_scratch``);
- probe not held out: the forgetting probe reads this task's own data (``bench.catalog.held_out``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.analysis import baselines as bl
from bench.analysis.cells import Gain, MethodCell
from bench.analysis.stats import enough_seeds

if TYPE_CHECKING:
    from bench.core.api import TaskSpec
    from bench.core.record import Record
    from bench.core.store import Store

NOT_HELD_OUT = "probe not held out"
# flag (as its legend names it) -> what it means; the order is the legends' order
FLAGS = {
    "did-not-learn": "the interval reaches the majority-class baseline (one seed: the item-level test against the "
    "majority predictor)",
    "degenerate": "a seed predicted one class for every item",
    "few-seeds": "fewer seeds than a ranking needs",
    "negative-transfer": "significantly below scratch (gains over scratch Holm-adjusted as one family)",
    "still-improving k/n": "in k of n seeds the best validation pass was the run's last (it ended by its step cap "
    "or schedule, not by patience): a longer run may score higher",
    "grid-edge k/n": "in k of n seeds the tuned value chosen sits at the edge of the values tried after the grid "
    "widened as far as the suite allows (tune_extend): the best value may lie further out",
    NOT_HELD_OUT: "the forgetting probe reads this task's own data, so its drop is left out",
}
DEGENERATE_ROWS = (
    "[degenerate: k of n]: in k of the row's n seeds every test prediction was the same class (or a constant "
    "score): training collapsed, and those numbers measure a constant predictor, not the method."
)


def legend(names: Sequence[str] = tuple(FLAGS)) -> str:
    """``name = meaning; ...`` for the given flags (by default all of them), in ``FLAGS``' order."""
    return "; ".join(f"{name} = {meaning}" for name, meaning in FLAGS.items() if name in names)


def still_improving(record: Record) -> bool:
    """The run ended by its length (step cap or fixed schedule), not by patience, and its best validation pass was
    its last: it was still improving when stopped, so a longer run may score higher. A tuned cell's own verdict
    (``tuning.still_improving``: after any lengthening, best pass last and a gain of more than half the metric's
    margin over the run's last quarter; ``tuned_still_improving``) replaces this reading of its selection."""
    if record.tuning:
        return tuned_still_improving(record.tuning)
    sel = record.selection
    if sel is None or sel.best_step is None or sel.stopped_by not in ("cap", "schedule end") or len(sel.history) < 2:
        return False
    last = sel.stopped_at if sel.stopped_at is not None else sel.history[-1].get("step")
    return sel.best_step == last


def tuned_still_improving(tuning: dict) -> bool:
    """The tuner's verdict, unless a run twice as long was tried and validation preferred the shorter one: then
    the longer schedule has been tested, and a longer run would not score higher."""
    tried = any(
        c.get("added") == "longer" and c.get("fate") == "longer run not better" for c in tuning.get("candidates", [])
    )
    return bool(tuning.get("still_improving")) and not tried


def stopped_by_cap(record: Record) -> bool:
    """The run ended at its step cap (``selection.stopped_by == "cap"``), not by patience or convergence: the cap,
    not the method, set its length. Shown beside the verdict whether or not the best pass was the last."""
    return record.selection is not None and record.selection.stopped_by == "cap"


def at_grid_edge(record: Record) -> bool:
    """A tuned cell whose chosen value sits at an edge of the values tried, the widening's limit reached."""
    return any(v != "inside" for v in ((record.tuning or {}).get("edge") or {}).values())


def cell_flags(
    store: Store,
    cell: MethodCell,
    spec: TaskSpec,
    base: bl.Baselines | None,
    gain: Gain | None,
) -> list[str]:
    """The flags of one method at one budget: did-not-learn against ``base``, degenerate, few-seeds, still-improving,
    and negative-transfer from its (family-adjusted) ``gain`` over scratch (None: no scratch, or it is scratch)."""
    flags = []
    if base is not None:
        noise = (
            bl.noise_vs_majority(store, cell.records[0], spec) if cell.primary.n == 1 and cell.has_predictions else None
        )
        if bl.did_not_learn(spec, base.reference, cell.primary, noise):
            flags.append("did-not-learn")
    if "degenerate" in cell.flags:
        flags.append("degenerate")
    if not enough_seeds(cell.method, cell.primary.n):
        flags.append("few-seeds")
    improving = sum(still_improving(r) for r in cell.records)
    if improving:
        flags.append(f"still-improving {improving}/{len(cell.records)}")
    edge = sum(at_grid_edge(r) for r in cell.records)
    if edge:
        flags.append(f"grid-edge {edge}/{len(cell.records)}")
    if gain is not None and gain.negative_transfer:
        flags.append("negative-transfer")
    return flags
