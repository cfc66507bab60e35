"""After ``jupyter-book build``: every file in ``_toc.yml`` must have produced its HTML page, and every
link between the book's pages must land on a page and an anchor that exist (the glossary's terms, the
exercises' solutions, the bibliography, ...)."""
from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files(node) -> list[str]:
    """All ``file:``/``root:`` entries of a jb-book table of contents, depth first."""
    found = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if key in node:
                found.append(node[key])
        for value in node.values():
            if isinstance(value, (list, dict)):
                found += toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += toc_files(item)
    return found


HREF = re.compile(r'<a\s[^>]*href="([^"]+)"', flags=re.I)
ANCHOR = re.compile(r'\sid="([^"]+)"')
#: Folders of the build that hold assets, not pages.
ASSET_DIRS = {"_static", "_sources", "_images", "_downloads", "_panels_static"}


def broken_links(build: Path) -> list[str]:
    """``page: href`` for each internal link whose file or ``#anchor`` does not exist in ``build``."""
    pages = [p for p in sorted(build.rglob("*.html")) if p.relative_to(build).parts[0] not in ASSET_DIRS]
    anchors: dict[Path, set] = {}

    def ids(path: Path) -> set:
        if path not in anchors:
            anchors[path] = set(ANCHOR.findall(path.read_text(encoding="utf-8", errors="replace")))
        return anchors[path]

    broken = []
    for page in pages:
        for href in HREF.findall(page.read_text(encoding="utf-8", errors="replace")):
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(build)}: {href} (no such file)")
            elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in ids(target):
                broken.append(f"{page.relative_to(build)}: {href} (no such anchor)")
    return sorted(set(broken))


def main(build: Path = ROOT / "_build" / "html") -> int:
    files = toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    missing = [f for f in files if not (build / f"{Path(f).with_suffix('')}.html").is_file()]
    for f in files:
        print(("MISSING " if f in missing else "ok      ") + f)
    if missing:
        print(f"{len(missing)} of {len(files)} pages were not built", file=sys.stderr)
        return 1
    print(f"all {len(files)} pages built")
    broken = broken_links(build)
    for link in broken:
        print("BROKEN  " + link)
    if broken:
        print(f"{len(broken)} internal links lead nowhere", file=sys.stderr)
        return 1
    print("every internal link lands on an existing page and anchor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
