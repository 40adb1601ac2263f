"""doctor.html in a real browser (Debian's Chromium via selenium): every thumbnail decodes and
each planted problem is shown with its labels."""
from __future__ import annotations

import os

import pytest

from test_doctor_fixtures import planted  # noqa: F401

pytestmark = pytest.mark.browser


def test_doctor_page_shows_every_thumbnail(planted, headless_chrome, tmp_path):
    from selenium.webdriver.common.by import By

    root, truth, report, _ = planted
    page = root.parent / "doctor" / "doctor.html"
    browser = headless_chrome
    browser.set_window_size(1400, 1000)
    browser.get(page.as_uri())
    browser.execute_script("return document.readyState")
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= report["summary"]["duplicate_images"] + report["summary"]["outliers"]
    widths = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.getAttribute('src').slice(0, 23)])")
    assert all(done and width > 0 and src == "data:image/jpeg;base64," for done, width, src in widths), widths[:3]
    headings = [h.text for h in browser.find_elements(By.TAG_NAME, "h2")]
    assert any(h.startswith("Duplicates:") for h in headings) and any(h.startswith("Outliers: 3") for h in headings)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "copy_of_a_train_rose.jpg" in body and "blank frame" in body and "suggested sunflower" in body
    if os.environ.get("TRANSFERLAB_SCREENSHOT"):
        browser.save_screenshot(os.environ["TRANSFERLAB_SCREENSHOT"])
