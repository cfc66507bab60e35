#!/usr/bin/env python3
"""Tidy a chapter notebook for the reader, editing its JSON only (stored outputs are kept).

For each code cell:

* nbval's ``# NBVAL_*`` comment lines become cell tags (nbval reads either):
  ``NBVAL_IGNORE_OUTPUT`` -> ``nbval-ignore-output``, ``NBVAL_CHECK_OUTPUT`` -> ``nbval-check-output``,
  ``NBVAL_SKIP`` -> ``nbval-skip``, ``NBVAL_RAISES_EXCEPTION`` -> ``raises-exception`` (which both nbval
  and myst-nb honour); the comment line is removed from the source;
* a tag spelled like a marker (``NBVAL_IGNORE_OUTPUT`` as a tag, which nbval does not read) becomes
  the marker's tag;
* the standard Colab install cell (``if "google.colab" in sys.modules: %pip install ...``) gets
  ``remove-cell``: it runs in Colab, where the notebook is opened, and the HTML page does not need
  its 100-character install line (the launch button is the way to Colab);
* a cell whose stored outputs hold a figure (``image/png`` or ``image/svg+xml``) gets ``hide-input``
  (its code behind a toggle), unless it already has ``remove-input``, ``remove-cell`` or
  ``show-input``, or it is listed with ``--keep-input INDEX`` (a cell that teaches through its code);
* code lines longer than ``--max-line`` characters (default 88: what fits the book's content column
  with its 12 px code font, book/_static/book.css) are reported, never rewritten: shorten them by
  hand (a formatter such as ``ruff format`` explodes calls over many lines and drops the ``;`` that
  keeps a figure's repr out of the output). Inside an exercise's solution (between a
  ``{solution-start}`` and a ``{solution-end}``) the column is narrower: 8 characters fewer.

Usage::

    python tools/nb_tags.py book/01_eat_relaxation.ipynb [more.ipynb ...]      # rewrite in place
    python tools/nb_tags.py --check book/*.ipynb      # change nothing; exit 1 if anything is left
    python tools/nb_tags.py --keep-input 13 book/01_eat_relaxation.ipynb

The file is written as the book's notebooks are (``json.dump(indent=1, ensure_ascii=False)`` and a
trailing newline), to a temporary file in the same folder and then ``os.replace``'d into place. A
notebook that nothing changes is not rewritten. Never run it on a notebook someone else is editing
at the same time: the rewrite would drop their edits.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

#: nbval comment markers and the cell tag each one becomes.
MARKER_TAGS = {
    "NBVAL_IGNORE_OUTPUT": "nbval-ignore-output",
    "NBVAL_CHECK_OUTPUT": "nbval-check-output",
    "NBVAL_SKIP": "nbval-skip",
    "NBVAL_RAISES_EXCEPTION": "raises-exception",
    "PYTEST_VALIDATE_IGNORE_OUTPUT": "nbval-ignore-output",
}
MARKER_LINE = re.compile(r"^\s*#\s*(" + "|".join(MARKER_TAGS) + r")\s*$")
COLAB_CELL = re.compile(r'^if "google\.colab" in sys\.modules:\n\s+%pip install', flags=re.M)
FIGURE_MIME = ("image/png", "image/svg+xml", "image/jpeg")
#: How many characters narrower the column is inside an exercise's solution (its admonition's padding).
SOLUTION_INDENT = 8
#: Tags that already decide how the input shows.
INPUT_TAGS = {"hide-input", "remove-input", "remove-cell", "show-input", "hide-cell"}


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _set_source(cell, text: str) -> None:
    """Store ``text`` as the notebook stores sources: a list of lines, each but the last ending in \\n."""
    lines = text.splitlines(keepends=True)
    cell["source"] = lines if isinstance(cell.get("source"), list) else text


def has_figure(cell) -> bool:
    return any(mime in output.get("data", {}) for output in cell.get("outputs", []) for mime in FIGURE_MIME)


def tidy_cell(cell, keep_input: bool = False) -> list[str]:
    """Apply the rules to one code cell in place; return what changed (for the log)."""
    changes = []
    tags = cell.setdefault("metadata", {}).get("tags", [])
    for i, tag in enumerate(list(tags)):
        if tag in MARKER_TAGS:
            tags[i] = MARKER_TAGS[tag]
            changes.append(f"tag {tag} -> tag {tags[i]}")
    tags[:] = list(dict.fromkeys(tags))
    if COLAB_CELL.search(_source(cell)) and not INPUT_TAGS & set(tags):
        tags.append("remove-cell")
        changes.append("Colab install cell -> tag remove-cell")
    kept, removed = [], []
    for line in _source(cell).splitlines(keepends=True):
        marker = MARKER_LINE.match(line)
        if marker:
            removed.append(marker.group(1))
        else:
            kept.append(line)
    for marker in removed:
        tag = MARKER_TAGS[marker]
        if tag not in tags:
            tags.append(tag)
        changes.append(f"# {marker} -> tag {tag}")
    if removed:
        text = "".join(kept)
        if text.endswith("\n"):        # a removed last line must not leave a trailing newline behind
            text = text[:-1]
        _set_source(cell, text)
    if has_figure(cell) and not keep_input and not INPUT_TAGS & set(tags):
        tags.append("hide-input")
        changes.append("figure -> tag hide-input")
    if tags:
        cell["metadata"]["tags"] = tags
    return changes


def long_lines(cell, limit: int) -> list[tuple[int, int]]:
    """``(line number, length)`` of every source line over ``limit`` characters."""
    return [(n, len(line)) for n, line in enumerate(_source(cell).splitlines(), 1) if len(line) > limit]


def write_notebook(path: Path, notebook: dict) -> None:
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def process(path: Path, check: bool, max_line: int, keep_input: set[int]) -> int:
    """Tidy (or, with ``check``, inspect) one notebook; return the number of problems left."""
    original = path.read_text(encoding="utf-8")
    notebook = json.loads(original)
    problems = 0
    in_solution = False
    for index, cell in enumerate(notebook["cells"]):
        if cell.get("cell_type") == "markdown":
            text = _source(cell)
            starts, ends = text.rfind("{solution-start}"), text.rfind("{solution-end}")
            if starts >= 0 or ends >= 0:
                in_solution = starts > ends
            continue
        if cell.get("cell_type") != "code":
            continue
        limit = max_line - SOLUTION_INDENT if in_solution else max_line
        if check:
            work = json.loads(json.dumps(cell))
            for change in tidy_cell(work, keep_input=index in keep_input):
                print(f"{path}:cell {index}: would apply {change}")
                problems += 1
        else:
            for change in tidy_cell(cell, keep_input=index in keep_input):
                print(f"{path}:cell {index}: {change}")
        tags = set(cell.get("metadata", {}).get("tags", []))
        if not tags & {"remove-input", "remove-cell"}:
            for line, length in long_lines(cell, limit):
                print(f"{path}:cell {index}: line {line} is {length} characters (> {limit}): shorten it")
                problems += 1
    if not check and json.dumps(notebook, indent=1, ensure_ascii=False) + "\n" != original:
        write_notebook(path, notebook)
        print(f"{path}: written")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if anything is left")
    parser.add_argument("--max-line", type=int, default=88, help="longest visible code line (default 88)")
    parser.add_argument("--keep-input", type=int, action="append", default=[], metavar="INDEX",
                        help="a figure cell (0-based cell index) whose code stays visible; repeatable")
    args = parser.parse_args(argv)
    problems = sum(process(path, args.check, args.max_line, set(args.keep_input)) for path in args.notebooks)
    if problems:
        print(f"{problems} thing(s) left to do", file=sys.stderr)
    return 1 if (problems and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
