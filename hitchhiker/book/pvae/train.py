r"""Training the Poisson VAE grid of Figure 4 (top) through the book's one trainer, every run of a
method at once.

:func:`train_pvae_ensemble` trains several runs of one method (any temperatures and seeds) as one
stacked :class:`~hitchhiker.book.pvae.model.PoissonVAE` with
:func:`~hitchhiker.book.common.training.train`: one batched forward pass and one optimiser step
advance all of them. Adamax is elementwise and the clipping is per member, so every member follows
the trajectory it would follow alone, up to its share of the random numbers (see the tests). Each
run sees its seed's minibatch order (:class:`~hitchhiker.book.common.minibatches.SeedEpochOrder`).
:func:`run_pvae_config` trains what :func:`~hitchhiker.book.pvae.config.pvae_config` describes, all of
it or one shard of it (``python -m hitchhiker.book.pvae.train --shard K/N``, then ``merge``).

>>> config = pvae_config("smoke")
>>> rows, curves, models = run_pvae_config(config, data, checkpoint_dir="checkpoints")  # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from ...estimators import check_method
from ..common.checkpoint import atomic_write
from ..common.minibatches import Minibatches, SeedEpochOrder
from ..common.training import train
from .config import PVAESchedule, ensemble_groups, group_label, pvae_config, relative_cost, run_label  # noqa: F401
from .model import GSM_MAX_CATEGORIES, VAE_METHODS, PoissonVAE, filter_localisation, validation_nelbo

__all__ = ["evaluate_members", "pvae_jobs", "run_pvae_config", "run_pvae_grid", "save_decoders",
           "train_pvae_ensemble"]


def train_pvae_ensemble(train_x: torch.Tensor, val: torch.Tensor, runs: Sequence[dict],
                        schedule: PVAESchedule, *, batch_size: int = 250, n_evals: int = 20,
                        n_latents: int = 512,
                        prior_log_rate_range: tuple = (-6.0, -4.0),
                        gsm_max_categories: int = GSM_MAX_CATEGORIES, device=None,
                        checkpoint: str | Path | None = None, checkpoint_every: Optional[int] = 500,
                        log=None):
    """Train ``runs`` (all of one method and sample count) as one stacked :class:`PoissonVAE`.

    Every run sees ``schedule.steps`` minibatches of ``batch_size`` patches in its seed's order (whole
    batches only); the closed-form validation NELBO of every run is recorded ``n_evals`` times
    (evenly spaced, the last at the end). With ``checkpoint`` (a path stem: the trainer adds the
    run's settings digest and length), the state is saved every ``checkpoint_every`` steps and at
    the end; a matching file is resumed (or, when complete, loaded) instead of training again, and a
    file of the same runs on other data is refused.

    Returns:
        ``(model, curves)``: the trained stack (member ``i`` is ``runs[i]``) and a list of rows
        ``{**run, "step", "val_nelbo_closed_form"}``.
    """
    runs = [dict(r) for r in runs]
    if not runs:
        raise ValueError("runs must not be empty")
    methods = {(r["method"], int(r["n_samples"])) for r in runs}
    if len(methods) != 1:
        raise ValueError(f"an ensemble trains one method and sample count, got {sorted(methods)}")
    (method, n_samples), = methods
    check_method(method, VAE_METHODS)
    device = torch.device(device) if device is not None else torch.device("cpu")
    model = PoissonVAE(train_x.shape[1], n_latents, len(runs), seeds=[r["seed"] for r in runs],
                       prior_log_rate_range=prior_log_rate_range).to(device)
    eval_steps = sorted({max(1, round(schedule.steps * (i + 1) / n_evals)) for i in range(n_evals)})
    seeds = [int(r["seed"]) for r in runs]
    batches = Minibatches(train_x.to(device), batch_size, SeedEpochOrder(train_x.shape[0], seeds, device),
                          whole_batches=True)

    def loss_fn(net, batch, step):
        tau = None
        if method not in ("exact", "score"):
            tau = torch.tensor([schedule.temperature(step, r["temperature"], r["tau_schedule"])
                                for r in runs], dtype=batch.dtype, device=device)
        return net.loss(batch, method, tau, n_samples=n_samples, beta=schedule.beta(step),
                        gsm_max_categories=gsm_max_categories)

    annealed = any(r["tau_schedule"] == "anneal" for r in runs)
    # the evaluation steps are stored and compared by the trainer (a longer run may extend a shorter
    # one whose evaluations are its own up to that length)
    identity = {"model": "PoissonVAE", "runs": runs, "n_latents": n_latents,
                "prior_log_rate_range": list(prior_log_rate_range),
                "gsm_max_categories": gsm_max_categories, "schedule_class": type(schedule).__name__}
    history = train(model, loss_fn, batches, schedule, optimizer="adamax",
                    seed=min(seeds) + 7919 * len(runs),
                    evaluate=lambda net: validation_nelbo(net, val, exact=True)[0], eval_steps=eval_steps,
                    checkpoint=checkpoint, identity=identity, data={"train": train_x, "val": val},
                    checkpoint_every=checkpoint_every if checkpoint is not None else None,
                    extend=lambda shorter: schedule.same_start(shorter, annealed),
                    member_names=[run_label(r) for r in runs], log=log, progress_bar=False,
                    desc=f"{method} S={n_samples}")
    curves = [{**r, "step": step, "val_nelbo_closed_form": float(v)}
              for step, values in history["eval"] for r, v in zip(runs, values)]
    return model, curves


def _train_group(args):
    train_x, val, group, schedule, kwargs, threads = args
    if threads:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    model, curves = train_pvae_ensemble(train_x, val, group, schedule, **kwargs)
    return model.cpu(), curves, time.perf_counter() - start


def evaluate_members(model: PoissonVAE, runs: Sequence[dict], val: torch.Tensor, *, val_samples: int = 4,
                     seed: int = 10_000) -> list[dict]:
    r"""One row per member: validation NELBO with exact samples (``val_nelbo``, ``val_nelbo_se``), its
    closed form (``val_nelbo_closed_form``), the dictionary's median localisation, and two facts
    about the validation posterior rates for GSM's truncation: the share whose own paper rule
    :math:`K = \lfloor\lambda + 4\sqrt\lambda + 5\rfloor` exceeds the default cap
    (``rate_share_above_gsm_cap``) and their 99.9% quantile (``rate_q999``)."""
    torch.manual_seed(seed)
    nelbo, se = validation_nelbo(model, val, n_samples=val_samples)
    closed, _ = validation_nelbo(model, val, exact=True)
    local = filter_localisation(model.filters.cpu()).median(-1).values
    with torch.no_grad():
        rates = model.rates(val.to(next(model.parameters()).device)).flatten(1).double().cpu()
    rule = torch.floor(rates + 4 * rates.sqrt() + 5)
    above = (rule > GSM_MAX_CATEGORIES).double().mean(-1)
    q999 = torch.stack([torch.quantile(r, 0.999) for r in rates])  # (one member at a time: size limit)
    return [{**r, "val_nelbo": float(a), "val_nelbo_se": float(b), "val_nelbo_closed_form": float(c),
             "localisation": float(d), "rate_share_above_gsm_cap": float(e), "rate_q999": float(f)}
            for r, a, b, c, d, e, f in zip(runs, nelbo, se, closed, local, above, q999)]


def _run_jobs(train_x, val, jobs, *, batch_size, n_evals, val_samples, device, checkpoint_dir, workers,
              prior_log_rate_range, log):
    """Train each ``(group, schedule)`` of ``jobs`` and evaluate it: rows, curves, models in job order."""
    args = []
    for group, schedule in jobs:
        kwargs = {"batch_size": batch_size, "n_evals": n_evals, "device": device, "log": log,
                  "prior_log_rate_range": prior_log_rate_range,
                  "gsm_max_categories": group[0].get("gsm_max_categories") or GSM_MAX_CATEGORIES}
        if checkpoint_dir is not None:
            kwargs["checkpoint"] = Path(checkpoint_dir) / group_label(group)
        args.append((train_x, val, group, schedule, kwargs, 1 if workers > 1 else None))
    if workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        for job in args:
            if job[4]["log"] is not print:
                job[4]["log"] = None  # a closure cannot travel to another process
        # the exact reference first (other chapters read its decoders), then the costliest first,
        # so that the pool ends together
        order = sorted(range(len(args)), key=lambda i: (jobs[i][0][0]["method"] != "exact",
                                                        -relative_cost(jobs[i][0])))
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            done = dict(zip(order, pool.map(_train_group, [args[i] for i in order])))
        results = [done[i] for i in range(len(args))]
    else:
        results = [_train_group(job) for job in args]
    rows, curves, models = [], [], {}
    for (group, schedule), (model, group_curves, seconds) in zip(jobs, results):
        for row in evaluate_members(model, group, val, val_samples=val_samples):
            rows.append({**row, "steps": schedule.steps, "batch_size": batch_size, "seconds": seconds})
        curves += group_curves
        models.update({run_label(r): model.member(i) for i, r in enumerate(group)})
    return rows, curves, models


def run_pvae_grid(train_x: torch.Tensor, val: torch.Tensor, runs: Iterable[dict], schedule: PVAESchedule,
                  *, batch_size: int = 250, n_evals: int = 20, val_samples: int = 4, device=None,
                  checkpoint_dir: str | Path | None = None, workers: int = 1,
                  max_members: Optional[dict] = None, prior_log_rate_range: tuple = (-6.0, -4.0),
                  log=None):
    """Train every run of :func:`pvae_runs` (one ensemble per method and sample count) and evaluate it.

    ``workers > 1`` trains that many ensembles at a time in separate processes, one thread each
    (on a CPU, two single-threaded ensembles use two cores better than one two-threaded one).

    Returns:
        ``(rows, curves, models)``: one row per run (its keys, ``steps``, ``batch_size``,
        ``val_nelbo``, ``val_nelbo_se``, ``val_nelbo_closed_form``, ``localisation``,
        ``seconds`` of its ensemble's training), the learning curves (rows of
        :func:`train_pvae_ensemble`) and ``{run_label: one-member PoissonVAE}``.
    """
    jobs = [(group, schedule) for group in ensemble_groups(runs, max_members)]
    return _run_jobs(train_x, val, jobs, batch_size=batch_size, n_evals=n_evals, val_samples=val_samples,
                     device=device, checkpoint_dir=checkpoint_dir, workers=workers,
                     prior_log_rate_range=prior_log_rate_range, log=log)


def pvae_jobs(config: dict, parts: Optional[Sequence[str]] = None,
              methods: Optional[Sequence[str]] = None) -> list[tuple[list, PVAESchedule]]:
    """Every ensemble :func:`run_pvae_config` trains, in its order: ``(runs, schedule)`` pairs, the
    grid under ``config["schedule"]`` then the ``long_runs`` under ``config["long_schedule"]``,
    keeping only the grid ``parts`` and ``methods`` asked for."""
    jobs = []
    for runs, schedule in ((config["runs"], config["schedule"]),
                           (config["long_runs"], config["long_schedule"])):
        runs = [r for r in runs if (not parts or r["grid_part"] in parts)
                and (not methods or r["method"] in methods)]
        jobs += [(group, schedule) for group in ensemble_groups(runs, config["max_members"])]
    return jobs


def run_pvae_config(config: dict, data, *, checkpoint_dir: str | Path | None = None, device=None,
                    parts: Optional[Sequence[str]] = None, methods: Optional[Sequence[str]] = None,
                    workers: Optional[int] = None, jobs: Optional[Sequence[int]] = None, log=None,
                    labels: Optional[Sequence[str]] = None):
    """Train (or reload from ``checkpoint_dir``) everything :func:`pvae_config` describes: the grid
    under ``config["schedule"]``, then the ``long_runs`` under ``config["long_schedule"]``.

    ``parts`` and ``methods`` keep only those grid parts (``"main"``, ``"extra"``, ``"long"``) and
    methods; ``jobs`` only those indices of :func:`pvae_jobs` (a shard); ``labels`` only the
    ensembles holding one of those run labels. Returns
    :func:`run_pvae_grid`'s ``(rows, curves, models)`` over both; the rows and curves of a long run
    carry ``grid_part="long"`` and its own ``steps``.
    """
    selected = pvae_jobs(config, parts, methods)
    if jobs is not None:
        selected = [selected[i] for i in jobs]
    if labels:
        unknown = set(labels) - {run_label(r) for group, _ in selected for r in group}
        if unknown:
            raise ValueError(f"labels not among the selected runs: {sorted(unknown)}")
        selected = [(g, s) for g, s in selected if any(run_label(r) in labels for r in g)]
    if not selected:
        return [], [], {}
    return _run_jobs(data.train, data.val, selected, batch_size=config["batch_size"],
                     n_evals=config["n_evals"], val_samples=config["val_samples"], device=device,
                     checkpoint_dir=checkpoint_dir, workers=workers or config["workers"],
                     prior_log_rate_range=config["prior_log_rate_range"], log=log)


def save_decoders(models: dict, path: str | Path, labels: Iterable[str]) -> dict:
    """Write ``{label: decoder}`` for the runs ``labels`` of :func:`run_pvae_grid`'s models to
    ``path`` (each a ``(n_latents, n_inputs)`` float32 tensor, loadable with
    ``torch.load(path, weights_only=True)``), atomically; returns the dict."""
    decoders = {label: models[label].decoder.detach()[0].cpu().float().contiguous() for label in labels}
    atomic_write(path, lambda file: torch.save(decoders, file))
    return decoders


if __name__ == "__main__":
    from .grid import main

    main()
