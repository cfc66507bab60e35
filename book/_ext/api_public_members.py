"""Sphinx support for ``book/api.md``: every module documented, every object exactly once.

* The page has one ``automodule:: hitchhiker`` directive with ``:imported-members:``: it documents
  the names in ``hitchhiker.__all__``.
* The ``api-submodules`` directive expands to one ``automodule`` section per public submodule, found
  by :mod:`pkgutil` at build time, so a new module appears on the page without editing it.
* The ``autodoc-skip-member`` hook keeps an object re-exported by the package out of its submodule's
  section (it would otherwise be documented twice, as ``hitchhiker.RelaxedPoisson`` and
  ``hitchhiker.samplers.RelaxedPoisson``); the submodule sections keep their other members.
"""
from __future__ import annotations

import importlib
import pkgutil

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

PACKAGE = "hitchhiker"


def public_objects() -> dict:
    """``{name: object}`` for the names the package exports in ``__all__``."""
    package = importlib.import_module(PACKAGE)
    return {name: getattr(package, name) for name in getattr(package, "__all__", ())}


def skip_reexported(app, what, name, obj, skip, options):
    """``autodoc-skip-member``: in a submodule section, skip what the package section documents."""
    if what != "module" or options.get("imported-members"):
        return None  # the package section itself (or not a module member): autodoc decides
    public = public_objects()
    if name in public and public[name] is obj:
        return True
    return None


def public_submodules() -> list[str]:
    """Full names of the package's submodules whose names do not start with an underscore."""
    package = importlib.import_module(PACKAGE)
    return sorted(f"{PACKAGE}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
                  if not info.name.startswith("_"))


class ApiSubmodules(SphinxDirective):
    """``api-submodules``: a section with ``automodule:: <name>`` and ``:members:`` per submodule."""

    has_content = False

    def run(self):
        lines = []
        for name in public_submodules():
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
