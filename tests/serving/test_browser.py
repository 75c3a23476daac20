"""End to end in headless Chromium: start the viewer on a free port, upload an image, read the category off the page.

Uploads a DDTI image when the development copy is present, a phantom image otherwise. Skips (with the reason)
only where Chromium or ChromeDriver is not installed (Debian packages ``chromium`` and ``chromium-driver``; .ci/run
installs them). Set RLAR_VIEWER_SCREENSHOT=path to save a screenshot of the result page (docs/viewer.png).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.inference import _rlar_trained_model

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
DDTI_IMAGE = Path(os.environ.get("RLAR_DDTI_ROOT", Path(__file__).parents[2].parent / "shared" / "data" / "ddti")) / "1_1.jpg"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(trained_run: Path) -> Iterator[str]:
    pytest.importorskip("uvicorn")
    import uvicorn

    from rlar.inference import Predictor
    from rlar.serving.app import create_app

    port = _free_port()
    config = uvicorn.Config(create_app(Predictor.from_run(trained_run)), host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the viewer did not start within 30 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"Chromium/ChromeDriver not installed ({CHROMIUM}, {CHROMEDRIVER}); "
                    "install the Debian packages chromium and chromium-driver")
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rlar-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-quic", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1100", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_upload_in_headless_chromium_shows_the_category(server: str, browser: WebDriver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    image = DDTI_IMAGE if DDTI_IMAGE.is_file() else _rlar_trained_model.phantom_png(tmp_path)
    browser.get(server + "/")
    assert "Research use only" in browser.page_source
    browser.find_element(By.ID, "file").send_keys(str(image))
    browser.find_element(By.ID, "submit").click()
    category = WebDriverWait(browser, 120).until(expected_conditions.presence_of_element_located((By.ID, "category")))
    assert category.text in {"TR1", "TR2", "TR3", "TR4", "TR5"}  # the phantom model's ACR classes
    overlay = browser.find_element(By.ID, "overlay").get_attribute("src")
    assert overlay is not None and overlay.startswith("data:image/png;base64,")
    assert browser.find_elements(By.ID, "probabilities") and browser.find_elements(By.ID, "download-json")
    target = os.environ.get("RLAR_VIEWER_SCREENSHOT")
    if target:
        browser.save_screenshot(target)
