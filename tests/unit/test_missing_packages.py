"""Installed without an optional part (plain ``pip install docpipe`` has no ``local`` extra), a
command that needs it says what to install in one line and exits 2: no traceback.

The CLI runs in a subprocess where ``sys.modules[name] = None`` makes ``import name`` fail
exactly as it does when the package is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BLOCKED_CLI = (
    "import sys\n"
    "for name in sys.argv.pop(1).split(','):\n"
    "    sys.modules[name] = None\n"
    "from shared.cli import entrypoint\n"
    "entrypoint()\n"
)


def run_without(packages: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED_CLI, packages, *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )


def assert_one_line_naming(result: subprocess.CompletedProcess, wanted: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert wanted in lines[0], lines[0]


@pytest.mark.parametrize(
    ("blocked", "args"),
    [
        ("pgserver", ["process", "{doc}"]),
        ("moto", ["process", "{doc}"]),
        ("pgserver", ["local", "up"]),
        ("samcli", ["lambda", "up"]),
        ("pgserver", ["view", "--data-dir", "{data}"]),
    ],
    ids=["process-pgserver", "process-moto", "local-up-pgserver", "lambda-samcli", "view-pgserver"],
)
def test_a_command_without_the_local_extra_names_it(tmp_path, blocked, args):
    # Given a document, and a data directory as `docpipe process` leaves one (pg/ in it)
    doc = tmp_path / "note.pdf"
    doc.write_bytes(b"%PDF-1.4\n")
    data = tmp_path / "data"
    (data / "pg").mkdir(parents=True)
    args = [a.format(doc=doc, data=data) for a in args]
    if args[0] in ("process", "local", "lambda"):
        args += ["--data-dir", str(data)]
    if args[0] == "lambda":
        args += ["--template", str(REPO / "template.yaml")]

    # When the command runs without the package
    result = run_without(blocked, *args, cwd=tmp_path)

    # Then one line names the extra that installs it, and nothing was started
    assert_one_line_naming(result, "docpipe[local]")
    assert blocked in result.stderr
    assert not any((data / "pg").iterdir())


def test_samples_without_the_generator_says_so(tmp_path):
    # An installed package (the container image) has no demo document generator.
    result = run_without("docpipe_samples", "samples", str(tmp_path / "out"), cwd=tmp_path)

    assert_one_line_naming(result, "docpipe samples")
    assert not (tmp_path / "out").exists()


def test_a_provider_without_its_package_is_a_typed_error(monkeypatch):
    from shared import bootstrap
    from shared.errors import MissingPackageError, RetryableError
    from shared.settings import Settings

    # Given the openai package is not importable (nor, then, the provider's modules)
    monkeypatch.setitem(sys.modules, "openai", None)
    for name in [m for m in sys.modules if m.startswith("shared.encounters.openai")]:
        monkeypatch.delitem(sys.modules, name)
    settings = Settings(encounter_provider="openai", openai_api_key="sk-test")

    # When the stage builds its provider, then the error names the package, and is retryable
    # (a deployment fixes it, not the document)
    with pytest.raises(MissingPackageError, match="openai") as caught:
        bootstrap.Deps(settings).encounters
    assert isinstance(caught.value, RetryableError)


def test_samples_from_a_checkout_writes_them(tmp_path):
    # The installed console script (an editable install of the checkout), not the package on sys.path.
    docpipe = Path(sys.executable).with_name("docpipe")
    result = subprocess.run([docpipe, "samples", tmp_path / "out"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "two_visits.pdf").is_file()
