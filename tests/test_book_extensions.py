"""The two local Sphinx extensions in book/_ext (the API page and the script de-duplication)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))

import api_public_members  # noqa: E402
import book_html_fixes  # noqa: E402
import hitchhiker  # noqa: E402
from hitchhiker import samplers  # noqa: E402


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


def test_every_public_submodule_is_listed():
    names = api_public_members.public_submodules()
    assert "hitchhiker.samplers" in names and "hitchhiker.recommendations" in names
    assert not [n for n in names if n.split(".")[-1].startswith("_")]


def test_reexported_objects_are_skipped_only_in_submodule_sections():
    submodule_options, package_options = {"members": True}, {"members": True, "imported-members": True}
    skip = api_public_members.skip_reexported
    assert skip(None, "module", "RelaxedPoisson", samplers.RelaxedPoisson, False, submodule_options) is True
    assert skip(None, "module", "RelaxedPoisson", samplers.RelaxedPoisson, False, package_options) is None
    # a helper the package does not export stays in its module's section
    assert skip(None, "module", "eat_pathwise", samplers.eat_pathwise, False, submodule_options) is None
    assert "RelaxedPoisson" in hitchhiker.__all__ and "eat_pathwise" not in hitchhiker.__all__
