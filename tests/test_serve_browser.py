"""The web page in a real browser: Debian's Chromium driven by selenium uploads a real image
through the file input; the class shown must be the API's top-1."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from test_export_fixtures import digits_run, exported_run, write_images  # noqa: F401

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(exported_run):
    import httpx
    import uvicorn

    from transferlab.serve import create_app

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(exported_run), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    else:
        pytest.fail("server did not start")
    yield url
    srv.should_exit = True
    thread.join(timeout=10)


def test_page_shows_the_api_top1(server, digits_dir, headless_chrome):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = sorted(Path(digits_dir).glob("7/*.png"))[0]
    api = httpx.post(f"{server}/predict", files={"files": (image.name, image.read_bytes(), "image/png")}).json()
    want = api["predictions"][0]

    browser = headless_chrome
    browser.get(server + "/")
    WebDriverWait(browser, 20).until(lambda b: "classes" in b.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(image))
    results = browser.find_element(By.ID, "results")
    WebDriverWait(browser, 30).until(lambda b: results.get_attribute("data-state") in ("done", "error"))
    assert results.get_attribute("data-state") == "done", browser.find_element(By.ID, "status").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#results .result")
    assert len(rows) == 5
    first = rows[0]
    assert first.find_element(By.CLASS_NAME, "label").text == want["label"]
    assert first.find_element(By.CLASS_NAME, "pct").text == f"{want['prob'] * 100:.1f}%"
    assert browser.find_element(By.ID, "preview").get_attribute("src").startswith("blob:")
    assert browser.find_element(By.ID, "preview").is_displayed()
