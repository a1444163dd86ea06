"""C-CDA XML -> the PDF a patient portal's "download" gives: HL7's CDA stylesheet (CDA.xsl, run by
lxml) makes the HTML a person views, headless Chromium prints it (Page.printToPDF, Letter paper,
default margins, backgrounds) as the browser's print does.

Bench-only: needs lxml, selenium, chromium and chromedriver (``available()``). One browser is
started lazily and reused for every document of the run (closed at exit); every PDF is cached
under ``BUILD/renders/<sha256 of the HTML>.pdf``, so a second run prints nothing.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import importlib.util
import shutil
import tempfile
import threading
from pathlib import Path

from bench.encounter_families.common import BUILD, CORPUS

STYLESHEET = CORPUS / "realfmt" / "cda-xsl" / "CDA.xsl"
RENDERS = BUILD / "renders"

# Chromium's print dialog defaults, as a person pressing "Save as PDF" gets them.
PRINT_OPTIONS = {
    "paperWidth": 8.5,  # Letter, inches
    "paperHeight": 11.0,
    "printBackground": True,
    "preferCSSPageSize": False,
    "displayHeaderFooter": False,
}

_lock = threading.Lock()
_transform = None
_driver = None
_stats = {"printed": 0, "cached": 0}


def _which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def available() -> bool:
    """The stylesheet is in ../shared, lxml and selenium import, chromium and chromedriver are on PATH."""
    return (
        STYLESHEET.is_file()
        and importlib.util.find_spec("lxml") is not None
        and importlib.util.find_spec("selenium") is not None
        and _which("chromium", "chromium-browser", "google-chrome") is not None
        and _which("chromedriver") is not None
    )


def _xslt():
    global _transform
    if _transform is None:
        from lxml import etree

        # parsed from its path, so its document('cda_l10n.xml') loads resolve beside it
        _transform = etree.XSLT(etree.parse(str(STYLESHEET)))
    return _transform


def html(xml: bytes) -> str:
    """The stylesheet's HTML for one ClinicalDocument."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    document = etree.fromstring(xml, parser)
    return str(_xslt()(document.getroottree()))


def _browser():
    global _driver
    if _driver is None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = _which("chromium", "chromium-browser", "google-chrome") or ""
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        _driver = webdriver.Chrome(options=options, service=Service(_which("chromedriver")))
        atexit.register(close)
    return _driver


def close() -> None:
    """Quit the browser (also run at exit)."""
    global _driver
    if _driver is not None:
        try:
            _driver.quit()
        finally:
            _driver = None


def print_html(page: str) -> bytes:
    """Chromium's PDF of an HTML page, cached by the page's hash."""
    digest = hashlib.sha256(page.encode("utf-8")).hexdigest()
    hit = RENDERS / f"{digest}.pdf"
    if hit.exists():
        _stats["cached"] += 1
        return hit.read_bytes()
    with _lock:
        driver = _browser()
        with tempfile.TemporaryDirectory(prefix="encounters-print-") as tmp:
            path = Path(tmp) / "document.html"
            path.write_text(page, encoding="utf-8")
            driver.get(path.as_uri())
            result = driver.execute_cdp_cmd("Page.printToPDF", dict(PRINT_OPTIONS))
    pdf = base64.b64decode(result["data"])
    RENDERS.mkdir(parents=True, exist_ok=True)
    partial = hit.with_suffix(".part")
    partial.write_bytes(pdf)
    partial.replace(hit)
    _stats["printed"] += 1
    return pdf


def render(xml: bytes) -> bytes:
    """The printed PDF of one ClinicalDocument."""
    return print_html(html(xml))


def stats() -> dict[str, int]:
    """How many PDFs this process printed and how many came from the cache."""
    return dict(_stats)
