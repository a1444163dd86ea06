"""The container deployment as files: Dockerfile, its pinned lock, render.yaml.

`make container-check` (in CI) installs the lock as the Dockerfile does; these check what the
files promise without installing anything."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "deploy" / "container" / "requirements.lock"


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (pinned version, hashes), from the lock's continuation-joined entries."""
    entries = re.sub(r"\\\n\s*", " ", LOCK.read_text()).splitlines()
    out = {}
    for entry in entries:
        entry = entry.split("#", 1)[0].strip()
        if not entry:
            continue
        spec, *options = entry.split(" --")
        requirement = Requirement(spec.strip())
        pins = [s for s in requirement.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(requirement.specifier) == 1, f"not pinned exactly: {entry[:80]}"
        hashes = [o.split("=", 1)[1] for o in options if o.startswith("hash=")]
        assert hashes and all(h.startswith("sha256:") for h in hashes), f"no hash: {requirement.name}"
        out[canonicalize_name(requirement.name)] = (pins[0].version, hashes)
    return out


def test_every_dependency_is_pinned_with_hashes_within_pyprojects_ranges() -> None:
    pins = locked()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in map(Requirement, project["dependencies"]):
        name = canonicalize_name(dependency.name)
        assert name in pins, f"{name} is not in the lock"
        assert dependency.specifier.contains(pins[name][0]), f"{name} {pins[name][0]} outside {dependency.specifier}"
        for extra in dependency.extras:  # psycopg[binary], aws-lambda-powertools[tracer]
            assert {"binary": "psycopg-binary", "tracer": "aws-xray-sdk"}[extra] in pins
    # The measured choice (pyproject.toml): PyMuPDF 1.x, which pulls in neither onnxruntime nor numpy.
    assert pins["pymupdf"][0].startswith("1.")
    assert "onnxruntime" not in pins and "numpy" not in pins
    # Nothing of the local stack, tests or benches in the image.
    assert not {"moto", "pgserver", "pytest", "matplotlib"} & set(pins)


def test_dockerfile_installs_the_lock_then_docpipe_without_resolving_again() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    steps = [line for line in lines if line and not line.startswith("#")]
    assert steps[0].startswith("FROM python:3.12-slim")
    assert any("tesseract-ocr-eng" in s and "tesseract-ocr-osd" in s for s in steps)
    lock_install = next(i for i, s in enumerate(steps) if "--require-hashes" in s)
    assert "-r requirements.lock" in steps[lock_install] and "--no-deps" in steps[lock_install]
    project_install = next(i for i, s in enumerate(steps) if s.startswith("RUN pip install --no-deps ."))
    assert lock_install < project_install
    assert [s for s in steps if s.startswith("RUN pip install")] == [steps[lock_install], steps[project_install]]
    user = next(i for i, s in enumerate(steps) if s.startswith("USER "))
    assert steps[user] != "USER root" and user > project_install
    assert steps[-1] == 'CMD ["docpipe", "worker"]'


def test_render_blueprint_runs_the_dockerfile_with_no_secret_values() -> None:
    blueprint = yaml.safe_load((ROOT / "render.yaml").read_text())
    (service,) = blueprint["services"]
    assert (service["type"], service["runtime"], service["dockerfilePath"]) == ("worker", "docker", "./Dockerfile")
    for var in service["envVars"]:
        if re.search(r"SECRET|PASSWORD|KEY_ID|DATABASE_URL|API_KEY|SERVICE_ROLE", var["key"]):
            assert var.get("sync") is False and "value" not in var, var["key"]
