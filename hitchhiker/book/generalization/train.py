r"""Training the non-Poisson grid: one :class:`~.model.LatentCountModel` per estimator, temperature,
sample count and seed on each data set, evaluated on held-out counts.

>>> [(r["method"], r["temperature"]) for r in generalization_runs([0.1], [4], seeds=[0])]
[('eat-sigmoid', 0.1), ('eat-cubic', 0.1), ('gsm', 0.1), ('score', None)]
>>> results, curves, seconds = run_generalization_experiment(generalization_config())   # doctest: +SKIP
"""
from __future__ import annotations

import math
import time
from typing import Optional, Sequence

import pandas as pd
import torch

from ...estimators import check_method
from ..common.checkpoint import data_digest
from ..common.minibatches import Minibatches, RandpermOrder
from ..common.runtime import seed_everything
from ..common.schedule import Schedule
from ..common.training import last_quarter_gain, train
from .config import controls_config, generalization_config
from .data import CountData, simulate_control_data, simulate_count_data
from .model import (
    FAMILY_POSTERIOR_METHODS,
    GENERALIZATION_METHODS,
    LatentCountModel,
    evaluate_model,
    negative_elbo,
)


def generalization_runs(temperatures: Sequence[float], score_samples: Sequence[int],
                        seeds: Sequence[int], pathwise_samples: int = 1) -> list[dict]:
    """The grid of one data set: each relaxation at each temperature, the score function at each
    sample count, for every seed. Rows are ``{"method", "temperature", "n_samples", "seed"}``."""
    runs = []
    for seed in seeds:
        for method in ("eat-sigmoid", "eat-cubic", "gsm"):
            for tau in temperatures:
                runs.append({"method": method, "temperature": float(tau),
                             "n_samples": int(pathwise_samples), "seed": int(seed)})
        for s in score_samples:
            runs.append({"method": "score", "temperature": None, "n_samples": int(s), "seed": int(seed)})
    return runs


def checkpoint_stem(data: CountData, run: dict) -> str:
    """``<family>-<regime>-data<seed>-<method>[-tau<τ>]-S<n>-seed<seed>``: the trainer adds a digest of
    every setting and the run's length (:func:`~hitchhiker.book.common.training.checkpoint_file`)."""
    tau = "" if run["temperature"] is None else f"-tau{run['temperature']:g}"
    return (f"{data.family}-{data.regime}-data{data.seed}-{run['method']}{tau}-S{run['n_samples']}"
            f"-seed{run['seed']}")


#: What :func:`train_model` learns: everything, or the posterior alone under the true generative model.
FITS = ("full", "posterior")
#: The generative model's parameters besides the decoder's.
GENERATIVE_PARAMETERS = ("prior_logit", "prior_raw", "likelihood_raw")


def _fix_generative_model(model: LatentCountModel, truth: LatentCountModel) -> None:
    """Copy ``truth``'s prior, decoder and likelihood dispersions into ``model`` and freeze them."""
    if truth.family.name != model.family.name:
        raise ValueError(f"truth is {truth.family.name!r}, the model {model.family.name!r}")
    with torch.no_grad():
        model.decoder.load_state_dict(truth.decoder.state_dict())
        for name in GENERATIVE_PARAMETERS:
            getattr(model, name).copy_(getattr(truth, name))
    for p in list(model.decoder.parameters()) + [getattr(model, n) for n in GENERATIVE_PARAMETERS]:
        p.requires_grad_(False)


def train_model(data: CountData, method: str, temperature: Optional[float] = None, n_samples: int = 1,
                *, seed: int = 0, epochs: int = 300, batch_size: int = 100, lr: float = 1e-3,
                eval_every: int = 0, eval_samples: int = 16, device=None, checkpoint=None,
                checkpoint_every: int = 50, progress_bar: Optional[bool] = None, fit: str = "full"):
    """Fit a fresh :class:`~.model.LatentCountModel` to ``data.train`` with the book's one trainer
    (:func:`~hitchhiker.book.common.training.train`): the paper's AdamW at a constant ``lr``, batch 100,
    a fresh shuffle of the items every epoch. ``eval_every`` > 0 records the test ELBO (exact draws,
    ``eval_samples`` per item) every ``eval_every`` epochs and at the end.

    ``checkpoint`` is a path stem (the trainer adds a digest of every setting, including the sha256 of
    the training and test counts, and the run's length: changed data train anew into another file); it
    is written every ``checkpoint_every`` epochs and at the end, resumed when unfinished and loaded when
    finished.

    ``fit="posterior"`` learns only the posterior (encoder and posterior dispersions): prior, decoder and
    likelihood dispersions are ``data.truth``'s and stay fixed, so every estimator's test ELBO is
    log p(x) minus the KL divergence of its own q from the true posterior, for one and the same
    model (the generalizability controls, :func:`~.data.simulate_control_data`).

    Returns ``(model, history)`` with ``history = {"loss": [mean training loss per epoch], "eval":
    [(epoch, test ELBO), ...]}``.
    """
    check_method(method, GENERALIZATION_METHODS)
    if fit not in FITS:
        raise ValueError(f"fit={fit!r} is not one of {FITS}")
    if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    seed_everything(seed)
    model = LatentCountModel(data.family)
    if fit == "posterior":
        _fix_generative_model(model, data.truth)
    device = torch.device(device) if device is not None else torch.device("cpu")
    model.to(device)
    train_counts, test_counts = data.train.to(device), data.test.to(device)
    batches = Minibatches(train_counts, batch_size, RandpermOrder(train_counts.shape[0], device))
    per_epoch = batches.steps_per_epoch
    total = epochs * per_epoch
    eval_steps = ([e * per_epoch for e in range(eval_every, epochs, eval_every)] + [total]
                  if eval_every else [])

    def loss_fn(net, batch, step):
        return negative_elbo(net, batch, method, temperature, n_samples)

    def eval_fn(net):
        return evaluate_model(net, test_counts, method, eval_samples, seed=seed)["elbo"]

    read = {"train": data.train, "test": data.test}
    identity = {"model": "latent-count", "family": data.family, "regime": data.regime, "method": method,
                "temperature": temperature, "n_samples": n_samples, "data_seed": data.seed,
                "eval_samples": eval_samples}
    if fit == "posterior":   # (absent for full fits, whose checkpoints keep their names)
        identity["fit"] = fit
        identity["truth"] = data_digest({k: v for k, v in data.truth.state_dict().items()
                                         if k in GENERATIVE_PARAMETERS or k.startswith("decoder.")})
    if checkpoint is not None:
        identity["data"] = data_digest(read)
    history = train(model, loss_fn, batches, Schedule(steps=total, lr=lr), optimizer="adamw", seed=seed,
                    evaluate=eval_fn if eval_every else None, eval_steps=eval_steps,
                    checkpoint=checkpoint, identity=identity, data=read,
                    checkpoint_every=per_epoch * checkpoint_every if checkpoint is not None else None,
                    extend=False, progress_bar=progress_bar, desc=f"{data.family} {data.regime} {method}")
    return model, {"loss": history["loss"],
                   "eval": [(step // per_epoch, value) for step, value in history["eval"]]}


def run_generalization(data: CountData, runs, *, epochs: int = 300, eval_samples: int = 128,
                       checkpoint_dir=None, **train_kwargs):
    """Train and evaluate every run of :func:`generalization_runs` on ``data``.

    Returns ``(rows, curves)``: one row per run with ``family, regime, dispersion, method,
    temperature, n_samples, seed, data_seed, epochs, test_elbo, log_likelihood,
    dispersion_error`` (mean :math:`|\\log\\hat d - \\log d|` of the 32 learned likelihood
    dispersions), ``learned_dispersion`` (their geometric mean), ``posterior_dispersion`` (geometric
    mean of the 8 posterior dispersions; NaN for the Poisson posteriors of EAT), ``last_quarter_gain``
    (:func:`~hitchhiker.book.common.training.last_quarter_gain` of minus the training loss per epoch),
    ``seconds``; and the learning curves as rows ``family, regime, method, temperature, n_samples, seed,
    epoch, train_loss`` (plus ``test_elbo`` where evaluated).
    """
    rows, curves = [], []
    for run in runs:
        start = time.perf_counter()
        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = f"{checkpoint_dir}/{checkpoint_stem(data, run)}"
        model, history = train_model(data, run["method"], run["temperature"], run["n_samples"],
                                     seed=run["seed"], epochs=epochs, checkpoint=checkpoint,
                                     **train_kwargs)
        seconds = time.perf_counter() - start
        model = model.cpu().eval()
        scores = evaluate_model(model, data.test, run["method"], eval_samples, seed=run["seed"])
        learned = model.likelihood_dispersion.detach().double()
        keys = {"family": data.family, "regime": data.regime, "dispersion": data.dispersion, **run}
        rows.append({**keys, "data_seed": data.seed, "epochs": epochs,
                     "test_elbo": scores["elbo"], "log_likelihood": scores["log_likelihood"],
                     "dispersion_error": float((learned.log() - math.log(data.dispersion)).abs().mean()),
                     "learned_dispersion": float(learned.log().mean().exp()),
                     "posterior_dispersion": (float(model.posterior_dispersion.detach().double().log()
                                                    .mean().exp())
                                              if run["method"] in FAMILY_POSTERIOR_METHODS else math.nan),
                     "final_train_loss": history["loss"][-1] if history["loss"] else math.nan,
                     "last_quarter_gain": last_quarter_gain([-loss for loss in history["loss"]]),
                     "n_categories": model.family.n_categories if run["method"] == "gsm" else None,
                     "seconds": seconds})
        evals = dict(history["eval"])
        for epoch, loss in enumerate(history["loss"], start=1):
            curves.append({**keys, "data_seed": data.seed, "epoch": epoch, "train_loss": loss,
                           "test_elbo": evals.get(epoch, math.nan)})
    return rows, curves


def run_generalization_experiment(settings: Optional[dict] = None, checkpoint_dir=None, device=None):
    """Every data set and run of ``settings`` (default: :func:`~.config.generalization_config` at the
    active scale).

    Returns ``(results, curves, seconds)``: DataFrames of :func:`run_generalization`'s rows and curves
    over all data sets, and the wall time.
    """
    settings = generalization_config() if settings is None else settings
    start = time.perf_counter()
    rows, curves = [], []
    for family, regime in settings["datasets"]:
        for data_seed in settings["data_seeds"]:
            data = simulate_count_data(family, regime, seed=data_seed, n_train=settings["n_train"],
                                       n_test=settings["n_test"])
            runs = generalization_runs(settings["temperatures"], settings["score_samples"],
                                       settings["seeds"], settings["pathwise_samples"])
            more_rows, more_curves = run_generalization(
                data, runs, epochs=settings["epochs"], lr=settings["lr"],
                eval_every=settings["eval_every"], eval_samples=settings["eval_samples"],
                checkpoint_dir=checkpoint_dir, device=device)
            rows += more_rows
            curves += more_curves
    return pd.DataFrame(rows), pd.DataFrame(curves), time.perf_counter() - start


def run_generalization_controls(settings: Optional[dict] = None, checkpoint_dir=None, device=None):
    """The generalizability controls and the seeded main comparison of ``settings`` (default:
    :func:`~.config.controls_config` at the active scale), each method at its one fixed setting and every
    seed of ``settings["seeds"]``.

    Returns ``(results, curves, seconds)`` as :func:`run_generalization_experiment`, with a column
    ``experiment``: ``"positive control"`` or ``"negative control"`` (the posterior alone fitted under
    the true generative model, :func:`~.data.simulate_control_data`) or ``"main"`` (the main experiment's
    data sets and training, :func:`~.config.generalization_config`).
    """
    settings = controls_config() if settings is None else settings
    start = time.perf_counter()
    tau = settings["temperature"]
    runs = generalization_runs([tau], [settings["score_samples"]], settings["seeds"])
    rows, curves = [], []
    for control in settings["controls"]:
        data = simulate_control_data(control, n_train=settings["n_train"], n_test=settings["n_test"])
        more_rows, more_curves = run_generalization(
            data, runs, epochs=settings["epochs"], lr=settings["lr"], eval_every=settings["eval_every"],
            eval_samples=settings["eval_samples"], checkpoint_dir=checkpoint_dir, device=device,
            fit="posterior")
        label = {"experiment": f"{control} control"}
        rows += [{**label, **r} for r in more_rows]
        curves += [{**label, **c} for c in more_curves]
    main = settings["main"]
    for family, regime in settings["datasets"]:
        data = simulate_count_data(family, regime, n_train=main["n_train"], n_test=main["n_test"])
        runs = generalization_runs([tau], [settings["score_samples"]], settings["seeds"],
                                   main["pathwise_samples"])
        more_rows, more_curves = run_generalization(
            data, runs, epochs=main["epochs"], lr=main["lr"], eval_every=main["eval_every"],
            eval_samples=main["eval_samples"], checkpoint_dir=checkpoint_dir, device=device)
        rows += [{"experiment": "main", **r} for r in more_rows]
        curves += [{"experiment": "main", **c} for c in more_curves]
    return pd.DataFrame(rows), pd.DataFrame(curves), time.perf_counter() - start
