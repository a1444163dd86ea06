"""Debian's headless chromium through chromium-driver, for the review page's tests.

``python -m tests.e2e.browser URL OUT.png [CSS]`` saves a screenshot, the pointer on the
element CSS names if given (how docs/view.png is made).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

# Root in a container has no sandbox; the network is closed, so everything that would phone
# home (component updates, sync, QUIC probes) is off or chromium stalls on connections.
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1000",
]


def binaries() -> tuple[str | None, str | None]:
    return shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")


def chromium(profile: Path | None = None):
    """A fresh chromium (its own profile directory) driven by selenium; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = binaries()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile or tempfile.mkdtemp(prefix='docpipe-chromium-')}")
    # The system driver by path: selenium's own manager would try to download one.
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def screenshot(url: str, out: Path, hover: str | None = None, width: int = 1400, height: int = 1000) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = chromium()
    try:
        driver.set_window_size(width, height)
        driver.get(url)
        # The images in view (the others load lazily, when scrolled to).
        driver.execute_script(
            "return Promise.all([...document.images].filter(i => i.getBoundingClientRect().top < innerHeight)"
            ".map(i => i.decode().catch(() => null)))"
        )
        if hover:
            ActionChains(driver).move_to_element(driver.find_element(By.CSS_SELECTOR, hover)).perform()
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


if __name__ == "__main__":
    screenshot(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:4])
