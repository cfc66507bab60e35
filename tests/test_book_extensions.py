"""The two local Sphinx extensions in book/_ext (the API page and the script de-duplication)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))

import api_public_members  # noqa: E402
import book_html_fixes  # noqa: E402

import hitchhiker  # noqa: E402
import hitchhiker.book  # noqa: E402
from hitchhiker import distributions  # noqa: E402


def script(filename, **attributes):
    return SimpleNamespace(filename=filename, attributes=attributes)


def test_duplicate_inline_scripts_are_dropped_in_order():
    thebe = 'const THEBE_JS_URL = "x"'
    scripts = [script("a.js"), script(None, body=thebe), script("b.js", **{"async": "async"}),
               script("", body=thebe), script("a.js"), script("b.js")]
    context = {"script_files": scripts}
    book_html_fixes.drop_duplicate_scripts(None, "page", "page.html", context, None)
    kept = context["script_files"]
    assert kept is scripts  # edited in place, as Sphinx renders that list
    assert [(s.filename, s.attributes) for s in kept] == [
        ("a.js", {}), (None, {"body": thebe}), ("b.js", {"async": "async"}), ("b.js", {})]


def test_pages_without_scripts_are_left_alone():
    context = {}
    book_html_fixes.drop_duplicate_scripts(None, "page", "page.html", context, None)
    assert context == {}


def test_every_public_submodule_is_listed_in_its_part():
    library = api_public_members.public_submodules("hitchhiker")
    assert "hitchhiker.distributions" in library and "hitchhiker.estimators" in library
    assert "hitchhiker.book" not in library  # the subpackage has its own part of the page
    assert not [n for n in library if n.startswith("hitchhiker.book")]
    book = api_public_members.public_submodules("hitchhiker.book")
    assert "hitchhiker.book.table1.rules" in book and "hitchhiker.book.pvae.model" in book
    assert "hitchhiker.book.common.training" in book and "hitchhiker.book.campbell" in book
    for split in ("table1.evidence", "table1.guide", "fidelity.official", "common.rating", "common.results"):
        assert f"hitchhiker.book.{split}" in book, split
    for names in (library, book):
        assert not [n for n in names if n.split(".")[-1].startswith("_")]
    assert api_public_members.public_submodules() == library  # the default package is the library


def test_reexported_objects_are_skipped_only_in_submodule_sections():
    submodule_options, package_options = {"members": True}, {"members": True, "imported-members": True}
    skip = api_public_members.skip_reexported
    rp = distributions.RelaxedPoisson
    assert skip(None, "module", "RelaxedPoisson", rp, False, submodule_options) is True
    assert skip(None, "module", "RelaxedPoisson", rp, False, package_options) is None
    # a helper the package does not export stays in its module's section
    helper = distributions.default_n_categories
    assert skip(None, "module", "default_n_categories", helper, False, submodule_options) is None
    assert "RelaxedPoisson" in hitchhiker.__all__ and "default_n_categories" not in hitchhiker.__all__
    # the same for the book: save_results is documented under hitchhiker.book, writes_results under
    # its module (hitchhiker.book.common.scale)
    from hitchhiker.book.common import results, scale

    assert skip(None, "module", "save_results", results.save_results, False, submodule_options) is True
    assert skip(None, "module", "save_results", results.save_results, False, package_options) is None
    assert skip(None, "module", "writes_results", scale.writes_results, False, submodule_options) is None
    assert "save_results" in hitchhiker.book.__all__ and "writes_results" not in hitchhiker.book.__all__
    # a name that only matches, not the same object, is not skipped
    assert skip(None, "module", "save_results", object(), False, submodule_options) is None


def test_foreign_functions_in_classes_are_skipped():
    import torch

    skip = api_public_members.skip_reexported
    assert skip(None, "class", "sin", staticmethod(torch.sin), False, {}) is True
    assert skip(None, "class", "sin", torch.sin, False, {}) is True
    # the package's own methods and plain data attributes stay
    assert skip(None, "class", "rsample", distributions.RelaxedPoisson.rsample, False, {}) is None
    assert skip(None, "class", "has_rsample", True, False, {}) is None
    assert skip(None, "class", "dtype", torch.float64, False, {}) is None
