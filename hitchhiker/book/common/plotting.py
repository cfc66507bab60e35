"""The book's figure style: one place for fonts, sizes, the paper's method colours and line styles.

Figures are sized for the book's content column (:data:`BOOK_WIDTH` inches, about 676 CSS pixels at a
1280-pixel-wide window): a figure that wide with text no smaller than :data:`MIN_FONT_PT` shows its
smallest text at about 9 px. Inside Jupyter, :func:`use_book_style` also stores each figure's smallest
font size (points) in its PNG under :data:`FONT_METADATA_KEY`; the browser test reads it, with the
PNG's dpi and its rendered width, to check that no figure's text is displayed under about 8 px.
"""
from __future__ import annotations

import matplotlib as mpl
from matplotlib.colors import LinearSegmentedColormap

from ...estimators import PAPER_METHODS

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

#: Line styles: solid for the paper's methods; a distinct dash wherever two methods can overlap
#: (straight-through draws exactly the gradient of its EAT method, so ST-cubic lies on EAT-cubic).
METHOD_LINESTYLES = {
    "st-cubic": (0, (4, 2)),
    "st-sigmoid": (0, (4, 2)),
    "eat-linear": (0, (1, 1.5)),
    "eat-quintic": (0, (6, 1.5, 1, 1.5)),
    "eat-cosine": (0, (3, 1, 1, 1, 1, 1)),
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
#: The smallest font size (points) the style uses; at BOOK_WIDTH it renders at about 9 px.
MIN_FONT_PT = 8.5
#: The PNG text key under which a figure's smallest font size (points) is stored.
FONT_METADATA_KEY = "hitchhiker:min_font_pt"

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "figure.figsize": (BOOK_WIDTH, 3.2),
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "figure.titlesize": 10.5,
    "legend.fontsize": MIN_FONT_PT,
    "legend.title_fontsize": MIN_FONT_PT,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "lines.linewidth": 1.6,
    "figure.constrained_layout.use": True,
}


#: A light-to-dark scale for ratings and errors: light is good (small error), dark is poor, as a
#: reader expects of a heat map of "how much is wrong". Use it with ``vmin`` at the good end.
RATING_CMAP = LinearSegmentedColormap.from_list("hitchhiker-rating", ["#f7f7f7", "#fdd49e", "#ef6548",
                                                                      "#7f0000"])


def use_book_style() -> None:
    """Apply the book's matplotlib style globally (and, inside IPython, tag each figure's PNG with its
    smallest font size, :data:`FONT_METADATA_KEY`)."""
    mpl.rcParams.update(STYLE)
    _tag_inline_figures()


def smallest_font_pt(fig) -> float:
    """The smallest font size (points) of any visible, non-empty text of ``fig`` (after a draw).

    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> _ = ax.set_title("title", fontsize=12); _ = ax.text(0.5, 0.5, "note", fontsize=6)
    >>> smallest_font_pt(fig)
    6.0
    >>> plt.close(fig)
    """
    fig.canvas.draw()
    sizes = [text.get_fontsize() for text in fig.findobj(mpl.text.Text)
             if text.get_visible() and text.get_text().strip()]
    return float(min(sizes)) if sizes else float(mpl.rcParams["font.size"])


def _png_with_font_metadata(fig, **kwargs):
    """IPython's PNG of ``fig`` (as the inline backend makes it), with the smallest font size stored."""
    from IPython.core.pylabtools import print_figure

    metadata = {FONT_METADATA_KEY: f"{smallest_font_pt(fig):g}"}
    return print_figure(fig, "png", metadata=metadata, **kwargs)


def _tag_inline_figures() -> None:
    """Inside an IPython kernel, register the PNG formatter above for matplotlib figures."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    import functools

    import matplotlib.pyplot  # noqa: F401  (activates the inline backend, which registers its formatter)
    from matplotlib.figure import Figure

    try:
        from matplotlib_inline.backend_inline import InlineBackend
        kwargs = dict(InlineBackend.instance().print_figure_kwargs)
    except ImportError:
        kwargs = {"bbox_inches": "tight"}
    kwargs.setdefault("base64", True)
    shell.display_formatter.formatters["image/png"].for_type(
        Figure, functools.partial(_png_with_font_metadata, **kwargs))


def method_color(method: str) -> str:
    """Colour for a method name (unknown names get matplotlib's default cycle colour)."""
    return METHOD_COLORS.get(method, "C0")


def method_label(method: str) -> str:
    """Legend label for a method name."""
    return METHOD_LABELS.get(method, method)


def method_style(method: str, **overrides) -> dict:
    r"""Keyword arguments for ``plot``/``errorbar``: colour, label and (where two methods can overlap)
    line style ``ls`` of a method; ``overrides`` win.

    >>> method_style("eat-cubic", lw=1)
    {'color': '#d62728', 'label': 'EAT$_\\mathrm{cubic}$', 'lw': 1}
    >>> method_style("st-cubic")["ls"]
    (0, (4, 2))
    """
    style = {"color": method_color(method), "label": method_label(method)}
    if method in METHOD_LINESTYLES:
        style["ls"] = METHOD_LINESTYLES[method]
    return {**style, **overrides}


def _log_axis_ticks(ax, values) -> None:
    values = sorted(set(float(v) for v in values))
    ax.set_xscale("log")
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()


def plot_method_sweep(ax_score, ax_pathwise, table, metric: str, ylabel: str,
                      pathwise_methods=tuple(m for m in PAPER_METHODS if m != "score")) -> None:
    """The paper's Figure 4 layout: the score function across sample counts (left), the pathwise
    relaxations across temperatures (right).

    ``table`` is a results DataFrame with columns ``method, temperature, n_samples, seed, <metric>``.
    Each point is the mean over seeds with a +/-1 sd bar; open circles are the individual runs. Rows
    of method ``"exact"``, when present, are drawn on both panels as a reference: a dashed line at
    their mean and a band over their range.
    """
    def draw(ax, rows, x, method):
        stats = rows.groupby(x)[metric].agg(["mean", "std"]).reset_index()
        ax.errorbar(stats[x], stats["mean"], yerr=stats["std"].fillna(0.0), marker="o", capsize=3,
                    **method_style(method))
        ax.scatter(rows[x], rows[metric], facecolors="none", edgecolors=method_color(method),
                   s=18, alpha=0.6, linewidths=0.8)

    exact = table.loc[table["method"] == "exact", metric]
    for ax in (ax_score, ax_pathwise):
        if len(exact):
            ax.axhspan(exact.min(), exact.max(), color=method_color("exact"), alpha=0.08, lw=0)
            ax.axhline(exact.mean(), **method_style("exact", ls="--", lw=1.2))
    ax_score.set_ylabel(ylabel)
    if not ax_score.get_shared_y_axes().joined(ax_score, ax_pathwise):
        ax_pathwise.set_ylabel(ylabel)
    score = table[table["method"] == "score"]
    if len(score):
        draw(ax_score, score, "n_samples", "score")
        _log_axis_ticks(ax_score, score["n_samples"])
    ax_score.set_xlabel("Monte Carlo samples $S$")
    ax_score.set_title("score function")
    pathwise = table[table["method"].isin(pathwise_methods)]
    for method in pathwise_methods:
        rows = pathwise[pathwise["method"] == method]
        if len(rows):
            draw(ax_pathwise, rows, "temperature", method)
    _log_axis_ticks(ax_pathwise, pathwise["temperature"].dropna())
    ax_pathwise.set_xlabel(r"temperature $\tau$")
    ax_pathwise.set_title("pathwise relaxations")
    ax_pathwise.legend(loc="best")


def plot_estimator_comparison(ax_cosine, ax_variance, records, title: str | None = None,
                              methods=None) -> None:
    """:func:`hitchhiker.compare_estimators` records across temperatures: ``cos_mean`` (top) and the
    one-draw ``relative_variance`` (bottom, log scale), each with +/-2 standard errors.

    The score function (no temperature) is left out: its variance would flatten every other curve.
    """
    rows = [r for r in records if r["temperature"] is not None]
    methods = methods or list(dict.fromkeys(r["method"] for r in rows))
    taus = sorted({r["temperature"] for r in rows})
    for method in methods:
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["temperature"])
        for ax, metric in ((ax_cosine, "cos_mean"), (ax_variance, "relative_variance")):
            ax.errorbar([r["temperature"] for r in mine], [r[metric] for r in mine],
                        yerr=[2 * r[f"{metric}_se"] for r in mine], marker="o", capsize=2,
                        **method_style(method))
    for ax in (ax_cosine, ax_variance):
        _log_axis_ticks(ax, taus)
    ax_cosine.set_ylabel(r"cosine of $\mathbb{E}[g]$ with $g^*$")
    ax_variance.set_yscale("log")
    ax_variance.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    ax_variance.set_ylabel("relative variance (one draw)")
    ax_variance.set_xlabel(r"temperature $\tau$")
    if title:
        ax_cosine.set_title(title)


def plot_learning_curves(ax, curves, x: str, y: str, ylabel: str, xlabel: str | None = None,
                         keys=("method", "temperature", "n_samples", "seed", "tau_schedule"),
                         last_quarter: bool = True, legend_loc: str = "best") -> None:
    """One line per run (``curves`` rows grouped by ``keys``), coloured by method; with
    ``last_quarter`` a dashed line marks the start of the last quarter of training, over which the
    book calls a curve flat when it improves by less than 0.5%."""
    keys = [k for k in keys if k in curves]
    seen = set()
    for key, run in curves.groupby(keys, dropna=False, sort=False):
        method = key[0] if isinstance(key, tuple) else key
        run = run.sort_values(x)
        ax.plot(run[x], run[y], color=method_color(method), lw=0.9, alpha=0.7,
                label=None if method in seen else method_label(method))
        seen.add(method)
    if last_quarter:
        ax.axvline(0.75 * float(curves[x].max()), color="0.4", ls="--", lw=0.8)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel)
    ax.legend(loc=legend_loc)


#: The four panels of the paper's Figure 3: ``(column, title, y scale)``.
GRADIENT_PANELS = (("cos_mean", "CosMean", "linear"), ("cos_sample", "CosSample", "linear"),
                   ("bias_energy", "BiasEnergy", "log"), ("noise_energy", "NoiseEnergy", "log"))


def _base_method(method: str) -> str:
    """The method whose colour a variant takes (``fixed-cap-eat-cubic``, ``adaptive-eat-cubic``)."""
    return method.replace("fixed-cap-", "").replace("adaptive-", "")


def plot_bands(ax, frame, metric: str, methods, x: str = "temperature", **style) -> None:
    """One line per method of ``methods``: the mean of ``metric`` over data items against ``x``, with a
    +/-1 sd band (column ``<metric>_sd``); on a log axis the band stops at a tenth of the mean. A
    variant (``fixed-cap-*``, ``adaptive-*``) is drawn in its base method's colour; ``style``
    overrides the line (e.g. ``ls="--"``)."""
    import numpy as np

    for method in methods:
        part = frame[frame["method"] == method].sort_values(x)
        mean, sd = part[metric].to_numpy(), part[metric + "_sd"].to_numpy()
        low = mean - sd if ax.get_yscale() == "linear" else np.maximum(mean - sd, mean / 10)
        base = _base_method(method)
        ax.plot(part[x], mean, marker="o", ms=3, **method_style(base, **style))
        ax.fill_between(part[x], low, mean + sd, color=method_color(base), alpha=0.15, lw=0)


def plot_gradient_metrics(frame, methods, title: str | None = None):
    """The paper's Figure 3 layout: :data:`GRADIENT_PANELS` against the temperature
    (:func:`plot_bands`), the energies with the paper's 0.1 (dotted) and 1 (dashed) lines.
    Returns ``(fig, axes)``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(GRADIENT_PANELS), figsize=(BOOK_WIDTH, 2.9))
    for ax, (metric, name, yscale) in zip(axes, GRADIENT_PANELS):
        ax.set_yscale(yscale)
        plot_bands(ax, frame, metric, methods)
        ax.set(title=name, xlabel=r"temperature $\tau$")
    for ax in axes[2:]:
        ax.axhline(0.1, color="k", lw=0.6, ls=":")
        ax.axhline(1.0, color="k", lw=0.6, ls="--")
    axes[0].set_ylabel("value (dimensionless)")
    axes[0].legend(loc="lower left", fontsize=7)
    if title is not None:
        fig.suptitle(title, fontsize=9)
    return fig, axes
