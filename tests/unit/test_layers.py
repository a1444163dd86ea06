"""The import graph of handlers/ and shared/, read from the source (ast), checked for two things:

(a) no import cycle, counting every ``import``/``from ... import`` statement wherever it stands:
    at module level (runs on import) and inside a function (runs on first call: a lazy import
    is still an arrow, only a later one);
(b) the layer order below: a module imports its own layer or a lower one, never a higher one.

An arrow is an import statement naming a module of this repository (``from shared import
errors`` is an arrow to ``shared.errors``; ``from shared.models import Stage`` one to
``shared.models``). A dotted name in a string (``"handlers.ocr"`` in the worker's table, read
by ``importlib.import_module``) is not an arrow: that is how the runtimes find the handlers
by name, and the point of finding them so is that nothing below ``handlers`` imports them.
The implicit import of a parent package (``shared.pages`` before ``shared.pages.sniff``) is
not counted either; the package ``__init__`` modules are checked as modules of their own.

Run it as a script to print the graph's findings for any checkout::

    python -m tests.unit.test_layers [ROOT]
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("handlers", "shared")

# Highest first. A name stands for that module and everything under it (``shared`` alone, the
# package's own ``__init__``, for itself only); a module belongs to its longest matching name.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # What Lambda's Handler setting names: lambda_handler and record_handler, nothing else.
    ("handlers", ("handlers",)),
    # The hosts that run the handlers (poll loop, child runner, local stack, Lambda emulator)
    # and the command line with what only it uses (the review page, the run report, the progress
    # display).
    ("entry points", ("shared.runtime", "shared.cli", "shared.view", "shared.report", "shared.progress")),
    # The stages as plain functions over Deps, and the operator actions and uploads that,
    # like a stage, act on files through the ports.
    ("stages", ("shared.stages", "shared.ops", "shared.submit")),
    # bootstrap builds the adapters and the encounter providers (by in-function imports, so a
    # stage builds only what it uses): it sits above them, below everything that asks for Deps.
    ("composition", ("shared.bootstrap",)),
    # The work itself and what talks to the outside: documents to pages, encounter
    # discovery, encounters as FHIR, the adapters behind the ports.
    ("libraries and adapters", ("shared.pages", "shared.encounters", "shared.fhir", "shared.adapters")),
    # What everything shares: messages and rows, ports, errors, settings, keys, logging, and
    # which optional package each part needs.
    ("core", ("shared.models", "shared.ports", "shared.errors", "shared.settings", "shared.keys",
              "shared.observability", "shared.retry", "shared.extras", "shared")),
]


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    line: int
    lazy: bool  # inside a function: runs on first call, not on import

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}{', in a function' if self.lazy else ''})"


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(tree: ast.AST):
    """(node, inside a function) for every import statement."""

    def walk(node, lazy):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, lazy
            yield from walk(child, lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    yield from walk(tree, False)


def arrows(root: Path = ROOT) -> list[Arrow]:
    known = modules(root)
    found = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node, lazy in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the module's package upwards
                    package = name.split(".") if is_package else name.split(".")[:-1]
                    package = package[: len(package) - (node.level - 1)]
                    base = ".".join([*package, *([base] if base else [])])
                # ``from shared import errors`` names a module; ``from shared.models import Stage`` does not.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            for target in dict.fromkeys(targets):
                # ``import shared.adapters.aws`` and ``from shared.x import y`` name a module we own.
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.append(Arrow(name, target, node.lineno, lazy))
    return found


def layer_of(module: str) -> int | None:
    best, index = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            below = prefix != "shared" and module.startswith(prefix + ".")
            if (module == prefix or below) and len(prefix) > best:
                best, index = len(prefix), i
    return index


def upward(found: list[Arrow]) -> list[Arrow]:
    """Arrows from a lower layer to a higher one."""
    return [a for a in found if layer_of(a.source) > layer_of(a.target)]


def cycles(found: list[Arrow]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for a in found:
        graph.setdefault(a.source, set()).add(a.target)
        graph.setdefault(a.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def report(root: Path = ROOT) -> str:
    found = arrows(root)
    eager = [a for a in found if not a.lazy]
    lines = [f"{len(modules(root))} modules, {len(found)} arrows ({len(eager)} at module level, "
             f"{len(found) - len(eager)} in functions)"]
    unplaced = sorted(m for m in modules(root) if layer_of(m) is None)
    if unplaced:
        lines.append("modules in no layer: " + ", ".join(unplaced))
    for label, subset in (("module-level imports only", eager), ("module-level and in-function imports", found)):
        found_cycles = cycles(subset)
        lines.append(f"cycles, {label}: {len(found_cycles)}")
        lines += [f"  {' <-> '.join(c)}" for c in found_cycles]
    up = upward([a for a in found if layer_of(a.source) is not None and layer_of(a.target) is not None])
    lines.append(f"arrows up the layers: {len(up)}")
    lines += [f"  {a}   [{LAYERS[layer_of(a.source)][0]} -> {LAYERS[layer_of(a.target)][0]}]" for a in up]
    return "\n".join(lines)


# --- the checks ------------------------------------------------------------------------


def test_every_module_has_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_the_checker_sees_both_kinds_of_import():
    # Given the parser: bootstrap builds the adapters in functions, and imports the ports at
    # module level. If either arrow went missing, the checks below would pass on nothing.
    found = {(a.source, a.target, a.lazy) for a in arrows()}
    assert ("shared.bootstrap", "shared.adapters.postgres", True) in found
    assert ("shared.bootstrap", "shared.ports", False) in found
    assert len(modules()) > 50


def test_a_cycle_and_an_upward_arrow_are_found_when_there_is_one():
    # Given a made-up graph with both faults, the same functions report both.
    made_up = [Arrow("shared.models", "shared.stages.ocr", 1, True), Arrow("shared.stages.ocr", "shared.models", 1, False)]
    assert cycles(made_up) == [["shared.models", "shared.stages.ocr"]]
    assert upward(made_up) == made_up[:1]


def test_no_import_cycle_counting_imports_in_functions_too():
    assert cycles(arrows()) == []


def test_no_module_imports_a_higher_layer():
    assert [str(a) for a in upward(arrows())] == []


def outside_imports(module: str, root: Path = ROOT) -> set[str]:
    """The top-level names of the packages outside this repository a module imports."""
    names = set()
    for node, _ in _imports(ast.parse(modules(root)[module].read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            continue
        for name in [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]:
            names.add(name.split(".")[0])
    return names - set(PACKAGES) - {"__future__"}


def test_the_stages_know_nothing_of_lambda_records():
    # Plain functions over Deps: no Powertools type (SQSRecord, the batch utilities) in them.
    stages = [m for m in modules() if m.startswith("shared.stages")]
    assert stages and {m: sorted(outside_imports(m) & {"aws_lambda_powertools"}) for m in stages} == {m: [] for m in stages}


def test_a_handler_imports_powertools_and_docpipe_only():
    # A screen: no boto3, psycopg, openai or textractor; the adapters talk to those.
    handlers = [m for m in modules() if m.startswith("handlers.")]
    assert len(handlers) == 5
    assert {m: outside_imports(m) - {"aws_lambda_powertools"} for m in handlers} == {m: set() for m in handlers}
    # and defines the entry and its record handler, nothing else
    for m in handlers:
        tree = ast.parse(modules()[m].read_text())
        defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert defined == {"lambda_handler", "record_handler"}, m


def test_nothing_under_shared_imports_handlers():
    assert [str(a) for a in arrows() if a.source.startswith("shared") and a.target.startswith("handlers")] == []


if __name__ == "__main__":
    print(report(Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT))
