"""After ``jupyter-book build``: every file in ``_toc.yml`` must have produced its HTML page."""
from __future__ import annotations

import sys
from pathlib import Path

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


def main(build: Path = ROOT / "_build" / "html") -> int:
    files = toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    missing = [f for f in files if not (build / f"{Path(f).with_suffix('')}.html").is_file()]
    for f in files:
        print(("MISSING " if f in missing else "ok      ") + f)
    if missing:
        print(f"{len(missing)} of {len(files)} pages were not built", file=sys.stderr)
        return 1
    print(f"all {len(files)} pages built")
    return 0


if __name__ == "__main__":
    sys.exit(main())
