"""Browser tests of the built book: opt-in with ``--browser`` (``make browser`` passes it).

A plain ``pytest tests`` never collects them, so the unit-test run needs neither a built book nor a
browser. ``make browser`` builds the book, installs Debian's ``chromium``/``chromium-driver`` when
missing, and runs ``pytest tests/browser --browser``.
"""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
#: The flags that keep headless Chromium quiet and offline-friendly (no updates, sync, QUIC, sandbox).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1280,1400")


def pytest_addoption(parser):
    parser.addoption("--browser", action="store_true", default=False,
                     help="run the headless-Chromium tests of the built book (tests/browser)")
    parser.addoption("--book-html", default=str(ROOT / "_build" / "html"),
                     help="the built book to test (default: _build/html)")


def pytest_ignore_collect(collection_path, config):
    """Skip collecting the browser tests unless ``--browser`` was given."""
    if collection_path.suffix == ".py" and collection_path.name.startswith("test_"):
        if not config.getoption("--browser", default=False):
            return True
    return None


@pytest.fixture(scope="session")
def book_html(pytestconfig) -> Path:
    path = Path(pytestconfig.getoption("--book-html")).resolve()
    if not (path / "index.html").is_file():
        pytest.fail(f"no built book at {path}: run `make book` first")
    return path


@pytest.fixture(scope="session")
def screenshot_dir(book_html) -> Path:
    """``_build/screenshots`` beside ``_build/html``: one PNG per page, for inspection."""
    folder = book_html.parent / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="session")
def book_url(book_html):
    """Serve the built book on 127.0.0.1 (a free port) for the session; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(book_html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def driver(tmp_path_factory):
    """Headless Chromium through Debian's chromedriver (selenium-manager never downloads anything)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not binary.is_file():
            pytest.fail(f"{binary} is missing: `apt-get install -y chromium chromium-driver` "
                        "(make browser does this)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(60)
    browser.set_script_timeout(60)
    yield browser
    browser.quit()
