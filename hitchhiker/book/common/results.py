"""The numbers behind each evidence chapter's figures, stored as ``book/results/<name>.csv``.

Chapters write them at default or paper scale only (a smoke run never overwrites them); the
recommendations chapter reads them back.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .runtime import results_dir
from .scale import writes_results


def save_results(table, name: str, directory: str | Path | None = None) -> Path | None:
    """Write ``table`` (a DataFrame or a list of row dicts) to ``<results>/<name>.csv``.

    Returns the path written, or ``None`` at smoke scale (nothing is written then).
    """
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    if not writes_results():
        return None
    folder = Path(directory) if directory is not None else results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False, float_format="%.6g")
    return path


def load_results(name: str, directory: str | Path | None = None) -> pd.DataFrame:
    """Read ``<results>/<name>.csv``; a missing file raises ``FileNotFoundError`` naming the path."""
    folder = Path(directory) if directory is not None else results_dir()
    path = folder / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no results file at {path}: run the chapter that writes "
                                f"'{name}' at default or paper scale first")
    return pd.read_csv(path)
