"""Every chapter in ``_toc.yml`` follows the book's conventions (static checks, no execution).

* the first code cell is the standard Colab cell, installing from the repository URL in ``_config.yml``
  (the one place it lives), and a later cell calls ``hb.setup_chapter`` (seeds, style, GPU when present);
* the library is imported as ``hh`` (``import hitchhiker as hh``) and used only for its public names;
  the experiments come from ``hitchhiker.book`` as ``hb`` (``from hitchhiker import book as hb``) by one
  route per name, ``hb.<subpackage>.<name>`` or a top-level helper (each step a name of its package's
  ``__all__``), never through a submodule, a ``from hitchhiker.book... import`` or a pre-split path
  (``hitchhiker.poglm``, ``hitchhiker.plotting``, ...);
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
    """The standard first code cell of a chapter: in Colab, install from ``repository_url`` and fetch
    the book's stored results (a shallow clone), then work from its ``book/`` folder, where the chapters
    find ``results/`` everywhere else."""
    return ("# In Colab, install hitchhiker and fetch the book's stored results, then work from its book/\n"
            "# folder as the chapters do everywhere else (elsewhere all of it is already here).\n"
            "import os\n"
            "import sys\n"
            'if "google.colab" in sys.modules:\n'
            f'    %pip install --quiet "poisson-hitchhiker[book] @ git+{repository_url}"\n'
            '    if not os.path.isdir("/content/hitchhiker"):\n'
            f'        !git clone --quiet --depth 1 {repository_url} /content/hitchhiker\n'
            '    %cd /content/hitchhiker/book')


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
    assert f'git+{url}"' in colab_cell(url) and f"clone --quiet --depth 1 {url} " in colab_cell(url)


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
#: Modules of the book's code from before the split into hitchhiker.book (``hitchhiker.poglm``, ...).
PRE_SPLIT_MODULES = {"campbell", "data", "fidelity", "gradients", "objectives", "plotting", "poglm",
                     "recommendations", "results", "runtime", "scale", "training", "vae"}
#: Pages that still import book names with ``from hitchhiker.book... import`` (owned elsewhere; each must
#: move to the ``hb.<subpackage>.<name>`` routes, then leave this set).
FROM_IMPORTS_PENDING = {"book/10_your_model", "book/08_non_poisson"}
HB_CHAIN = re.compile(r"(?<![\w.])hb((?:\.\w+)+)")


def code_of(page: str) -> str:
    return "\n".join(c.source for c in read(page).cells if c.cell_type == "code")


def unreachable(chain: str) -> str | None:
    """Why ``hb<chain>`` is not a name of the book's one public route, or ``None`` if it is.

    Each step into a package must be a name of its ``__all__`` (so ``hb.table1.rules.recommend`` and
    ``hb.common.plotting.BOOK_WIDTH`` are refused: one route per name); a step into a module without
    ``__all__`` (``hb.plotting``, ``hb.campbell``) must be a public attribute of it. The chain is
    followed until it reaches something that is not a module (a function, class or constant).
    """
    import types

    import hitchhiker.book as target

    path = "hb"
    for part in chain.strip(".").split("."):
        public = getattr(target, "__all__", None)
        if public is not None and part not in public:
            return f"{path}.{part}: not in {path}.__all__"
        if part.startswith("_") or not hasattr(target, part):
            return f"{path}.{part}: no such public name"
        target, path = getattr(target, part), f"{path}.{part}"
        if not isinstance(target, types.ModuleType):
            return None
    return None


def test_an_unreachable_or_second_route_name_is_caught():
    assert unreachable(".table1.recommendation_table") is None
    assert unreachable(".plotting.BOOK_WIDTH") is None and unreachable(".campbell.LAMBDA") is None
    assert "not in hb.table1.__all__" in unreachable(".table1.rules.recommend")
    assert "not in hb.common.__all__" in unreachable(".common.plotting.BOOK_WIDTH")
    assert "not in hb.fidelity.__all__" in unreachable(".fidelity.no_such_thing")
    assert "not in hb.__all__" in unreachable(".recommendations")


@pytest.mark.parametrize("page", NOTEBOOKS)
def test_library_as_hh_and_experiments_as_hb(page):
    import hitchhiker

    library = set(hitchhiker.__all__) | LIBRARY_MODULES
    code = code_of(page)
    wrong_hh = sorted(set(re.findall(r"\bhh\.(\w+)", code)) - library)
    assert not wrong_hh, f"{page}: hh.{wrong_hh} are not library names (experiments are hb.*)"
    wrong_hb = sorted(filter(None, (unreachable(chain) for chain in set(HB_CHAIN.findall(code)))))
    assert not wrong_hb, f"{page}: names not on the book's one public route: {wrong_hb}"
    pre_split = "|".join(sorted(PRE_SPLIT_MODULES))
    old = re.findall(rf"^\s*(?:from|import) hitchhiker\.({pre_split})\b", code, re.M)
    old += re.findall(rf"^\s*from hitchhiker import ({pre_split})\b", code, re.M)
    assert not old, f"{page}: imports book modules from their pre-split paths: {old} (use hb.<subpackage>)"
    if page not in FROM_IMPORTS_PENDING:
        around = re.findall(r"^\s*(?:from hitchhiker\.book\S* import .*|import hitchhiker\.book\S*|"
                            r"from hitchhiker import book\b(?! as hb$).*)$", code, re.M)
        assert not around, f"{page}: goes around the front door: {around} (use hb.<subpackage>.<name>)"
    if re.search(r"\bhh\.", code):
        assert re.search(r"^import hitchhiker as hh$", code, re.M), f"{page}: uses hh. without importing it"
    if re.search(r"\bhb\.", code):
        assert re.search(r"^from hitchhiker import book as hb$", code, re.M), \
            f"{page}: uses hb. without `from hitchhiker import book as hb`"


def test_pending_pages_still_need_their_exemption():
    """A page that no longer goes around the front door must leave :data:`FROM_IMPORTS_PENDING`."""
    for page in FROM_IMPORTS_PENDING:
        assert re.search(r"^\s*from hitchhiker\.book\S* import ", code_of(page), re.M), \
            f"{page} no longer imports from hitchhiker.book.*: remove it from FROM_IMPORTS_PENDING"


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


def test_every_page_reads_without_sideways_scrolling_or_visible_nbval_markers():
    """tools/nb_tags.py --check: no visible code line wider than the column, no ``# NBVAL_*`` comment
    (markers are cell tags), every figure's plotting code behind a toggle."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    pages = sorted(str(p) for p in (root / "book").glob("*.ipynb"))
    result = subprocess.run([sys.executable, str(root / "tools" / "nb_tags.py"), "--check", *pages],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_old_page_addresses_forward_to_pages_of_the_book():
    """The pages were renumbered in reading order; each old address is a redirect stub to a page in
    the table of contents (so links into the book keep working)."""
    toc = Path(ROOT / "_toc.yml").read_text()
    stubs = sorted((ROOT / "book" / "_redirects" / "book").glob("*.html"))
    assert stubs
    for stub in stubs:
        target = re.search(r'http-equiv="refresh" content="0; url=([\w.]+)\.html"', stub.read_text())
        assert target, stub
        assert f"file: book/{target.group(1)}\n" in toc, (stub.name, target.group(1))
        assert f"file: book/{stub.stem}\n" not in toc, f"{stub.name} shadows a page of the book"
