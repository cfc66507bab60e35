r"""The book's one trainer: every model (plain or a stack of independent members) trains through
:func:`train`.

One optimiser step per minibatch: the loss (a scalar, or one per member of a stacked model, whose
sum is minimised so that each member gets only its own gradient), the learning rate of the
:class:`~hitchhiker.book.common.schedule.Schedule`, gradient clipping (per member for a stack, as
:func:`torch.nn.utils.clip_grad_norm_` does for one model), evaluations at chosen steps, and
checkpoints (:mod:`~hitchhiker.book.common.checkpoint`) from which a run resumes bit for bit. The
minibatch order is the experiment's (:mod:`~hitchhiker.book.common.minibatches`).

>>> model = torch.nn.Linear(2, 1)
>>> data = torch.randn(32, 3)
>>> loss_fn = lambda m, batch, step: (m(batch[:, :2]).squeeze(1) - batch[:, 2]).pow(2).mean()
>>> history = train(model, loss_fn, Minibatches(data, 8, RandpermOrder(32)), Schedule(steps=8, lr=0.1),
...                 seed=0, evaluate=lambda m: 1.0, eval_steps=[4, 8], progress_bar=False)
>>> len(history["loss"]), history["eval"]
(2, [[4, 1.0], [8, 1.0]])

A learning curve counts as flat when :func:`last_quarter_gain` is below :data:`FLAT_GAIN`:

>>> gain = last_quarter_gain([1.0, 2.0, 3.0, 3.01])
>>> round(gain, 5), gain < FLAT_GAIN
(0.00333, True)
"""
from __future__ import annotations

import math
import os
import random
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .checkpoint import (
    FORMAT,
    CheckpointError,
    atomic_save,
    canonical,
    data_digest,
    differences,
    identity_digest,
    load_checkpoint,
)
from .minibatches import Minibatches, RandpermOrder  # noqa: F401 (RandpermOrder: the example above)
from .runtime import seed_everything
from .scale import current_scale
from .schedule import Schedule

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adamax": torch.optim.Adamax,
    "sgd": torch.optim.SGD,
}

#: A learning curve is flat when it gains less than this (relative) over its last quarter.
FLAT_GAIN = 0.005


def default_progress_bar() -> bool:
    """Progress bars are on unless at smoke scale or ``HITCHHIKER_PROGRESS=0``."""
    return current_scale() != "smoke" and os.environ.get("HITCHHIKER_PROGRESS", "1") != "0"


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


def clip_per_member(params: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scale each member's gradient (its slice along dimension 0 of every parameter) to norm
    <= ``max_norm``, as :func:`torch.nn.utils.clip_grad_norm_` does for one model; returns the
    norms before clipping."""
    norms = torch.stack([p.grad.pow(2).flatten(1).sum(1) for p in params]).sum(0).sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view((-1,) + (1,) * (p.dim() - 1)))
    return norms


def _plain(value):
    """An evaluation as numbers and lists (what a checkpoint stores)."""
    if torch.is_tensor(value) or isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return float(value) if isinstance(value, (int, float, np.floating, np.integer)) else value


def _rng_state() -> dict:
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {"torch": torch.get_rng_state(), "python": [version, list(state), gauss],
           "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def checkpoint_file(stem: str | Path, identity: Mapping, steps: int) -> Path:
    """``{stem}-{digest of identity}-{steps}steps.pt``: a run's settings and its length are in its
    name, so a changed setting or a longer run never writes over an earlier file."""
    stem = Path(stem)
    stem = stem.with_suffix("") if stem.suffix == ".pt" else stem
    return stem.with_name(f"{stem.name}-{identity_digest(identity)[:12]}-{int(steps)}steps.pt")


def _check_matches(saved: dict, path: Path, identity: dict, digests: dict) -> None:
    if saved.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {saved.get('format')!r}, not {FORMAT!r}")
    wanted = {"identity": identity, "data": digests}
    different = differences({"identity": saved.get("identity"), "data": saved.get("data")}, wanted)
    if different:
        raise CheckpointError(f"checkpoint {path} was written for another run: it differs in {different} "
                              f"(changed data or settings); delete it or use another checkpoint folder")


def train(model: torch.nn.Module, loss_fn: Callable, batches: Minibatches, schedule: Schedule, *,
          optimizer: str = "adam", weight_decay: float = 0.0, seed: Optional[int] = None,
          evaluate: Optional[Callable] = None, eval_steps: Sequence[int] = (),
          checkpoint: str | Path | None = None, identity: Optional[Mapping] = None,
          data: Optional[Mapping[str, torch.Tensor]] = None, checkpoint_every: Optional[int] = None,
          extend: bool | Callable[[int], bool] | None = None, member_names: Optional[Sequence[str]] = None,
          log: Optional[Callable[[str], None]] = None, progress_bar: Optional[bool] = None,
          desc: str = "training") -> dict:
    """Train ``model`` for ``schedule.steps`` optimiser steps on ``batches``.

    Args:
        loss_fn: ``loss_fn(model, batch, step)`` -> a scalar, or ``(E,)`` for a stack of ``E`` members
            (their sum is minimised; clipping is then per member, along dimension 0 of every parameter).
        optimizer: a key of :data:`OPTIMIZERS`, built on the parameters that require a gradient with
            ``weight_decay``; the learning rate of every step is ``schedule.learning_rate(step)``.
        seed: :func:`seed_everything` before a fresh run (not on resume: the generators are restored).
        evaluate: ``evaluate(model)`` -> a number or one per member, recorded after each step count
            in ``eval_steps`` (``0``: before training), in eval mode.
        checkpoint: a path stem; the file is :func:`checkpoint_file` of it. Saved every
            ``checkpoint_every`` steps (a positive integer; default: only at the end) and at the end.
            A matching unfinished file is resumed, a finished one loaded without training. A file of
            the same settings but fewer steps is extended when ``extend`` (a bool, or a function
            of its step count; default :meth:`Schedule.same_start`) allows it and its evaluations
            are this run's up to its length; else it is
            kept and the run starts anew under its own name, with a warning.
        identity: every setting of the run besides the schedule's length (with ``checkpoint``); the
            trainer adds its own (optimizer, weight decay, seed, minibatch size and order, every field
            of the schedule but ``steps``).
        data: ``{name: tensor}`` of every tensor the run reads (with ``checkpoint``): their sha256
            is stored and a file trained on other data is refused.
        member_names: names of the members in errors (a non-finite loss).
        log: ``log(message)`` after every evaluation.

    Returns:
        The history, a dict with keys ``loss`` (the mean loss of each epoch, a number or one per
        member), ``eval`` (``[step, value]`` pairs), ``checkpoint`` (the file, or None) and
        ``seconds`` (the training time of this call); the model is left trained.
    """
    steps = schedule.steps
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not one of {sorted(OPTIMIZERS)}")
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or
                                         int(checkpoint_every) != checkpoint_every or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be a positive integer or None, got {checkpoint_every!r}")
    eval_steps = sorted({int(s) for s in eval_steps})
    if eval_steps and not 0 <= eval_steps[0] <= eval_steps[-1] <= steps:
        raise ValueError(f"eval_steps must lie in [0, {steps}], got {eval_steps}")
    if eval_steps and evaluate is None:
        raise ValueError("eval_steps needs an evaluate function")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = OPTIMIZERS[optimizer](params, lr=schedule.lr, weight_decay=weight_decay)
    device = params[0].device
    history = {"loss": [], "eval": []}
    state = {"step": 0, "running": None, "items": 0}

    path, meta, start_from = None, None, None
    if checkpoint is not None:
        if identity is None or data is None:
            raise ValueError("a checkpoint needs the run's identity and data (for its digest)")
        ident = canonical({"identity": identity, "optimizer": optimizer, "weight_decay": weight_decay,
                           "seed": seed, "batch_size": batches.batch_size,
                           "batches": {"order": type(batches.order).__name__,
                                       "per_member": batches.per_member,
                                       "whole_batches": batches.whole_batches},
                           "schedule": {k: v for k, v in vars(schedule).items() if k != "steps"}})
        digests = data_digest(data)
        path = checkpoint_file(checkpoint, ident, steps)
        meta = {"format": FORMAT, "identity": ident, "data": digests, "steps": steps,
                "eval_steps": eval_steps}
        if path.is_file():
            start_from = load_checkpoint(path, map_location=device)
            _check_matches(start_from, path, ident, digests)
            if start_from["eval_steps"] != eval_steps or start_from["steps"] != steps:
                raise CheckpointError(f"checkpoint {path} was written with the evaluation steps "
                                      f"{start_from['eval_steps']}, not {eval_steps}: move it away to train "
                                      "this run, or evaluate as it did")
        else:
            if extend is None:
                extend = schedule.same_start
            start_from = _shorter_run(path, ident, digests, steps, eval_steps, extend, device)
    if start_from is not None:
        model.load_state_dict(start_from["model"])
        opt.load_state_dict(start_from["optimizer"])
        batches.load_state_dict(start_from["batches"])
        history = {"loss": start_from["history"]["loss"], "eval": start_from["history"]["eval"]}
        state = {"step": start_from["step"], "running": start_from["running"], "items": start_from["items"]}
        _set_rng_state(start_from["rng"])
    elif seed is not None:
        seed_everything(seed)

    def save():
        if path is not None:
            atomic_save({**meta, "step": state["step"], "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "batches": batches.state_dict(),
                         "history": history, "running": state["running"], "items": state["items"],
                         "rng": _rng_state()}, path)

    def record():
        model.eval()
        history["eval"].append([state["step"], _plain(evaluate(model))])
        model.train()

    if state["step"] == 0 and 0 in eval_steps:
        record()
    begin = state["step"]
    show = progress_bar if progress_bar is not None else default_progress_bar()
    bar = tqdm(total=steps, initial=begin, desc=desc, disable=not show or begin >= steps, leave=False)
    start_time = time.perf_counter()
    model.train()
    for step in range(begin, steps):
        batch, n_items = batches(step)
        losses = loss_fn(model, batch, step)
        if not bool(torch.isfinite(losses).all()):
            names = member_names or range(losses.numel())
            bad = [n for n, v in zip(names, losses.reshape(-1).tolist()) if not math.isfinite(v)]
            raise FloatingPointError(f"{desc}: loss not finite at step {step}"
                                     + (f" for {bad}" if losses.dim() else f": {losses.item()}"))
        for group in opt.param_groups:
            group["lr"] = schedule.learning_rate(step)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        if schedule.clip_norm is not None:
            with_grad = [p for p in params if p.grad is not None]
            if losses.dim():
                clip_per_member(with_grad, schedule.clip_norm)
            else:
                torch.nn.utils.clip_grad_norm_(with_grad, schedule.clip_norm)
        opt.step()
        weighted = losses.detach().double() * n_items
        state["running"] = weighted if state["running"] is None else state["running"] + weighted
        state["items"] += n_items
        state["step"] = step + 1
        if state["step"] % batches.steps_per_epoch == 0:
            history["loss"].append((state["running"] / state["items"]).tolist())
            state["running"], state["items"] = None, 0
            bar.set_postfix(loss=f"{np.mean(history['loss'][-1]):.4g}")
        bar.update(1)
        if state["step"] in eval_steps:
            record()
        if state["step"] == steps or (checkpoint_every and state["step"] % checkpoint_every == 0):
            save()
        if log is not None and state["step"] in eval_steps:
            log(f"{desc}: step {state['step']}/{steps}, {time.perf_counter() - start_time:.0f} s, "
                f"evaluation {np.round(history['eval'][-1][1], 4).tolist()}")
    bar.close()
    return {**history, "checkpoint": None if path is None else str(path),
            "seconds": time.perf_counter() - start_time}


def _shorter_run(path: Path, identity: dict, digests: dict, steps: int, eval_steps: list, extend,
                 device) -> Optional[dict]:
    """The finished checkpoint of this run with the most steps below ``steps``, when it may be
    extended into this one (else ``None``, with a warning that says why the run starts anew)."""
    stem = path.name[:-len(f"{steps}steps.pt")]
    found = []
    for other in path.parent.glob(f"{stem}*steps.pt"):
        count = other.name[len(stem):-len("steps.pt")]
        if count.isdigit() and int(count) < steps:
            found.append((int(count), other))
    if not found:
        return None
    shorter, other = max(found)
    saved = load_checkpoint(other, map_location=device)
    _check_matches(saved, other, identity, digests)
    allowed = extend(shorter) if callable(extend) else bool(extend)
    if saved["step"] != saved["steps"]:
        reason = f"it is unfinished ({saved['step']} of {shorter} steps)"
    elif not allowed:
        reason = ("its schedule differs from this run's over its steps (a cosine or an anneal set by "
                  "the run's length)")
    elif [s for s in eval_steps if s <= shorter] != saved["eval_steps"]:
        reason = "its evaluation steps are not this run's"
    else:
        return saved
    warnings.warn(f"{other} holds a run of {shorter} steps with these settings; {reason}, so it cannot "
                  f"be extended to {steps} steps: training anew into {path} (the earlier file is kept)",
                  stacklevel=3)
    return None
