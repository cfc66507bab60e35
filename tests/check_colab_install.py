"""Run by `make colab` inside a fresh venv: the book installed over Colab's preloaded packages.

``python tests/check_colab_install.py envs/colab.txt`` (standard library only, run by the venv's python):

1. checks that this interpreter is the Python the versions file names;
2. installs the preloaded packages at the file's versions (Colab's runtime, as far as the book uses it);
3. installs the book exactly as a chapter's first cell does -- the ``%pip install`` line of the
   chapters, with its ``git+`` URL replaced by this checkout -- and fails if that install upgraded,
   downgraded or removed any package that was there before it (in Colab that means a "restart the
   runtime" prompt and, if ignored, binary-incompatible modules);
4. installs the test runner (nbval, pytest; Colab does not preload them) and fails the same way;
5. checks that a kernel started in ``book/`` imports ``hitchhiker`` from the installed copy.
"""
from __future__ import annotations

import json
import pathlib
import re
import shlex
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER = ["nbval", "pytest"]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def read_versions(path: pathlib.Path) -> tuple[str, dict[str, str]]:
    """The Python version and the ``{name: version}`` pins of the versions file (``name==version`` lines)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        if match is None:
            sys.exit(f"{path}:{number}: expected name==version, got {raw!r}")
        pins[canonical(match[1])] = match[2]
    if "python" not in pins:
        sys.exit(f"{path}: no python==X.Y line")
    return pins.pop("python"), pins


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    out = subprocess.run([sys.executable, "-m", "pip", "list", "--format=json"], check=True,
                         capture_output=True, text=True).stdout
    return {canonical(d["name"]): d["version"] for d in json.loads(out)}


def pip_install(args: list[str]) -> None:
    print("+ pip install", shlex.join(args), flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", *args], check=True)


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Every package of ``before`` that ``after`` holds at another version, or not at all."""
    return [f"{name} {version} -> {after.get(name, 'removed')}" for name, version in sorted(before.items())
            if after.get(name) != version]


def chapters_install_line() -> list[str]:
    """The arguments of the ``%pip install`` line in the chapters' first code cell (all must agree)."""
    lines = set()
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
        source = "".join(cells[0]["source"]) if cells else ""
        found = [ln.strip() for ln in source.splitlines() if ln.strip().startswith("%pip install")]
        if len(found) != 1:
            sys.exit(f"{notebook.name}: the first code cell has {len(found)} '%pip install' lines, not 1")
        lines.add(found[0])
    if len(lines) != 1:
        sys.exit(f"the chapters install the book in different ways: {sorted(lines)}")
    args = shlex.split(lines.pop())[2:]
    specs = [a for a in args if re.search(r"@\s*git\+", a)]
    if len(specs) != 1:
        sys.exit(f"expected one 'name @ git+URL' requirement in the chapters' install line, got {args}")
    local = re.sub(r"@\s*git\+\S+$", f"@ {ROOT.as_uri()}", specs[0])
    return [local if a == specs[0] else a for a in args]


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    versions_file = pathlib.Path(sys.argv[1])
    python, pins = read_versions(versions_file)
    here = "{}.{}".format(*sys.version_info[:2])
    if here != python:
        sys.exit(f"{versions_file} names Python {python}; this venv runs Python {here} ({sys.executable})")

    pip_install(["--quiet", *(f"{name}=={version}" for name, version in pins.items())])
    preloaded = installed()
    wrong = [f"{name}=={version} (installed: {preloaded.get(name, 'none')})" for name, version in pins.items()
             if preloaded.get(name) != version]
    if wrong:
        sys.exit(f"the runtime does not hold the versions of {versions_file}: {wrong}")
    print(f"runtime: Python {sys.version.split()[0]}, {len(preloaded)} distributions, "
          + ", ".join(f"{name} {version}" for name, version in pins.items()), flush=True)

    pip_install(chapters_install_line())
    after = installed()
    moved = changed(preloaded, after)
    if moved:
        sys.exit("installing the book the way the chapters do changes packages Colab preloads "
                 "(a runtime restart there): " + "; ".join(moved))
    added = sorted(set(after) - set(preloaded))
    print(f"the chapters' install changed no preloaded package; it added {', '.join(added)}", flush=True)

    pip_install(["--quiet", *RUNNER])
    moved = changed(after, installed())
    if moved:
        sys.exit(f"installing the test runner {RUNNER} changes the runtime it tests: " + "; ".join(moved))

    probe = ("import hitchhiker, hitchhiker.book, importlib.metadata as m; "
             "print(hitchhiker.__file__, m.version('poisson-hitchhiker'))")
    where, version = subprocess.run([sys.executable, "-c", probe], cwd=ROOT / "book", check=True,
                                    capture_output=True, text=True).stdout.split()
    if "site-packages" not in pathlib.Path(where).parts:
        sys.exit(f"a kernel in book/ imports hitchhiker from {where}, not from the installed package")
    print(f"colab install ok: poisson-hitchhiker {version} from {pathlib.Path(where).parent}")


if __name__ == "__main__":
    main()
