"""The library stands alone: `import hitchhiker` loads torch (and numpy), never the book's packages."""
import ast
import json
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "hitchhiker"
BOOK_ONLY = ("pandas", "matplotlib", "scipy", "sympy", "tqdm", "skimage")


def _fresh_import(code: str) -> dict:
    """In a clean interpreter: ``import torch``, note ``sys.modules``, ``import hitchhiker``, run ``code``
    (which prints a JSON result; ``before`` holds the modules that torch alone loaded)."""
    prelude = "import json, sys\nimport torch\nbefore = set(sys.modules)\nimport hitchhiker\n"
    out = subprocess.run([sys.executable, "-c", prelude + code],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_loads_no_book_package():
    """Nothing of the book's packages beyond what torch itself loads (torch.hub imports tqdm when it
    is installed), and never hitchhiker.book."""
    loaded = _fresh_import(
        f"print(json.dumps(sorted(m for m in set(sys.modules) - before "
        f"if m.split('.')[0] in {BOOK_ONLY!r} or m.startswith('hitchhiker.book'))))")
    assert loaded == [], f"import hitchhiker loaded {loaded}"


def test_import_loads_none_of_the_heavy_book_packages_at_all():
    heavy = [name for name in BOOK_ONLY if name != "tqdm"]
    loaded = _fresh_import(
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})))")
    assert loaded == [], f"import torch, hitchhiker loaded {loaded}"


def test_public_names_exist():
    result = _fresh_import(
        "print(json.dumps({'missing': [n for n in hitchhiker.__all__ if not hasattr(hitchhiker, n)],"
        " 'dupes': len(hitchhiker.__all__) - len(set(hitchhiker.__all__)),"
        " 'version': hasattr(hitchhiker, '__version__')}))")
    assert result == {"missing": [], "dupes": 0, "version": True}


def _imports(path: pathlib.Path, source: str | None = None):
    """(module, line) of every import in a source file, relative ones resolved against the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = parts[:-1]  # the package a module (or an __init__) resolves `.` against
    source = path.read_text() if source is None else source
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ((node.module,) if node.module else ()))
            else:
                module = node.module or ""
            yield module, node.lineno
            for alias in node.names:  # `from . import book` / `from hitchhiker import book`
                yield f"{module}.{alias.name}", node.lineno


LIBRARY_FILES = sorted(p for p in PACKAGE.glob("*.py"))


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.name)
def test_library_never_imports_the_book(path):
    """The door opens one way: no library module imports hitchhiker.book, even lazily in a function."""
    bad = [(m, line) for m, line in _imports(path)
           if m == "hitchhiker.book" or m.startswith("hitchhiker.book.")]
    assert not bad, f"{path.name} imports the book: {bad}"


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: p.name)
def test_library_imports_no_book_package_at_module_level(path):
    """Module-level imports of the library name only the standard library, torch, numpy, itself."""
    tree = ast.parse(path.read_text(), str(path))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in top if isinstance(n, ast.ImportFrom) and not n.level and n.module]
    bad = [n for n in names if n.split(".")[0] in BOOK_ONLY]
    assert not bad, f"{path.name} imports {bad} at module level"


def test_the_static_check_sees_relative_imports():
    """The check above would catch `from .book import x` and `from . import book` (self-test)."""
    found = [m for m, _ in _imports(PACKAGE / "estimators.py", "from .book import fit\nfrom . import book\n")]
    assert "hitchhiker.book" in found and "hitchhiker.book.fit" in found
    found = [m for m, _ in _imports(PACKAGE / "book" / "vae.py", "from ..estimators import METHODS\n")]
    assert found == ["hitchhiker.estimators", "hitchhiker.estimators.METHODS"]
