"""Run by `make core` inside a fresh venv holding only torch and the wheel (no extras).

Fails when the wheel dragged in a book package, when `hitchhiker` is imported from anywhere but the
installed wheel, or when the wheel lacks its license or type marker.
"""
import importlib.metadata as metadata
import pathlib
import sys

BOOK_ONLY = ("pandas", "matplotlib", "scipy", "scikit-image", "tqdm", "jupyter-book", "nbval")

installed = {dist.metadata["Name"].lower() for dist in metadata.distributions()}
leaked = sorted(name for name in BOOK_ONLY if name in installed)
if leaked:
    sys.exit(f"a plain install of the wheel pulled in book packages: {leaked}")

import hitchhiker  # noqa: E402

location = pathlib.Path(hitchhiker.__file__).resolve()
if "site-packages" not in location.parts:
    sys.exit(f"hitchhiker was imported from {location}, not from the installed wheel")
if not (location.parent / "py.typed").is_file():
    sys.exit("the wheel has no hitchhiker/py.typed")
dist = metadata.distribution("poisson-hitchhiker")
if dist.version != hitchhiker.__version__:
    sys.exit(f"wheel version {dist.version} != hitchhiker.__version__ {hitchhiker.__version__}")
if not any(pathlib.PurePath(str(f)).name == "LICENSE" for f in dist.files or ()):
    sys.exit("the wheel carries no LICENSE file")
print(f"core install ok: poisson-hitchhiker {dist.version} from {location.parent}, "
      f"{len(installed)} distributions, none of {BOOK_ONLY}")
