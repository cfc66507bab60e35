"""Every chapter in ``_toc.yml`` follows the book's conventions (static checks, no execution).

* the first code cell is the standard Colab cell, installing from the repository URL in ``_config.yml``
  (the one place it lives), and a later cell calls ``hb.setup_chapter`` (seeds, style, GPU when present);
* the library is imported as ``hh`` (``import hitchhiker as hh``) and used only for its public names;
  the experiments come from ``hitchhiker.book`` (``from hitchhiker import book as hb``, or its
  submodules), never from the pre-split paths (``hitchhiker.poglm``, ``hitchhiker.plotting``, ...);
* kernelspec ``python3``; a Takeaways admonition; no outputs stored under unexecuted cells;
* every chapter cites the literature, with keys that exist in ``book/references.bib``.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from check_book import toc_files

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
NOTEBOOKS = [f for f in TOC if (ROOT / f"{f}.ipynb").is_file()]
#: Pages that are not chapters: they need not cite anything.
NOT_CHAPTERS = {"book/bibliography", "book/api"}
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
TAKEAWAYS = re.compile(r"^(:{3,}|`{3,})\{admonition\} Takeaways\s*$", re.M)


def colab_cell(repository_url: str) -> str:
    """The standard first code cell of a chapter, installing from ``repository_url``."""
    return ("# In Colab, install hitchhiker first (elsewhere it is already installed).\n"
            "import sys\n"
            'if "google.colab" in sys.modules:\n'
            f'    %pip install --quiet "poisson-hitchhiker[book] @ git+{repository_url}"')


def read(page: str):
    return nbformat.read(ROOT / f"{page}.ipynb", as_version=4)


def page_text(page: str) -> str:
    notebook = ROOT / f"{page}.ipynb"
    if notebook.is_file():
        return "\n".join(c.source for c in read(page).cells if c.cell_type == "markdown")
    return (ROOT / f"{page}.md").read_text()


def bib_keys() -> set:
    return set(re.findall(r"@\w+\{([^,\s]+),", (ROOT / "book" / "references.bib").read_text()))


def test_the_repository_url_lives_in_config():
    url = CONFIG["repository"]["url"]
    assert url.startswith("https://github.com/") and CONFIG["launch_buttons"]["colab_url"]
    assert colab_cell(url).endswith(f'git+{url}"')


@pytest.mark.parametrize("page", NOTEBOOKS)
def test_first_code_cell_installs_from_the_configured_repository(page):
    cells = read(page).cells
    code = [c for c in cells if c.cell_type == "code"]
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), \
        f"{page}: the first cell must be the markdown title"
    assert code and code[0].source.strip() == colab_cell(CONFIG["repository"]["url"]), \
        f"{page}: the first code cell is not the standard Colab cell:\n{code[0].source if code else ''}"
    assert any("setup_chapter(" in c.source for c in code[1:3]), \
        f"{page}: the setup cell (hb.setup_chapter) must follow the Colab cell"


#: Library modules a chapter may reach as ``hh.<module>`` (for a name outside the top-level ``__all__``).
LIBRARY_MODULES = {"distributions", "estimators", "indicators", "moments", "metrics"}
BOOK_MODULES = {"data", "fidelity", "gradients", "objectives", "plotting", "poglm", "recommendations",
                "results", "runtime", "scale", "training", "vae", "campbell"}


@pytest.mark.parametrize("page", NOTEBOOKS)
def test_library_as_hh_and_experiments_as_hb(page):
    import hitchhiker
    import hitchhiker.book

    library = set(hitchhiker.__all__) | LIBRARY_MODULES
    book = set(hitchhiker.book.__all__) | BOOK_MODULES
    code = "\n".join(c.source for c in read(page).cells if c.cell_type == "code")
    wrong_hh = sorted(set(re.findall(r"\bhh\.(\w+)", code)) - library)
    wrong_hb = sorted(set(re.findall(r"\bhb\.(\w+)", code)) - book)
    assert not wrong_hh, f"{page}: hh.{wrong_hh} are not library names (experiments are hb.*)"
    assert not wrong_hb, f"{page}: hb.{wrong_hb} are not in hitchhiker.book"
    old = re.findall(rf"^\s*(?:from|import) hitchhiker\.({'|'.join(sorted(BOOK_MODULES))})\b", code, re.M)
    old += re.findall(rf"^\s*from hitchhiker import ({'|'.join(sorted(BOOK_MODULES))})\b", code, re.M)
    assert not old, f"{page}: imports book modules from their pre-split paths: {old} (use hitchhiker.book.*)"
    if re.search(r"\bhh\.", code):
        assert re.search(r"^import hitchhiker as hh$", code, re.M), f"{page}: uses hh. without importing it"
    if re.search(r"\bhb\.", code):
        assert re.search(r"^from hitchhiker import book as hb$", code, re.M), \
            f"{page}: uses hb. without `from hitchhiker import book as hb`"


@pytest.mark.parametrize("page", NOTEBOOKS)
def test_kernelspec_is_python3(page):
    kernelspec = read(page).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == "python3", f"{page}: kernelspec {kernelspec}"


@pytest.mark.parametrize("page", NOTEBOOKS)
def test_ends_with_takeaways(page):
    markdown = [c.source for c in read(page).cells if c.cell_type == "markdown"]
    assert any(TAKEAWAYS.search(s) and ":class: tip" in s for s in markdown), \
        f"{page}: no Takeaways admonition (:::{{admonition}} Takeaways / :class: tip)"


@pytest.mark.parametrize("page", NOTEBOOKS)
def test_no_outputs_under_unexecuted_cells(page):
    stale = [i for i, c in enumerate(read(page).cells)
             if c.cell_type == "code" and c.get("execution_count") is None and c.get("outputs")]
    assert not stale, f"{page}: cells {stale} have outputs but were never executed"


@pytest.mark.parametrize("page", [p for p in TOC if p not in NOT_CHAPTERS])
def test_every_chapter_cites_known_references(page):
    keys = [k.strip() for group in CITE.findall(page_text(page)) for k in group.split(",")]
    assert keys, f"{page} cites nothing"
    unknown = set(keys) - bib_keys()
    assert not unknown, f"{page} cites keys missing from book/references.bib: {sorted(unknown)}"
