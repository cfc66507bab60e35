"""One training loop for every model in the book: minibatches, progress bar, seeds, checkpoints, device.

>>> history = fit(model, loss_fn, data, epochs=50, batch_size=256, lr=5e-3,
...               checkpoint="checkpoints/pvae-eat-cubic-tau0.1-seed0.pt")   # doctest: +SKIP

``loss_fn(model, batch, progress)`` returns a scalar loss; ``progress`` runs from 0 to 1 over
training, for KL warm-up and temperature annealing schedules. When ``checkpoint`` names an existing
file written for the same settings, the trained weights and history are loaded instead of retraining.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from tqdm import tqdm

from .runtime import seed_everything
from .scale import current_scale

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "sgd": torch.optim.SGD,
}


def default_progress_bar() -> bool:
    """Progress bars are on unless at smoke scale or ``HITCHHIKER_PROGRESS=0``."""
    return current_scale() != "smoke" and os.environ.get("HITCHHIKER_PROGRESS", "1") != "0"


#: A learning curve is flat when it gains less than this (relative) over its last quarter.
FLAT_GAIN = 0.005


def last_quarter_gain(curve: Sequence[float], steps: Optional[Sequence[float]] = None) -> float:
    r"""Relative gain of a (to be maximised) curve over its last quarter:
    :math:`(c_{end} - c_{3/4}) / |c_{3/4}|`, with :math:`c_{3/4}` the first point at or after three
    quarters of the way: of the training ``steps`` at which the points were taken when given, else
    of the points themselves. Below :data:`FLAT_GAIN` the curve counts as flat; for a loss, pass its
    negative. ``nan`` with < 2 points."""
    values = [float(v) for v in curve]
    if len(values) < 2:
        return math.nan
    if steps is None:
        at = math.ceil(0.75 * (len(values) - 1))
    else:
        steps = [float(s) for s in steps]
        if len(steps) != len(values):
            raise ValueError(f"steps has {len(steps)} entries for a curve of {len(values)}")
        at = next(i for i, s in enumerate(steps) if s >= 0.75 * steps[-1])
    start = values[min(len(values) - 2, at)]
    return (values[-1] - start) / abs(start)


def linear_warmup(progress: float, warmup_fraction: float, start: float = 0.0, end: float = 1.0) -> float:
    """A weight that rises linearly from ``start`` to ``end`` over the first ``warmup_fraction``."""
    if warmup_fraction <= 0:
        return end
    return start + (end - start) * min(1.0, progress / warmup_fraction)


def geometric_anneal(progress: float, start: float, end: float) -> float:
    """Geometric interpolation from ``start`` (progress 0) to ``end`` (progress 1), e.g. temperatures."""
    return float(start * (end / start) ** min(max(progress, 0.0), 1.0))


def fit(
    model: torch.nn.Module,
    loss_fn: Callable,
    data: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float = 1e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    seed: int = 0,
    device: Optional[torch.device] = None,
    checkpoint: Optional[str | Path] = None,
    settings: Optional[dict] = None,
    eval_fn: Optional[Callable] = None,
    eval_every: int = 0,
    progress_bar: Optional[bool] = None,
    desc: str = "training",
) -> dict:
    """Minimise ``loss_fn`` over shuffled minibatches of ``data`` (items along dimension 0).

    Args:
        settings: extra values that identify this run (method, temperature, ...); a checkpoint is
            reused only when these and the loop's own settings match exactly.
        eval_fn: ``eval_fn(model) -> float``, called every ``eval_every`` epochs and at the end.
        progress_bar: show tqdm. Default: on, except at smoke scale or when the environment sets
            ``HITCHHIKER_PROGRESS=0`` (``make execute`` does, so stored notebook outputs stay clean).

    Returns:
        history: ``{"loss": [mean training loss per epoch], "eval": [(epoch, value), ...]}``; the
        model is left trained (and on ``device``).
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not one of {sorted(OPTIMIZERS)}")
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"need epochs >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    meta = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
            "weight_decay": weight_decay, "seed": seed, "n_items": int(data.shape[0]),
            **(settings or {})}
    meta = json.loads(json.dumps(meta, default=str))  # what a checkpoint file can store and compare
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.is_file():
        saved = torch.load(path, map_location=device, weights_only=False)
        if saved.get("meta") == meta:
            model.load_state_dict(saved["model"])
            return saved["history"]

    seed_everything(seed)
    opt = OPTIMIZERS[optimizer](model.parameters(), lr=lr, weight_decay=weight_decay)
    data = data.to(device)
    n = data.shape[0]
    steps_per_epoch = max(1, -(-n // batch_size))
    total_steps = max(1, epochs * steps_per_epoch)
    history = {"loss": [], "eval": []}
    show = progress_bar if progress_bar is not None else default_progress_bar()
    bar = tqdm(range(epochs), desc=desc, disable=not show, leave=False)
    step = 0
    for epoch in bar:
        model.train()
        order = torch.randperm(n, device=device)
        running = 0.0
        for start in range(0, n, batch_size):
            batch = data[order[start:start + batch_size]]
            loss = loss_fn(model, batch, step / total_steps)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {loss.item()} at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running += loss.item() * batch.shape[0]
            step += 1
        history["loss"].append(running / n)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4g}")
        if eval_fn is not None and eval_every and (epoch + 1) % eval_every == 0 and epoch + 1 < epochs:
            model.eval()
            history["eval"].append((epoch + 1, float(eval_fn(model))))
    if eval_fn is not None:
        model.eval()
        history["eval"].append((epochs, float(eval_fn(model))))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "history": history, "meta": meta}, path)
    return history
