"""Every page of the built book in headless Chromium: no JavaScript errors, math typeset by the local
MathJax, every image loaded, and each chapter's Colab button opening that chapter's notebook.

Run with ``make browser`` (or ``pytest tests/browser --browser [--book-html DIR]``); a screenshot of
every page lands in ``_build/screenshots/``.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from check_book import toc_files  # noqa: E402  (the table-of-contents reader make book uses)

#: Directories of a Sphinx build that hold assets, not pages.
ASSET_DIRS = {"_static", "_sources", "_images", "_downloads", "_panels_static"}
#: TeX left in the text after typesetting: display delimiters or $...$ around a TeX command.
RAW_TEX = re.compile(r"\$\$|\\\(|\\\[|\$[^$\n]*\\[A-Za-z]+[^$\n]*\$")

WAIT_FOR_PAGE = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images).map(img => img.complete ? Promise.resolve() :
    new Promise(resolve => { img.addEventListener('load', resolve); img.addEventListener('error', resolve); }));
const math = (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise
    : Promise.resolve();
Promise.all([math, ...images]).then(() => done('ready'), err => done('error: ' + err));
"""

PAGE_REPORT = """
const article = document.querySelector('main') || document.body;
const clone = article.cloneNode(true);
clone.querySelectorAll('pre, code, script, style, .highlight, mjx-container, .math').forEach(e => e.remove());
const mathElements = Array.from(article.querySelectorAll('.math'));
return {
  mathjaxScripts: Array.from(document.scripts).map(s => s.src).filter(src => /mathjax/i.test(src)),
  mathElements: mathElements.length,
  untypesetMath: mathElements.filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80)),
  mjxContainers: article.querySelectorAll('mjx-container').length,
  text: clone.innerText,
  images: Array.from(document.images).map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth,
                                                  complete: img.complete})),
  colabLinks: Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href),
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""


def _option(config, name, default):
    try:
        return config.getoption(name)
    except ValueError:
        return default


def built_pages(book_html: Path) -> list[str]:
    """Every HTML page of the build (relative paths), except the asset folders and the index redirect."""
    pages = []
    for path in sorted(book_html.rglob("*.html")):
        relative = path.relative_to(book_html)
        if relative.parts[0] in ASSET_DIRS or relative.as_posix() == "index.html":
            continue
        pages.append(relative.as_posix())
    return pages


def pytest_generate_tests(metafunc):
    if "page" in metafunc.fixturenames:
        book_html = Path(_option(metafunc.config, "--book-html", ROOT / "_build" / "html"))
        pages = built_pages(book_html) if book_html.is_dir() else []
        metafunc.parametrize("page", pages or [pytest.param("", marks=pytest.mark.skip("no build"))],
                             ids=pages or ["no-build"])


def colab_url_for(notebook: str) -> str:
    """The Colab launch URL of a notebook, from the one place the repository URL lives: _config.yml."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repository, colab = config["repository"], config["launch_buttons"]["colab_url"].rstrip("/")
    owner_repo = urlparse(repository["url"]).path.strip("/")
    path = "/".join(p for p in (repository.get("path_to_book", "").strip("/"), notebook) if p)
    return f"{colab}/github/{owner_repo}/blob/{repository.get('branch', 'main')}/{path}"


def test_colab_url_is_built_from_config():
    assert colab_url_for("book/01_eat_relaxation.ipynb") == (
        "https://colab.research.google.com/github/hitchhiker-book/hitchhiker/blob/main/"
        "book/01_eat_relaxation.ipynb")


def test_every_toc_file_has_a_page(book_html):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    missing = [f for f in toc_files(toc) if not (book_html / f"{f}.html").is_file()]
    assert not missing, f"pages in _toc.yml that the build lacks: {missing}"


def test_mathjax_is_local_and_nothing_loads_from_a_cdn(book_html):
    """MathJax comes from ``_static/mathjax`` (sphinx-mathjax-offline); no script or stylesheet is remote."""
    assert (book_html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    for page in built_pages(book_html):
        html = (book_html / page).read_text(encoding="utf-8")
        mathjax = re.findall(r'<script[^>]*src="([^"]*mathjax[^"]*)"', html, flags=re.I)
        assert all(src.split("?")[0].endswith("_static/mathjax/tex-chtml.js") for src in mathjax), \
            f"{page} loads MathJax from {mathjax}"
        remote = re.findall(r'<(?:script|link)[^>]*(?:src|href)="((?:https?:)?//[^"]*\.(?:js|css)[^"]*)"', html)
        assert not remote, f"{page} loads scripts or stylesheets from the network: {remote}"


def test_page(page, book_html, book_url, driver, screenshot_dir):
    driver.get_log("browser")  # drop messages left over from the previous page
    driver.get(urljoin(book_url, page))
    assert driver.execute_async_script(WAIT_FOR_PAGE) == "ready", page
    report = driver.execute_script(PAGE_REPORT)

    driver.set_window_size(1280, min(max(report["height"], 800), 16000))
    driver.save_screenshot(str(screenshot_dir / (page.replace("/", "__").removesuffix(".html") + ".png")))
    driver.set_window_size(1280, 1400)

    severe = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, f"{page}: JavaScript console errors: {severe}"

    # Math: the local MathJax typeset every formula and no raw TeX is left in the prose.
    assert all("://" not in src or src.startswith(book_url) for src in report["mathjaxScripts"]), \
        report["mathjaxScripts"]
    if report["mathElements"]:
        assert report["mathjaxScripts"], f"{page} has math but loads no MathJax"
        assert report["mjxContainers"] > 0, f"{page}: MathJax produced no output"
        assert not report["untypesetMath"], f"{page}: formulas left untypeset: {report['untypesetMath']}"
    raw = RAW_TEX.findall(report["text"])
    assert not raw, f"{page}: raw TeX in the rendered text: {raw[:5]}"

    # Figures: every image loaded.
    broken = [img["src"] for img in report["images"] if not img["complete"] or img["width"] == 0]
    assert not broken, f"{page}: images that did not load: {broken}"

    # Colab: a chapter notebook's launch button opens that notebook; other pages have none.
    source = ROOT / Path(page).with_suffix(".ipynb")
    if source.is_file():
        expected = colab_url_for(Path(page).with_suffix(".ipynb").as_posix())
        assert report["colabLinks"] == [expected], f"{page}: Colab links {report['colabLinks']}, expected {expected}"
    else:
        assert not report["colabLinks"], f"{page} is not a notebook but has a Colab link"
