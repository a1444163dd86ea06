"""`docpipe view` in a real browser: what `docpipe process` stored, as a user reviews it.

One `docpipe process` run (two generated samples, two documents carrying a canary patient
name, one file that fails) feeds one `docpipe view` process; headless chromium reads the
pages. The truth each check compares with comes from the documents themselves (the PDF's own
word positions, the samples' known visits, Tesseract re-reading a cropped box), not from
the page under test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pymupdf
import pytest

from tests.conftest import needs_tesseract
from tests.e2e import browser
from tests.e2e.test_canary import DATE, NAME, _documents

REPO = Path(__file__).resolve().parents[2]
SAMPLES = ["two_visits.pdf", "scanned_discharge.pdf", "notes.txt"]


def _docpipe_cmd() -> list[str]:
    script = Path(sys.executable).with_name("docpipe")
    return [str(script)] if script.exists() else [sys.executable, "-m", "shared.cli"]


@pytest.fixture(scope="module")
def driver():
    chrome, chromedriver = browser.binaries()
    if chrome is None or chromedriver is None:
        if os.environ.get("DOCPIPE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromium-driver are required here (make browser-deps)")
        pytest.skip("no chromium / chromedriver installed (make browser-deps)")
    pytest.importorskip("selenium")
    d = browser.chromium()
    d.set_page_load_timeout(60)
    yield d
    d.quit()


@pytest.fixture(scope="module")
def viewed(samples_dir, tmp_path_factory):
    """`docpipe process` on the documents, then `docpipe view` on its data dir."""
    pytest.importorskip("pgserver")
    tmp = tmp_path_factory.mktemp("view")
    canary_pdf, canary_scan = _documents(tmp)[:2]
    paths = [samples_dir / n for n in SAMPLES] + [canary_pdf, canary_scan]
    data = tmp / "data"
    env = {**os.environ, "POWERTOOLS_LOG_LEVEL": "DEBUG"}
    processed = subprocess.run([*_docpipe_cmd(), "process", "--data-dir", str(data), *map(str, paths)],
                               cwd=REPO, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert processed.returncode == 1, processed.stderr[-3000:]  # notes.txt fails, the rest complete
    # The links `docpipe process` prints are how a user finds each file's page.
    assert f"docpipe view --data-dir {data}" in processed.stdout
    printed = re.findall(r"^  http://127\.0\.0\.1:8765/files/([0-9a-f-]{36})  (.+)$", processed.stdout, re.MULTILINE)
    links = {Path(p).name: i for i, p in printed}
    assert sorted(links) == sorted(p.name for p in paths), processed.stdout

    log = tmp / "view.log"
    port = _free_port()
    with log.open("w") as sink:
        server = subprocess.Popen([*_docpipe_cmd(), "view", "--data-dir", str(data), "--port", str(port)],
                                  cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(base + "/", timeout=5).read()
            break
        except OSError:
            assert server.poll() is None, log.read_text()[-2000:]
            time.sleep(0.3)
    else:
        pytest.fail("docpipe view did not answer: " + log.read_text()[-2000:])
    yield {"base": base, "ids": links, "log": log, "samples": samples_dir, "canary": (canary_pdf, canary_scan)}
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=30)


def _free_port() -> int:
    from shared.runtime.localstack import free_port

    return free_port()


def _get(url: str, host: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _open(driver, viewed, name: str) -> None:
    driver.get(f"{viewed['base']}/files/{viewed['ids'][name]}")


def _rel_rect(driver, element, image) -> tuple[float, float, float, float]:
    """An element's rectangle as the browser lays it out, as fractions of the page image."""
    return tuple(driver.execute_script(
        "const b = arguments[0].getBoundingClientRect(), i = arguments[1].getBoundingClientRect();"
        "return [(b.left - i.left) / i.width, (b.top - i.top) / i.height,"
        "        (b.right - i.left) / i.width, (b.bottom - i.top) / i.height];",
        element, image,
    ))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@needs_tesseract()
def test_the_files_table_lists_what_process_made(driver, viewed):
    from selenium.webdriver.common.by import By

    driver.get(viewed["base"] + "/")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.files tbody tr")
    assert {r.get_attribute("data-id") for r in rows} == set(viewed["ids"].values())
    by_id = {r.get_attribute("data-id"): r for r in rows}
    two = by_id[viewed["ids"]["two_visits.pdf"]].find_elements(By.TAG_NAME, "td")
    assert [two[2].text, two[4].text, two[5].text, two[6].text] == ["completed", "3", "3 / 0", "2"]
    scanned = by_id[viewed["ids"]["scanned_discharge.pdf"]].find_elements(By.TAG_NAME, "td")
    assert scanned[5].text == "0 / 2" and scanned[9].text != "–"  # OCR pages, and the OCR stage's time
    failed = by_id[viewed["ids"]["notes.txt"]]
    assert "unsupported_type" in failed.text and failed.get_attribute("data-status") == "failed"
    submitted = [r.find_element(By.CSS_SELECTOR, "td.when").text for r in rows]
    assert submitted == sorted(submitted, reverse=True)  # newest first

    # The status filter: only the failed file is left.
    driver.find_element(By.CSS_SELECTOR, "a.tab[data-status=failed]").click()
    rows = driver.find_elements(By.CSS_SELECTOR, "table.files tbody tr")
    assert [r.get_attribute("data-id") for r in rows] == [viewed["ids"]["notes.txt"]]
    assert driver.current_url.endswith("/?status=failed")


@needs_tesseract()
def test_a_file_page_shows_every_page_with_boxes_on_the_words(driver, viewed):
    from selenium.webdriver.common.by import By

    _open(driver, viewed, "two_visits.pdf")
    sections = driver.find_elements(By.CSS_SELECTOR, "section.page")
    assert [s.get_attribute("data-page") for s in sections] == ["1", "2", "3"]
    for section in sections:
        image = section.find_element(By.TAG_NAME, "img")
        driver.execute_script("arguments[0].scrollIntoView()", image)
        assert driver.execute_script("return arguments[0].decode().then(() => arguments[0].naturalWidth)", image) > 500
        assert section.find_element(By.CSS_SELECTOR, "pre.text").text.strip()

    # A known word's box, where the browser draws it, against where the PDF itself prints it.
    with pymupdf.open(viewed["samples"] / "two_visits.pdf") as doc:
        page = doc[2]
        truth = page.search_for("fasting")[0]
        truth = (truth.x0 / page.rect.width, truth.y0 / page.rect.height,
                 truth.x1 / page.rect.width, truth.y1 / page.rect.height)
    third = sections[2]
    box = third.find_element(By.CSS_SELECTOR, ".box[data-word=fasting]")
    assert _iou(_rel_rect(driver, box, third.find_element(By.TAG_NAME, "img")), truth) > 0.85

    # The toggle hides the boxes and brings them back.
    toggle = driver.find_element(By.ID, "show-boxes")
    toggle.click()
    assert not box.is_displayed()
    toggle.click()
    assert box.is_displayed()


@needs_tesseract()
def test_an_ocr_box_crops_its_word_out_of_the_page_image(driver, viewed, tmp_path):
    from PIL import Image
    from selenium.webdriver.common.by import By

    _open(driver, viewed, "scanned_discharge.pdf")
    section = driver.find_element(By.CSS_SELECTOR, "section.page[data-page='1']")
    image = section.find_element(By.TAG_NAME, "img")
    driver.execute_script("return arguments[0].decode()", image)
    boxes = section.find_elements(By.CSS_SELECTOR, ".box.c-hi")  # confidence >= 0.9: coloured as such
    assert len(boxes) > 20
    word = max((b for b in boxes if (b.get_attribute("data-word") or "").isalpha()),
               key=lambda b: len(b.get_attribute("data-word")))
    text = word.get_attribute("data-word")
    x0, y0, x1, y1 = _rel_rect(driver, word, image)

    # Crop the image the server serves at the box the browser drew, and read it again.
    jpeg = tmp_path / "page.jpg"
    with urllib.request.urlopen(image.get_attribute("src"), timeout=10) as response:
        assert response.headers["Content-Type"] == "image/jpeg"
        jpeg.write_bytes(response.read())
    with Image.open(jpeg) as img:
        w, h = img.size
        pad = 6
        crop = img.crop((int(x0 * w) - pad, int(y0 * h) - pad, int(x1 * w) + pad, int(y1 * h) + pad))
        crop.save(tmp_path / "word.png")
    read = subprocess.run(["tesseract", str(tmp_path / "word.png"), "-", "--psm", "8"],
                          capture_output=True, text=True, timeout=60, check=False).stdout
    assert re.sub(r"[^a-z]", "", read.lower()) == text.lower(), (text, read)


@needs_tesseract()
def test_the_encounter_strip_covers_the_right_pages(driver, viewed):
    from selenium.webdriver.common.by import By

    _open(driver, viewed, "two_visits.pdf")
    cells = {c.get_attribute("data-page"): c.rect for c in driver.find_elements(By.CSS_SELECTOR, ".strip .cell")}
    assert sorted(cells) == ["1", "2", "3"]
    segments = driver.find_elements(By.CSS_SELECTOR, ".strip .seg")
    # The sample holds a visit on pages 1-2 (5 March, Riverside) and one on page 3 (19 March).
    expected = [("1", "2", "2024-03-05"), ("3", "3", "2024-03-19")]
    assert len(segments) == len(expected)
    for seg, (first, last, date) in zip(segments, expected):
        assert date in seg.text and "outpatient_visit" in seg.text
        left, right = seg.rect["x"], seg.rect["x"] + seg.rect["width"]
        assert abs(left - cells[first]["x"]) < 2
        assert abs(right - (cells[last]["x"] + cells[last]["width"])) < 2
    cards = driver.find_elements(By.CSS_SELECTOR, "article.enc")
    assert "Dr Priya Raman" in cards[0].text and "Riverside Medical Centre" in cards[0].text
    assert "Dr Thomas Quigley" in cards[1].text and "Northgate Family Clinic" in cards[1].text


@needs_tesseract()
def test_pointing_at_a_field_highlights_its_evidence_on_its_page(driver, viewed):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _open(driver, viewed, "two_visits.pdf")
    field = driver.find_element(By.CSS_SELECTOR, "article.enc[data-enc='0'] [data-evref='e0-provider']")
    assert not driver.find_elements(By.CSS_SELECTOR, ".hl")
    ActionChains(driver).move_to_element(field).perform()
    marked = driver.find_elements(By.CSS_SELECTOR, "pre.text .ev.hl")
    assert "Priya Raman" in "".join(m.text for m in marked)
    assert {m.find_element(By.XPATH, "ancestor::section").get_attribute("data-page") for m in marked} == {"1"}
    words = [b.get_attribute("data-word") for b in driver.find_elements(By.CSS_SELECTOR, "section#p1 .box.hl")]
    assert {"Priya", "Raman"} <= set(words)
    ActionChains(driver).move_to_element(driver.find_element(By.TAG_NAME, "h1")).perform()
    assert not driver.find_elements(By.CSS_SELECTOR, ".hl")


@needs_tesseract()
def test_a_canary_patient_name_never_reaches_the_server_log(driver, viewed):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    shown = ""
    for path in viewed["canary"]:
        _open(driver, viewed, path.name)
        for field in driver.find_elements(By.CSS_SELECTOR, "[data-evref]"):
            ActionChains(driver).move_to_element(field).perform()
        shown += driver.page_source
        driver.get(f"{viewed['base']}/api/files/{viewed['ids'][path.name]}")
    assert NAME in shown and DATE in shown  # the page did show the patient to its reviewer
    driver.get(f"{viewed['base']}/?status=completed")
    assert NAME in driver.page_source  # in the file names too
    log = viewed["log"].read_text()
    assert f"shell_file_id={viewed['ids'][viewed['canary'][0].name]}" in log  # the requests were logged
    for secret in (NAME, *NAME.split(), DATE, DATE.replace("/", "-")):
        assert secret not in log, secret


@needs_tesseract()
def test_ids_that_are_not_uuids_or_not_in_the_database_are_refused(viewed):
    base, known = viewed["base"], viewed["ids"]["two_visits.pdf"]
    unknown = uuid.uuid4()
    assert _get(f"{base}/files/{known}") == 200
    assert _get(f"{base}/files/{known}/pages/1.jpg") == 200
    assert _get(f"{base}/api/files/{known}") == 200
    for path in [
        "/files/not-a-uuid", "/files/../etc/passwd", f"/files/{{{known}}}", f"/files/{known.replace('-', '')}",
        f"/files/{unknown}", f"/api/files/{unknown}", f"/files/{unknown}/pages/1.jpg",
        f"/files/{known}/pages/4.jpg", f"/files/{known}/pages/0.jpg", "/static/../server.py", "/nothing",
    ]:
        assert _get(base + path) == 404, path
    # A page elsewhere cannot reach it through a name that resolves to loopback (DNS rebinding).
    assert _get(base + "/", host="attacker.example:80") == 421
    # Read-only: no method but GET and HEAD.
    request = urllib.request.Request(f"{base}/files/{known}", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 501


def test_review_flags_render_when_the_manifest_has_them_and_not_otherwise():
    from shared.view.html import file_page

    file = {"id": str(uuid.uuid4()), "original_name": "x.pdf", "status": "completed", "page_count": 2,
            "mime_type": "application/pdf", "error_code": None, "error_message": None}
    page = {"width": 100, "height": 140, "text_source": "ocr", "engine": "tesseract", "confidence": 0.5,
            "text": "Patient: Jane Roe", "words": [], "flags": {}}
    encounter = {"encounter_type": "lab_report", "page_ranges": [[1, 2]], "confidence": 0.4,
                 "evidence": [{"field": "patient_name", "page_number": 1, "start": 9, "end": 17}]}
    plain = {"file": file, "manifest": {"encounters": [encounter]}, "costs": None, "runs": [],
             "pages": [{**page, "page_number": 1}, {**page, "page_number": 2}]}
    html = file_page(plain)
    assert "data-flag" not in html and "identity" not in html

    flagged = {**plain, "manifest": {"identity_conflict": True, "encounters": [
        {**encounter, "identity": {"name": "Jane Roe", "date_of_birth": "1970-01-01", "evidence": []},
         "needs_review": True, "review_reasons": ["low confidence"]}]},
        "pages": [{**page, "page_number": 1}, {**page, "page_number": 2, "flags": {"ocr_empty": True}}]}
    html = file_page(flagged)
    for flag in ("identity_conflict", "needs_review", "ocr_empty"):
        assert f"data-flag={flag}" in html, flag
    assert "Jane Roe" in html and "1970-01-01" in html and "low confidence" in html
    assert "data-ev='e0-patient_name'" in html  # evidence of a field beyond the usual five

    # What came from a document is text, never markup.
    hostile = {**flagged, "file": {**file, "original_name": "<script>alert(1)</script>"},
               "pages": [{**page, "page_number": 1, "text": "<img src=x onerror=alert(1)>"}]}
    html = file_page(hostile)
    assert "<script>alert" not in html and "<img src=x" not in html


def test_status_links_each_failure_code_to_its_files():
    from shared import ops

    snapshot = {"queues": {}, "files": {"failed": 2}, "window_hours": 24, "stages": {},
                "recent_failures": [{"error_code": "encrypted", "files": 2, "last_at": "2026-12-01T21:00:00"}]}
    text = ops.format_status(snapshot, view_base="http://127.0.0.1:8765")
    assert "http://127.0.0.1:8765/?status=failed&error_code=encrypted" in text
    assert "docpipe view" in text
    assert "8765" not in ops.format_status(snapshot)


def test_view_refuses_a_data_dir_without_data(tmp_path):
    from shared.view.server import open_data_dir

    with pytest.raises(FileNotFoundError):
        open_data_dir(tmp_path)
    assert not (tmp_path / "pg").exists()  # nothing created: the view never writes


@needs_tesseract()
def test_the_view_connection_to_a_data_dir_cannot_write(viewed):
    import psycopg

    from shared.view.server import open_data_dir

    # The same data dir the running `docpipe view` reads; pgserver shares its one server.
    db, _, close = open_data_dir(Path(viewed["log"]).parent / "data")
    try:
        assert db.query("select count(*) as n from shell_files")[0]["n"] == len(viewed["ids"])
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            db.query("delete from shell_files")
    finally:
        close()
    assert _get(viewed["base"] + "/") == 200  # and the view's own server is still up


def test_the_view_reads_the_configured_stack_as_the_worker_does(stack_deps, stack_settings):
    """Without --data-dir: the environment's Postgres and S3, through the adapters the worker builds."""
    import io

    from PIL import Image

    from shared.keys import original_key, page_key
    from shared.models import Box, FileStatus, PageText, ShellFile, ShellFilePage, TextSource, Word
    from shared.view.server import ViewServer, open_configured

    # Given a file whose page the stages stored (a row, its text with one word, its JPEG in S3)
    sfid, patient = uuid.uuid4(), uuid.uuid4()
    stack_deps.db.create_shell_file(ShellFile(id=sfid, patient_id=patient, storage_key=original_key(patient, sfid, "png"),
                                              original_name="letter.png", status=FileStatus.QUEUED))
    buf = io.BytesIO()
    Image.new("L", (300, 400), 255).save(buf, format="JPEG")
    stack_deps.storage.put_bytes(page_key(patient, sfid, 1), buf.getvalue(), "image/jpeg")
    stack_deps.db.upsert_pages(sfid, [ShellFilePage(shell_file_id=sfid, page_number=1, storage_key=page_key(patient, sfid, 1),
                                                    width=300, height=400, text_source=TextSource.OCR)],
                               [PageText(page_number=1, text="Referral", engine="tesseract", confidence=0.5,
                                         words=[Word(text="Referral", box=Box(x0=0.1, y0=0.1, x1=0.4, y1=0.15),
                                                     confidence=0.5)])])
    db, storage, close = open_configured(stack_settings)
    log: list[str] = []
    server = ViewServer(db, storage, port=0, log=log.append).start()
    try:
        with urllib.request.urlopen(f"{server.url}/files/{sfid}", timeout=10) as response:
            page = response.read().decode()
        assert "letter.png" in page and "data-word='Referral'" in page and "box c-lo" in page
        with urllib.request.urlopen(f"{server.url}/files/{sfid}/pages/1.jpg", timeout=10) as response:
            assert response.read() == buf.getvalue()
        with urllib.request.urlopen(f"{server.url}/?status=queued", timeout=10) as response:
            assert f"data-id='{sfid}'" in response.read().decode()
    finally:
        server.stop()
        close()
    assert log and all("letter" not in line and "Referral" not in line for line in log)


def test_a_long_file_shows_its_pages_in_windows_and_the_strip_covers_all():
    from shared.view.html import PAGE_WINDOW, file_page

    count = 2 * PAGE_WINDOW + 5
    pages = [{"page_number": n, "width": 10, "height": 14, "text_source": "native", "engine": "native",
              "confidence": None, "text": f"page {n}", "words": [], "flags": {}} for n in range(1, count + 1)]
    detail = {"file": {"id": str(uuid.uuid4()), "original_name": "long.pdf", "status": "completed",
                       "page_count": count, "mime_type": "application/pdf"},
              "manifest": {"encounters": [{"encounter_type": "other", "page_ranges": [[1, count]], "confidence": 1}]},
              "costs": None, "runs": [], "pages": pages}
    html = file_page(detail, start=PAGE_WINDOW + 3)  # any page of the second window
    shown = [int(n) for n in re.findall(r"<section class=page id=p(\d+)", html)]
    assert shown == list(range(PAGE_WINDOW + 1, 2 * PAGE_WINDOW + 1))
    assert html.count("class=cell") == count and f"grid-column:1 / {count + 1}" in html
    assert "href='?start=1#p1'" in html and f"href='#p{PAGE_WINDOW + 1}'" in html
    assert f"href='?start={2 * PAGE_WINDOW + 1}'" in html
