"""The encounter bench's "before" figures come from the named commit's own code."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from bench.encounters_eval import before_provider
from shared.models import PageText
from tests.unit.test_heuristic import _VISIT_WITH_HISTORY

ROOT = Path(__file__).resolve().parents[2]
RED = "e4de688"  # main with the red tests of the page-head rule, before its fix


def _known(ref: str) -> bool:
    return subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{ref}^{{commit}}"],
                          capture_output=True).returncode == 0


@pytest.mark.skipif(not _known(RED), reason="the checkout has no history back to e4de688")
def test_before_runs_the_commits_whole_encounters_package() -> None:
    # Given a visit note listing an earlier stay, which the heuristic at RED dated by that stay
    pages = [PageText(page_number=1, text=_VISIT_WITH_HISTORY, engine="native")]
    name, make = before_provider(RED, "auto")

    # When the bench runs the heuristic "before" (its changes were in dates.py and grouping.py,
    # not heuristic.py)
    (old,) = make().discover(pages).encounters

    # Then it is that commit's code that answers
    assert name == f"before@{RED}"
    assert old.date_start == dt.date(2014, 10, 28)
