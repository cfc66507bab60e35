"""Figures of the POGLM chapter: the network, spike counts, learning curves, per-block recovery and
connectivity side by side.

>>> import torch
>>> connectivity_matrix(torch.zeros(5, 5, 3)).shape
(5, 15)
"""
from __future__ import annotations

from typing import Optional

import torch

from ..common.plotting import method_color, plot_learning_curves
from .recovery import POGLM_BLOCKS


def plot_elbo_curves(ax, curves, title: str = "", margin: float = 40.0) -> None:
    """Every run's test ELBO against the epoch, coloured by estimator
    (:func:`~hitchhiker.book.common.plotting.plot_learning_curves`; the dashed line marks the start of
    the last quarter, over which a flat curve gains less than 0.5%). The vertical axis is cut ``margin`` nats
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

    ``recovery``: rows of :func:`hitchhiker.book.poglm.recovery.recovery_table` for one regime;
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


def draw_network(ax, weight: torch.Tensor, n_visible: int, threshold: float = 0.0) -> None:
    """Draw the neurons as a graph: visible filled, hidden open; an arrow m -> n per summed weight.

    The arrow from neuron ``m`` to ``n`` carries :math:`\\sum_k W_{n,m,k}` (red excitatory, blue
    inhibitory, width proportional to its size); self-connections are left out. Arrows below
    ``threshold`` in absolute value are not drawn.
    """
    from matplotlib.patches import Circle, FancyArrowPatch

    net = weight.detach().cpu().sum(-1)
    n = net.shape[0]
    n_hidden = n - n_visible
    gap = 1.4
    pos = {i: (gap * (i - (n_visible - 1) / 2), 1.3) for i in range(n_visible)}
    pos.update({n_visible + j: (gap * (j - (n_hidden - 1) / 2), 0.0) for j in range(n_hidden)})
    top = float(net.abs().max()) or 1.0
    radius = 0.2
    for target in range(n):
        for source in range(n):
            w = float(net[target, source])
            if source == target or abs(w) <= threshold:
                continue
            arrow = FancyArrowPatch(pos[source], pos[target], connectionstyle="arc3,rad=0.15",
                                    arrowstyle="-|>", mutation_scale=9, shrinkA=12, shrinkB=12,
                                    color="#c0392b" if w > 0 else "#2e6fbf", alpha=0.8,
                                    linewidth=0.4 + 2.6 * abs(w) / top)
            ax.add_patch(arrow)
    for i, (x, y) in pos.items():
        hidden = i >= n_visible
        ax.add_patch(Circle((x, y), radius, facecolor="white" if hidden else "0.25",
                            edgecolor="0.25", linewidth=1.5, linestyle="--" if hidden else "-", zorder=3))
        ax.text(x, y, str(i + 1), ha="center", va="center", zorder=4, fontsize=9,
                color="0.1" if hidden else "white")
    half = gap * (max(n_visible, n_hidden) - 1) / 2 + 0.35
    ax.set_xlim(-half, half)
    ax.set_ylim(-0.4, 1.7)
    ax.set_aspect("equal")
    ax.axis("off")


def connectivity_matrix(weight: torch.Tensor):
    """``(N, N, L)`` weights laid out as an ``(N, N*L)`` NumPy image: row = target, column block = source.

    Within a source's block the taps run from the oldest bin (lag ``L``) to the newest (lag 1).
    """
    w = weight.detach().cpu()
    return w.reshape(w.shape[0], -1).numpy()


def plot_spike_counts(ax, spikes: torch.Tensor, n_visible: int, max_count: Optional[float] = None):
    """Spike counts of one sequence as an image (neurons x bins); a line separates visible from hidden.

    Returns the image (for a colour bar).
    """
    counts = spikes.detach().cpu().numpy()
    image = ax.imshow(counts, aspect="auto", interpolation="nearest", cmap="Greys",
                      vmin=0, vmax=max_count if max_count is not None else float(counts.max()))
    ax.axhline(n_visible - 0.5, color="#d62728", linewidth=1.2)
    ax.set_yticks(range(counts.shape[0]))
    ax.set_yticklabels([f"{i + 1}{' (hidden)' if i >= n_visible else ''}" for i in range(counts.shape[0])])
    ax.set_xlabel("time bin")
    ax.set_ylabel("neuron")
    ax.grid(False)
    return image
