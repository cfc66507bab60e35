"""Figures of the POGLM chapter: learning curves, per-block recovery, connectivity side by side."""
from __future__ import annotations

from ..common.plotting import method_color, method_label, plot_learning_curves
from ..poglm.model import POGLM_BLOCKS, connectivity_matrix


def plot_elbo_curves(ax, curves, title: str = "", margin: float = 40.0) -> None:
    """Every run's test ELBO against the epoch, coloured by estimator
    (:func:`~hitchhiker.book.plotting.plot_learning_curves`; the dashed line marks the start of the last
    quarter, over which a flat curve gains less than 0.5%). The vertical axis is cut ``margin`` nats
    below the lowest final value (the first epochs are far lower)."""
    plot_learning_curves(ax, curves, "epoch", "test_elbo", "test ELBO (nats / sequence)", "epoch",
                         keys=("method", "temperature", "n_samples", "seed"), legend_loc="lower right")
    keys = ["method", "temperature", "n_samples", "seed"]
    finals = curves.sort_values("epoch").groupby(keys, dropna=False)["test_elbo"].last()
    ax.set_ylim(finals.min() - margin, finals.max() + 0.1 * margin)
    if title:
        ax.set_title(title)


def plot_block_recovery(ax, recovery, methods, title: str = "") -> None:
    """Mean absolute weight error per block: W = 0 (light), the listed runs (mean over seeds, open
    circles per seed), and the oracle fit with the hidden spikes observed (black).

    ``recovery``: rows of :func:`hitchhiker.book.poglm_stack.recovery_table` for one regime;
    ``methods``: ``[(label, method, temperature, n_samples), ...]``.
    """
    import numpy as np

    x = np.arange(len(POGLM_BLOCKS))
    width = 0.8 / (len(methods) + 2)
    by_block = recovery.groupby("block")
    null = by_block["null_error"].mean().reindex(POGLM_BLOCKS)
    oracle = by_block["oracle_error"].mean().reindex(POGLM_BLOCKS)
    ax.bar(x - 0.4 + width / 2, null, width, color="0.85", edgecolor="0.5", label="$W = 0$")
    for k, (label, method, tau, n_samples) in enumerate(methods):
        rows = recovery[(recovery["method"] == method) & (recovery["n_samples"] == n_samples)]
        rows = rows[rows["temperature"].isna()] if tau is None else rows[rows["temperature"] == tau]
        mean = rows.groupby("block")["error"].mean().reindex(POGLM_BLOCKS)
        pos = x - 0.4 + (k + 1.5) * width
        ax.bar(pos, mean, width, color=method_color(method), alpha=0.85, label=label)
        for j, block in enumerate(POGLM_BLOCKS):
            values = rows.loc[rows["block"] == block, "error"]
            ax.scatter([pos[j]] * len(values), values, s=10, facecolors="none", edgecolors="0.2",
                       linewidths=0.6, zorder=3)
    ax.bar(x - 0.4 + (len(methods) + 1.5) * width, oracle, width, color="0.1",
           label="oracle (hidden observed)")
    ax.set_xticks(x, [b.replace("<-", "←") for b in POGLM_BLOCKS])
    ax.set_ylabel("mean |W error|")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", fontsize=7.5)


def plot_connectivity(axes, panels: dict, n_visible: int, n_taps: int):
    """Weight matrices side by side with one colour scale (rows: targets; a block of ``n_taps``
    columns per source, oldest tap first); lines separate visible from hidden neurons.
    Returns the last image (for a colour bar)."""
    limit = max(float(abs(connectivity_matrix(w)).max()) for w in panels.values())
    image = None
    for ax, (title, weight) in zip(axes, panels.items()):
        matrix = connectivity_matrix(weight)
        n = matrix.shape[0]
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.axhline(n_visible - 0.5, color="k", lw=0.8)
        ax.axvline(n_visible * n_taps - 0.5, color="k", lw=0.8)
        ax.set_xticks([n_taps * i + (n_taps - 1) / 2 for i in range(n)],
                      [f"{i + 1}{'h' if i >= n_visible else ''}" for i in range(n)], fontsize=7)
        ax.set_yticks(range(n), [f"{i + 1}{'h' if i >= n_visible else ''}" for i in range(n)],
                      fontsize=7)
        ax.set_xlabel("source neuron (3 taps each)", fontsize=8)
        ax.set_title(title, fontsize=8.5)
        ax.grid(False)
    axes[0].set_ylabel("target neuron")
    return image
