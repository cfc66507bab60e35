"""Sphinx support for ``book/api.md``: every module documented, every object exactly once.

* The page documents two packages, each with one ``automodule`` directive with ``:imported-members:``:
  the library, :mod:`hitchhiker` (the names in ``hitchhiker.__all__``), and the book's experiments,
  :mod:`hitchhiker.book` (the names in ``hitchhiker.book.__all__``).
* The ``api-submodules`` directive (argument: a package, default ``hitchhiker``) expands to one
  ``automodule`` section per public module of that package, found by :mod:`pkgutil` at build time, so
  a new module appears on the page without editing it. ``hitchhiker.book`` is left out of the library's
  list (it has its own part of the page); the experiments' subpackages are walked.
* The ``autodoc-skip-member`` hook keeps an object re-exported by a package out of its module's
  section (it would otherwise be documented twice, as ``hitchhiker.RelaxedPoisson`` and
  ``hitchhiker.distributions.RelaxedPoisson``); the module sections keep their other members. It
  also leaves out class attributes that are other libraries' functions (a namespace class with
  ``cos = staticmethod(sympy.cos)``), whose docstrings are that library's to document.
"""
from __future__ import annotations

import importlib
import pkgutil

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = "hitchhiker"
#: The packages whose ``__all__`` the page documents in their own sections.
DOCUMENTED_PACKAGES = ("hitchhiker", "hitchhiker.book")


def public_objects(package_name: str = PACKAGE) -> dict:
    """``{name: object}`` for the names a package exports in ``__all__``."""
    package = importlib.import_module(package_name)
    return {name: getattr(package, name) for name in getattr(package, "__all__", ())}


def _foreign_callable(obj) -> bool:
    """A function or class defined outside the package (``sin = staticmethod(sympy.sin)`` in a class)."""
    target = getattr(obj, "__func__", obj)  # staticmethod / classmethod wrappers
    if not (callable(target) or isinstance(obj, (staticmethod, classmethod))):
        return False
    module = getattr(target, "__module__", None) or ""
    return module.split(".")[0] != PACKAGE


def skip_reexported(app, what, name, obj, skip, options):
    """``autodoc-skip-member``: in a module section, skip what a package section documents; in a
    class, skip attributes that are another library's functions (their docstrings belong to that
    library's documentation and are not written for this page's -W build)."""
    if what == "class" and _foreign_callable(obj):
        return True
    if what != "module" or options.get("imported-members"):
        return None  # a package section itself (or not a module member): autodoc decides
    for package in DOCUMENTED_PACKAGES:
        public = public_objects(package)
        if name in public and public[name] is obj:
            return True
    return None


def public_submodules(package_name: str = PACKAGE) -> list[str]:
    """Full names of a package's modules whose names do not start with ``_``. The library's own
    subpackage (``hitchhiker.book``) is left out; below it, the experiments' subpackages
    (``hitchhiker.book.pvae``, ...) are walked, so each of their modules gets a section."""
    package = importlib.import_module(package_name)
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        name = f"{package_name}.{info.name}"
        if not info.ispkg:
            names.append(name)
        elif package_name != PACKAGE:
            names += public_submodules(name)
    return sorted(names)


class ApiSubmodules(SphinxDirective):
    """``api-submodules [package]``: a section with ``automodule:: <name>`` and ``:members:`` per module."""

    has_content = False
    optional_arguments = 1

    def run(self):
        package = self.arguments[0] if self.arguments else PACKAGE
        lines = []
        for name in public_submodules(package):
            lines += [f"``{name}``", "-" * (len(name) + 4), "",
                      f".. automodule:: {name}", "   :members:", "   :show-inheritance:", ""]
        container = nodes.section()
        container.document = self.state.document
        nested_parse_with_titles(self.state, StringList(lines, source="api-submodules"), container)
        return container.children


def setup(app):
    app.connect("autodoc-skip-member", skip_reexported)
    app.add_directive("api-submodules", ApiSubmodules)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
