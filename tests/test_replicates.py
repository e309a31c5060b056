"""Two independent replicates of a suite (issue 21): which replicate a folder of records is, and how their verdicts
per (task, budget) agree. Fast: fake decisions. Run: `.venv/bin/python -m pytest tests/test_replicates.py -q`.
"""

from __future__ import annotations

import pytest

from bench.analysis.claims import COMPATIBLE, CONFLICT, EQUIVALENT_CHOICES, NO_CHOICE, SAME, agreement
from bench.analysis.decision_map import Decision
from bench.suite import load_suite


def _d(budget, best, worse=(), equivalent=(), undecided=()):
    return Decision("t", budget, best, equivalent=equivalent, worse=worse, undecided=undecided)


def test_verdicts_agree_on_the_same_choice_or_choices_found_equivalent_and_conflict_when_one_is_found_worse():
    a = [_d(1, "lora", worse=("frozen",)), _d(2, "lora", equivalent=("full",)), _d(3, "lora", undecided=("full",)),
         _d(4, "lora", undecided=("full",)), _d(5, None)]  # fmt: skip
    b = [_d(1, "lora"), _d(2, "full"), _d(3, "full", undecided=("lora",)), _d(4, "full", worse=("lora",)),
         _d(5, "full")]  # fmt: skip
    rows = agreement(a, b)
    assert [r.outcome for r in rows] == [SAME, EQUIVALENT_CHOICES, COMPATIBLE, CONFLICT, NO_CHOICE]
    assert [r.agrees for r in rows] == [True, True, False, False, False]
    assert "this run chooses lora; undecided: full | other chooses full" in rows[3].describe()


def test_the_default_suites_replicates_share_no_seed_and_score_the_two_test_halves():
    a, b = load_suite("default", replicate="A"), load_suite("default", replicate="B")
    assert {c.seed for c in a.cells}.isdisjoint({c.seed for c in b.cells})
    assert {c.overrides["test_half"] for c in a.cells} == {1} and {c.overrides["test_half"] for c in b.cells} == {2}
    zeroshot = sorted(c.seed % 10 for c in b.cells if c.method == "zeroshot")
    assert zeroshot == [5, 6, 7, 8, 9], "B draws SST-2's other five phrasings"
    with pytest.raises(ValueError, match="no replicate 'C'"):
        load_suite("default", replicate="C")


def test_a_folder_of_records_is_read_as_the_replicate_whose_test_half_they_scored():
    from bench.catalog import resolve
    from bench.core.record import SplitSizes, new_record
    from bench.suite import current_records

    def records(replicate, half):
        out = []
        for cell in load_suite("default", replicate=replicate).cells[:6]:
            r = new_record(resolve(cell), "ok")
            r.splits = SplitSizes(train=51, val=13, test=312, test_half=half)
            out.append(r)
        return out

    for replicate, half in (("A", 1), ("B", 2)):
        mine = records(replicate, half)
        kept, _ = current_records("default", mine)
        assert {r.key for r in kept} == {r.key for r in mine}, f"replicate {replicate}'s records are its cells"
