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


def test_page_shows_the_classes_and_validation_accuracy(server, exported_run, headless_chrome):
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    classes = json.loads((exported_run / "export" / "model.json").read_text())["classes"]
    browser = headless_chrome
    browser.get(server + "/")
    WebDriverWait(browser, 20).until(lambda b: "classes" in b.find_element(By.ID, "model").text)
    assert "validation accuracy 50.0%" in browser.find_element(By.ID, "model").text   # the checkpoint's val_acc
    assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#classes li")] == classes
    assert browser.find_element(By.ID, "classes").is_displayed()


def test_a_non_image_leaves_no_broken_preview(server, digits_dir, tmp_path, headless_chrome):
    """A photo, then a text file: the error is shown, and no preview (neither broken nor the old photo)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = sorted(Path(digits_dir).glob("3/*.png"))[0]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    fake = tmp_path / "fake.png"                 # says PNG, is text: the browser tries, fails to draw it
    fake.write_text("not a picture either")
    browser = headless_chrome
    browser.get(server + "/")
    results = browser.find_element(By.ID, "results")
    preview = browser.find_element(By.ID, "preview")
    browser.find_element(By.ID, "file").send_keys(str(image))
    WebDriverWait(browser, 30).until(lambda b: results.get_attribute("data-state") == "done")
    WebDriverWait(browser, 10).until(lambda b: preview.is_displayed())
    for bad in (notes, fake):
        browser.find_element(By.ID, "file").send_keys(str(bad))
        WebDriverWait(browser, 30).until(lambda b: results.get_attribute("data-state") == "error")
        assert "not an image" in browser.find_element(By.ID, "status").text
        assert not preview.is_displayed()
        broken = browser.execute_script(
            "const p = document.getElementById('preview'); return p.getAttribute('src') !== null && p.naturalWidth === 0;")
        assert not broken
        browser.find_element(By.ID, "file").send_keys(str(image))       # and a good photo shows again
        WebDriverWait(browser, 30).until(lambda b: results.get_attribute("data-state") == "done")
        WebDriverWait(browser, 10).until(lambda b: preview.is_displayed())
