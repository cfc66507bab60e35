"""The numbers behind each evidence chapter's figures, stored as ``book/results/<name>.csv``.

Chapters write them at default or paper scale only (a smoke run never overwrites them); the
recommendations chapter reads them back.

* :func:`save_results` never leaves a half-written file: it writes a unique temporary file in the
  same directory and renames it into place (:func:`os.replace`, atomic on one file system), so a
  kill during a rewrite leaves the previous file as it was.
* :func:`load_results` refuses a file that is not a whole table: a last line cut short (the writer
  always ends with a newline), a row with another number of fields than the header, a table without
  rows, or a known table (:data:`REQUIRED_COLUMNS`) without the columns its readers use. The error
  names the file.

>>> import os, tempfile
>>> folder, scale = tempfile.mkdtemp(), os.environ.get("HITCHHIKER_SCALE")
>>> os.environ["HITCHHIKER_SCALE"] = "default"            # smoke scale writes nothing
>>> save_results([{"method": "eat-cubic", "value": 0.5}], "demo", folder).name
'demo.csv'
>>> load_results("demo", folder)
      method  value
0  eat-cubic    0.5
>>> _ = os.environ.pop("HITCHHIKER_SCALE") if scale is None else os.environ.update(HITCHHIKER_SCALE=scale)
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from .checkpoint import atomic_write
from .runtime import results_dir
from .scale import writes_results

#: The columns each table's readers use: a stored table lacking one is refused by :func:`load_results`.
REQUIRED_COLUMNS = {
    "fidelity": ("method", "rate", "temperature", "mean_ratio", "var_ratio"),
    "gradients": ("method", "rate", "temperature", "bias_energy", "noise_energy"),
    "pvae": ("method", "temperature", "val_nelbo"),
    "poglm": ("method", "temperature", "test_elbo"),
    "generalization": ("family", "regime", "method", "temperature", "test_elbo"),
    "generalization_controls": ("experiment", "family", "regime", "method", "temperature", "n_samples",
                                "seed", "test_elbo", "log_likelihood"),
    "costs": ("method", "rate", "temperature", "time_ms"),
}
#: Columns renamed since the stored files were written, ``{table: {stored name: name in the code}}``;
#: :func:`load_results` maps them on reading. ``rel_bias`` was the *unsquared* bias ratio
#: :math:`\lVert b\rVert/\lVert g^*\rVert`, now ``bias_ratio`` (apart from the library's squared
#: ``relative_bias`` of :mod:`hitchhiker.diagnostics`).
RENAMED_COLUMNS = {
    "gradients": {"rel_bias": "bias_ratio", "rel_bias_sd": "bias_ratio_sd",
                  "rel_bias_exact": "bias_ratio_exact"},
}


def _path(name: str, directory) -> Path:
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        raise ValueError(f"name must be a plain file stem such as 'fidelity', got {name!r}")
    folder = Path(directory) if directory is not None else results_dir()
    return folder / f"{name}.csv"


def save_results(table, name: str, directory: str | Path | None = None) -> Path | None:
    """Write ``table`` (a DataFrame or a list of row dicts) to ``<results>/<name>.csv``, atomically.

    Returns the path written, or ``None`` at smoke scale (nothing is written then). The file is
    written to a unique temporary name in the same directory and renamed into place; on any error the
    temporary file is removed and the previous file is left intact.
    """
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    path = _path(name, directory)
    if not writes_results():
        return None
    if frame.columns.empty:
        raise ValueError(f"refusing to write {path}: the table has no columns")
    atomic_write(path, lambda file: frame.to_csv(file, index=False, float_format="%.6g"), mode="w")
    return path


def _check_whole_table(path: Path, text: str) -> None:
    if not text.strip():
        raise ValueError(f"results file {path} is empty")
    if not text.endswith("\n"):
        raise ValueError(f"results file {path} is truncated: its last line has no end "
                         "(a write was interrupted?)")
    rows = list(csv.reader(io.StringIO(text)))
    width = len(rows[0])
    bad = [i + 1 for i, row in enumerate(rows) if row and len(row) != width]
    if bad:
        raise ValueError(f"results file {path} is malformed: line {bad[0]} has {len(rows[bad[0] - 1])} "
                         f"fields where the header has {width}")
    if len(rows) < 2:
        raise ValueError(f"results file {path} has a header but no rows")


def load_results(name: str, directory: str | Path | None = None) -> pd.DataFrame:
    """Read ``<results>/<name>.csv``, refusing a damaged file with a ``ValueError`` naming it.

    A missing file raises ``FileNotFoundError`` naming the path. Columns renamed since the file was
    written (:data:`RENAMED_COLUMNS`) are read under their current names.
    """
    path = _path(name, directory)
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}: run the chapter that writes "
                                f"'{name}' at default or paper scale first")
    text = path.read_text()
    _check_whole_table(path, text)
    frame = pd.read_csv(io.StringIO(text)).rename(columns=RENAMED_COLUMNS.get(name, {}))
    missing = [c for c in REQUIRED_COLUMNS.get(name, ()) if c not in frame.columns]
    if missing:
        raise ValueError(f"results file {path} lacks the columns {missing} of the '{name}' table "
                         f"(it has {list(frame.columns)})")
    return frame
