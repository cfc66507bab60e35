"""The book's figure style: one place for fonts, sizes and the paper's method colours."""
from __future__ import annotations

import matplotlib as mpl

#: The paper's colours: EAT-sigmoid blue, EAT-cubic red, GSM green, score function gray, exact black.
METHOD_COLORS = {
    "eat-sigmoid": "#1f5fbf",
    "eat-cubic": "#d62728",
    "gsm": "#2ca02c",
    "score": "#7f7f7f",
    "exact": "#000000",
    "st-cubic": "#ff7f0e",
    "st-sigmoid": "#17becf",
    "eat-linear": "#9467bd",
    "eat-quintic": "#8c564b",
    "eat-cosine": "#e377c2",
}

METHOD_LABELS = {
    "eat-sigmoid": r"EAT$_\mathrm{sigmoid}$",
    "eat-cubic": r"EAT$_\mathrm{cubic}$",
    "gsm": "GSM",
    "score": "score function",
    "exact": "exact",
    "st-cubic": r"ST-EAT$_\mathrm{cubic}$",
    "st-sigmoid": r"ST-EAT$_\mathrm{sigmoid}$",
    "eat-linear": r"EAT$_\mathrm{linear}$",
    "eat-quintic": r"EAT$_\mathrm{quintic}$",
    "eat-cosine": r"EAT$_\mathrm{cosine}$",
}

#: Width of a full-width figure in the rendered book, inches.
BOOK_WIDTH = 7.5

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "figure.figsize": (BOOK_WIDTH, 3.2),
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.6,
    "figure.constrained_layout.use": True,
}


def use_book_style() -> None:
    """Apply the book's matplotlib style globally."""
    mpl.rcParams.update(STYLE)


def method_color(method: str) -> str:
    """Colour for a method name (unknown names get matplotlib's default cycle colour)."""
    return METHOD_COLORS.get(method, "C0")


def method_label(method: str) -> str:
    """Legend label for a method name."""
    return METHOD_LABELS.get(method, method)


def method_style(method: str, **overrides) -> dict:
    """Keyword arguments for ``plot``/``errorbar``: colour and label of a method."""
    return {"color": method_color(method), "label": method_label(method), **overrides}
