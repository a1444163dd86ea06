"""`docpipe lambda process` in the production configuration, as a user runs it before a deploy:
the real template.yaml with EncounterProvider=openai and StorageBackend=supabase, the
database URL read from SSM and pointing at PgBouncer in transaction mode, the real Supabase
Storage server, Textract answering with a real recorded response, an OpenAI-compatible
server; every function in its own execution environments with exactly the environment the
template resolves for it."""

from __future__ import annotations

import json
import re
import uuid

import psycopg
import pytest

from tests.e2e.test_cli import GOOD, REPO, docpipe, lines
from shared.adapters.supabase_storage import SupabaseStorage
from shared.cli import DEMO_PATIENT
from tests.fhir_tools import SCHEMA, model_errors, schema_errors
from tests.servers import TEXTRACT_FIXTURES, RecordedTextract, SchemaAnsweringOpenAi

pytestmark = pytest.mark.slow

FUNCTIONS = ("PreprocessFunction", "OcrFunction", "DiscoverFunction")


@pytest.fixture
def textract():
    response = TEXTRACT_FIXTURES / "single-page-1.png.textract.json"
    if not response.is_file():
        pytest.skip("../shared/fixtures/textract is absent")
    with RecordedTextract(response) as server:
        yield server


def test_production_configuration_completes_every_sample(
    samples_dir, tmp_path, local_stack, supabase_storage, textract
):
    # Given the template's production engines, each at a local stand-in
    bucket = f"docpipe-{uuid.uuid4().hex[:8]}"
    with SchemaAnsweringOpenAi(usage=(1500, 120)) as openai_server:
        # When a user runs the template on the samples
        result = docpipe(
            "lambda", "process", "--json",
            "--template", REPO / "template.yaml",
            "--data-dir", tmp_path / "lambda",
            "--database-url", local_stack.database_url,
            "--parameter-overrides", "EncounterProvider=openai", "StorageBackend=supabase",
            f"SupabaseUrl={supabase_storage.env['SUPABASE_URL']}", f"StorageBucketName={bucket}",
            "PreprocessMaxConcurrency=2", "OcrMaxConcurrency=2", "DiscoverMaxConcurrency=2", "FhirOutput=storage",
            "--supabase-service-role-key", supabase_storage.env["SUPABASE_SERVICE_ROLE_KEY"],
            "--openai-base-url", openai_server.base_url,
            "--textract-endpoint-url", textract.url,
            "--timeout", "240",
            *[samples_dir / n for n in GOOD],
            timeout=420,
        )
        model_calls = len(openai_server.requests)

    # Then every file completed, through every function, with what the production engines said
    logs = tmp_path / "lambda" / "logs"
    assert result.returncode == 0, result.stderr[-4000:] + "".join(
        (logs / f"{f}.log").read_text()[-1500:] for f in FUNCTIONS if (logs / f"{f}.log").exists()
    )
    reports = {r["file"].rsplit("/", 1)[-1]: r for r in lines(result)}
    assert list(reports) == GOOD
    assert all(r["status"] == "completed" for r in reports.values()), reports
    assert model_calls >= len(GOOD)
    ocr_pages = [p for r in reports.values() for p in r["pages"] if p["text_source"] == "ocr"]
    assert len(ocr_pages) == 6 and all(p["engine"] == "textract" for p in ocr_pages)
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        ids = [r["shell_file_id"] for r in reports.values()]
        manifests = conn.execute(
            "select provider, input_tokens, output_tokens from shell_file_manifests where shell_file_id = any(%s::uuid[])",
            (ids,),
        ).fetchall()
        texts = conn.execute(
            "select text from ocr_text_extractions where shell_file_id = any(%s::uuid[]) and engine = 'textract'", (ids,)
        ).fetchall()
        stored = conn.execute(
            "select count(*) from storage.objects where bucket_id = %s and name like 'processed/%%.jpg'", (bucket,)
        ).fetchone()[0]
        bundles = [name for (name,) in conn.execute(
            "select name from storage.objects where bucket_id = %s and name like 'processed/%%/bundle.json'", (bucket,)
        ).fetchall()]
    assert len(manifests) == len(GOOD)
    assert all(m[0] == "openai" and m[1] >= 1500 and m[2] >= 120 for m in manifests), manifests
    assert all(t[0].splitlines()[0] == textract.lines()[0] for t in texts)
    assert stored == sum(r["page_count"] for r in reports.values())  # every page JPEG in Supabase Storage
    # FhirOutput=storage: the discover function stored each file's Bundle beside its pages, valid R4
    assert sorted(bundles) == sorted(f"processed/{DEMO_PATIENT}/{i}/bundle.json" for i in ids)
    storage = SupabaseStorage(supabase_storage.env["SUPABASE_URL"], supabase_storage.env["SUPABASE_SERVICE_ROLE_KEY"],
                              bucket, 30)
    for key in bundles:
        storage.download(key, tmp_path / "bundle.json")
        bundle = json.loads((tmp_path / "bundle.json").read_text())
        assert model_errors(bundle) == [] and (not SCHEMA.is_file() or schema_errors(bundle) == [])
        urls = [e["resource"]["content"][0]["attachment"]["url"] for e in bundle["entry"]
                if e["resource"]["resourceType"] == "DocumentReference"]
        assert all(u.startswith(f"{supabase_storage.env['SUPABASE_URL']}/storage/v1/object/authenticated/{bucket}/")
                   for u in urls)
    # Each function ran in Lambda-style environments and said so, as Lambda does
    for function in FUNCTIONS:
        reports_of = re.findall(rf"^{function} REPORT RequestId: \S+\tDuration: [\d.]+ ms\tBilled Duration: \d+ ms\t"
                                rf"Memory Size: \d+ MB\tMax Memory Used: \d+ MB", result.stderr, re.M)
        assert reports_of, function
    assert "Init Duration" in result.stderr and "GB-s" in result.stderr
    # And the progress said where each file was, in plain lines (stderr is a pipe here), by its
    # place and id, never its name, then the summary
    progress = re.findall(r"^\[(\d)/5\] ([0-9a-f]{8}) (.+)$", result.stderr, re.M)
    assert {sfid for _, sfid, _ in progress} == {r["shell_file_id"][:8] for r in reports.values()}
    assert {what for _, _, what in progress} >= {f"completed: {_pages(r['page_count'])}" for r in reports.values()}
    assert not any(name.rsplit(".", 1)[0] in what for name in GOOD for _, _, what in progress)
    assert re.search(r"^finished 5 files in [\d.]+ s: 5 completed, 0 failed; \d+ pages$", result.stderr, re.M)


def _pages(n: int) -> str:
    return f"{n} page" + ("" if n == 1 else "s")


def test_production_configuration_with_textract_layout_and_tables(samples_dir, tmp_path, local_stack, textract):
    # Given the template with TextractFeatures=LAYOUT,TABLES, Textract answering AnalyzeDocument
    # with a real recorded answer (form.png: layout blocks and two tables)
    analyzed = TEXTRACT_FIXTURES / "form.png.textract.json"
    with RecordedTextract(TEXTRACT_FIXTURES / "single-page-1.png.textract.json", analyzed) as server, \
            SchemaAnsweringOpenAi() as openai_server:
        # When a user runs it on the scanned samples
        result = docpipe(
            "lambda", "process", "--json",
            "--template", REPO / "template.yaml",
            "--data-dir", tmp_path / "lambda",
            "--database-url", local_stack.database_url,
            "--parameter-overrides", "EncounterProvider=openai", "TextractFeatures=LAYOUT,TABLES",
            "PreprocessMaxConcurrency=2", "OcrMaxConcurrency=2", "DiscoverMaxConcurrency=2",
            "--openai-base-url", openai_server.base_url,
            "--textract-endpoint-url", server.url,
            "--timeout", "240",
            samples_dir / "scanned_discharge.pdf", samples_dir / "lab_photo.jpg",
            timeout=420,
        )
        asked = [r["body"].get("FeatureTypes") for r in server.requests]
        prompts = [m["content"] for r in openai_server.requests for m in r["body"]["messages"] if m["role"] == "user"]

    # Then both completed, every page through AnalyzeDocument with exactly those features
    logs = tmp_path / "lambda" / "logs"
    assert result.returncode == 0, result.stderr[-4000:] + "".join(
        (logs / f"{f}.log").read_text()[-1500:] for f in FUNCTIONS if (logs / f"{f}.log").exists()
    )
    reports = list(lines(result))
    assert [r["status"] for r in reports] == ["completed", "completed"]
    assert asked == [["LAYOUT", "TABLES"]] * 3  # 2 + 1 OCR'd pages, none through DetectDocumentText
    # ... the layout and the tables stored with each page's text, the price in the manifest
    ids = [r["shell_file_id"] for r in reports]
    with psycopg.connect(local_stack.database_url, autocommit=True) as conn:
        pages = conn.execute(
            "select layout, tables, cost_usd from ocr_text_extractions where shell_file_id = any(%s::uuid[])", (ids,)
        ).fetchall()
        manifests = conn.execute(
            "select manifest from shell_file_manifests where shell_file_id = any(%s::uuid[])", (ids,)
        ).fetchall()
    assert len(pages) == 3
    assert all(any(b["kind"] == "title" for b in layout) and len(tables) == 2 for layout, tables, _ in pages)
    assert all(float(cost) == pytest.approx(0.019) for _, _, cost in pages)  # LAYOUT 0.004 + TABLES 0.015
    assert sorted(m[0]["ocr_cost_usd"] for m in manifests) == pytest.approx([0.019, 0.038])
    # ... and the model saw each page's layout before its text
    assert any(re.search(r"<layout>\n(?:\w+: .*\n)*title: ", prompt) for prompt in prompts), prompts[0][:1500]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--parameter-overrides", "NoSuchParameter=1"], "not in the template"),
        (["--parameter-overrides", "EncounterProvider=openai"], "needs an OpenAI key"),
        (["--parameter-overrides", "StorageBackend=supabase"], "needs SupabaseUrl"),
        (["--parameter-overrides", "OcrMaxConcurrency=1"], "below its MinValue"),
    ],
)
def test_a_configuration_that_cannot_run_is_a_usage_error(args, says, samples_dir, tmp_path):
    result = docpipe(
        "lambda", "process", "--data-dir", tmp_path / "lambda", *args, samples_dir / GOOD[0],
        env={"OPENAI_API_KEY": "", "SUPABASE_SERVICE_ROLE_KEY": ""}, timeout=120,
    )
    assert result.returncode == 2 and says in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_lambda_up_serves_until_sigterm_and_prints_the_summary(samples_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = Path(sys.executable).with_name("docpipe")
    err = open(tmp_path / "stderr.txt", "w")  # function logs stream here: never a full pipe
    proc = subprocess.Popen(
        [str(script), "lambda", "up", "--data-dir", str(tmp_path / "lambda"), "--parameter-overrides",
         "PreprocessMaxConcurrency=2", "OcrMaxConcurrency=2", "DiscoverMaxConcurrency=2"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
    )
    try:
        env = {}
        for line in proc.stdout:
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                env[key] = value.strip("'")
            if line.startswith("# Lambda functions up"):
                break
        assert {"DATABASE_URL", "AWS_ENDPOINT_URL", "QUEUE_PREFIX", "STORAGE_BUCKET"} <= set(env), env
        # A user submits with those exports, as an upload API would
        submitted = docpipe("submit", samples_dir / GOOD[0], "--patient-id", str(uuid.uuid4()),
                            env={**env, "POWERTOOLS_LOG_LEVEL": "ERROR"})
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        sfid = submitted.stdout.strip()
        deadline = time.monotonic() + 120
        status = None
        with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
            while time.monotonic() < deadline and status != "completed":
                status = conn.execute("select status from shell_files where id = %s", (sfid,)).fetchone()[0]
                time.sleep(0.5)
        assert status == "completed"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        err.close()
    stderr = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert re.search(r"^PreprocessFunction REPORT RequestId: ", stderr, re.M)
    assert "Lambda compute:" in stderr and "PreprocessFunction" in stderr.split("Lambda compute:")[0]
    assert os.path.isdir(tmp_path / "lambda")


def test_production_configuration_reads_a_long_document_s_windows_side_by_side(
    tmp_path, local_stack, supabase_storage, textract
):
    # Given a 142-page record (the encounter bench's clinical development packets one after
    # another) and the oracle model answering every window 8 s late, as a model does: it tests
    # the windows and their reconciliation, not any model
    from bench import _oracle

    if not _oracle.clinical_available():
        pytest.skip("../shared/corpus/text is absent")
    truth = _oracle.long_document(142, with_pdf=True)
    pdf = tmp_path / "record.pdf"
    pdf.write_bytes(truth.pdf)
    latency = 8.0
    with _oracle.OracleModel([truth], latency_s=latency) as oracle:
        # When a user runs the template in its production configuration on it
        result = docpipe(
            "lambda", "process", "--json",
            "--template", REPO / "template.yaml",
            "--data-dir", tmp_path / "lambda",
            "--database-url", local_stack.database_url,
            "--parameter-overrides", "EncounterProvider=openai", "StorageBackend=supabase",
            f"SupabaseUrl={supabase_storage.env['SUPABASE_URL']}", f"StorageBucketName=docpipe-{uuid.uuid4().hex[:8]}",
            "PreprocessMaxConcurrency=2", "OcrMaxConcurrency=2", "DiscoverMaxConcurrency=2",
            "--supabase-service-role-key", supabase_storage.env["SUPABASE_SERVICE_ROLE_KEY"],
            "--openai-base-url", oracle.base_url,
            "--textract-endpoint-url", textract.url,
            "--timeout", "400",
            pdf,
            timeout=600,
        )
        calls = oracle.calls_of(truth.name)
        at_once = oracle.max_in_flight.get(truth.name)
    logs = tmp_path / "lambda" / "logs"
    assert result.returncode == 0, result.stderr[-4000:] + "".join(
        (logs / f"{f}.log").read_text()[-1500:] for f in FUNCTIONS if (logs / f"{f}.log").exists()
    )
    (report,) = lines(result)
    assert report["status"] == "completed" and report["page_count"] == 142

    # Then every window's call is in the function's log (8 windows of 20 pages, all at once) ...
    windows = [(a, min(a + 19, 142)) for a in range(1, 143, 20)]
    answered = re.findall(r'"message":"model answered".*?"first_page":(\d+),"last_page":(\d+)',
                          (logs / "DiscoverFunction.log").read_text())
    assert sorted((int(a), int(b)) for a, b in answered) == windows
    assert sorted((c.first_page, c.last_page) for c in calls) == windows and at_once == len(windows)
    # ... the invocation lasted about one call, cold start and all (one after another, eight) ...
    durations = [float(d) for d in re.findall(r"^DiscoverFunction REPORT RequestId: \S+\tDuration: ([\d.]+) ms",
                                              result.stderr, re.M)]
    assert durations and latency * 1000 <= max(durations) < 2 * latency * 1000, durations
    # ... and the file holds the oracle's encounters: the record's truth, exactly
    from shared.adapters.postgres import PostgresDb
    from shared.models import Discovery

    manifest = PostgresDb(local_stack.database_url).manifest(uuid.UUID(report["shell_file_id"]))
    discovery = Discovery(encounters=manifest.encounters, provider="openai",
                          identity_conflict=manifest.identity_conflict)
    assert _oracle.compare(truth, discovery) == []
    assert sum(n >= 2 for n in _oracle.windows_spanned(truth, 20).values()) >= 3  # encounters across window edges
