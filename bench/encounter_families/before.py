"""The heuristic as it was at a git commit, for the figures "before": that commit's whole
``shared/`` tree (``git archive``), run in a child process, so that none of today's modules
stands in for the commit's."""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from shared.models import Discovery, PageText
from shared.ports import EncounterProvider

ROOT = Path(__file__).resolve().parents[2]
BEFORE = "78b52c4"  # main when issue 22 began

_BEFORE_CHILD = """
import json, sys
from shared.encounters import HeuristicEncounters
from shared.models import PageText
provider = HeuristicEncounters(**json.loads(sys.argv[1]))
for line in sys.stdin:
    pages = [PageText(**p) for p in json.loads(line)]
    print(provider.discover(pages).model_dump_json(), flush=True)
"""


class BeforeHeuristic:
    """The heuristic as it was at a git commit: that commit's whole tree (``git archive``),
    run in a child process that reads pages and answers discoveries, one packet a line, so
    that none of today's modules stands in for the commit's."""

    def __init__(self, ref: str, tree: Path, options: dict) -> None:
        self.ref = ref
        self.child = subprocess.Popen([sys.executable, "-c", _BEFORE_CHILD, json.dumps(options)], cwd=tree,
                                      env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "PYTHONSAFEPATH": "1"},
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        atexit.register(self.child.kill)

    def discover(self, pages: Sequence[PageText]) -> Discovery:
        core = [{"page_number": p.page_number, "text": p.text, "engine": p.engine, "confidence": p.confidence}
                for p in pages]
        self.child.stdin.write(json.dumps(core) + "\n")
        self.child.stdin.flush()
        answer = self.child.stdout.readline()
        if not answer:
            raise RuntimeError(f"the heuristic at {self.ref} stopped")
        return Discovery.model_validate_json(answer)


def before_provider(ref: str | None, date_order: str) -> tuple[str, Callable[[], EncounterProvider]] | None:
    """The heuristic as it was at a git commit (the figures "before"), or None."""
    if not ref:
        return None
    tree = Path(tempfile.mkdtemp(prefix=f"heuristic-{ref[:7]}-"))
    atexit.register(shutil.rmtree, tree, True)
    try:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "shared"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
        has_order = b"date_order" in subprocess.run(
            ["git", "-C", str(ROOT), "grep", "-c", "date_order", ref, "--", "shared/encounters"],
            capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    options = {"date_order": date_order} if has_order else {}
    return f"before@{ref[:7]}", lambda: BeforeHeuristic(ref, tree, options)
