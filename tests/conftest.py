"""Shared fixtures: the ../shared folder (real weights and photos) and small real datasets."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path | None:
    """``$TRANSFERLAB_SHARED``, else ``../shared`` or ``./shared``; ``TRANSFERLAB_SHARED=none`` runs the
    suite as on a machine without it (to see which tests skip)."""
    env = os.environ.get("TRANSFERLAB_SHARED")
    if env == "none":
        return None
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared", REPO / "shared"]
    for c in candidates:
        if (c / "weights").is_dir() or (c / "data").is_dir():
            return c
    return None


SHARED = _find_shared()


def pytest_collection_modifyitems(config, items):
    """Docstrings in src/ whose every example is marked ``+SKIP`` (they need a trained run or a
    photo) are documentation, not tests: deselect them instead of reporting them as skipped, so the
    skip list holds only tests that truly need ../shared or Chromium."""
    import doctest

    from _pytest.doctest import DoctestItem

    docs_only = [i for i in items if isinstance(i, DoctestItem)
                 and all(ex.options.get(doctest.SKIP) for ex in i.dtest.examples)]
    if docs_only:
        config.hook.pytest_deselected(items=docs_only)
        items[:] = [i for i in items if i not in docs_only]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder with real pretrained weights and photos; skips when absent."""
    if SHARED is None:
        pytest.skip("../shared (real weights and photos) is not present on this machine")
    return SHARED


@pytest.fixture(scope="session")
def photos_dir(shared_dir: Path) -> Path:
    d = shared_dir / "data" / "photos"
    if not d.is_dir():
        pytest.skip("../shared/data/photos is not present")
    return d


@pytest.fixture(scope="session")
def weights_dir(shared_dir: Path) -> Path:
    d = shared_dir / "weights"
    if not d.is_dir():
        pytest.skip("../shared/weights is not present")
    return d


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """The built-in sample (real handwritten digits), 30 images per class, 32x32 grayscale PNGs,
    written once per test session as ``DIR/0/*.png`` .. ``DIR/9/*.png``."""
    from transferlab.data.sample import write_digits

    return write_digits(tmp_path_factory.mktemp("digits") / "digits", per_class=30, size=32)


CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run")


def chromium() -> str:
    """The Chromium binary; skips the test when it is not installed."""
    import shutil

    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chrome:
        pytest.skip("Debian chromium is not installed (apt-get install chromium chromium-driver)")
    return chrome


@pytest.fixture
def headless_chrome(tmp_path):
    """Debian's Chromium driven by selenium (offline-safe flags); skips when it is not installed, and
    fails (not skips) when it is installed but does not start: a broken browser must not pass silently."""
    import shutil

    chrome = chromium()
    driver_path = shutil.which("chromedriver")
    if not driver_path:
        pytest.skip("Debian chromium-driver is not installed (apt-get install chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in (*CHROME_ARGS, f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(arg)
    try:
        browser = webdriver.Chrome(service=Service(driver_path), options=opts)
    except Exception as exc:  # pragma: no cover - a broken local browser install
        pytest.fail(f"headless chromium is installed ({chrome}) but did not start: {str(exc).splitlines()[0]}")
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def logged():
    """The messages transferlab's loggers say during the test (INFO and above), in order."""
    import logging

    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("transferlab")
    logger.addHandler(handler)
    yield messages
    logger.removeHandler(handler)


@pytest.fixture(autouse=True)
def _transferlab_log_level():
    """A test that quiets transferlab's loggers (a rank > 0 set up in this process) does not quiet the next."""
    import logging

    logger = logging.getLogger("transferlab")
    level = logger.level
    yield
    logger.setLevel(level)
