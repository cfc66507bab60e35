"""Small repairs to the HTML that the Jupyter Book 1.x theme stack emits, found by the browser test.

``sphinx-thebe`` and ``sphinx-togglebutton`` register their inline configuration scripts twice (the
second copy of ``const THEBE_JS_URL = ...`` is a JavaScript ``SyntaxError`` on every page). This
extension drops repeated ``<script>`` entries from each page's context before it is rendered.
"""
from __future__ import annotations


def script_key(script) -> tuple:
    """What makes two script entries the same tag: the file and the attributes (inline body included)."""
    filename = getattr(script, "filename", script) or ""  # inline scripts: None or "", both seen
    attributes = getattr(script, "attributes", {}) or {}
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def drop_duplicate_scripts(app, pagename, templatename, context, doctree):
    """``html-page-context``: keep the first of each identical script tag."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
