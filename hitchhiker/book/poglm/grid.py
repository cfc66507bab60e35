r"""Many POGLM runs trained as one batched model: the chapter's grid, trained to convergence.

The POGLM is tiny (5 neurons, 3 taps), so one run is dominated by Python overhead. A
:class:`StackedPOGLM` holds ``R`` independent POGLMs as parameters with a leading run dimension and
evaluates them with grouped convolutions: its loss is the *sum* of the runs' losses, so each run's
gradient is its own, and AdamW (elementwise) updates each run exactly as it would alone. Runs of one
stack share the estimator and the number of Monte Carlo samples; temperatures, data sets and
initialisations may differ per run.

>>> runs = poglm_grid_runs(["paper"], [0.1], [5], seeds=[0])          # doctest: +SKIP
>>> grid = run_poglm_grid({"paper": data}, runs, epochs=600)          # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...distributions import poisson_log_prob
from ...estimators import PATHWISE_METHODS, check_method, surrogate_loss
from ..poglm.model import (POGLM, POGLM_BLOCKS, POGLM_GSM_CATEGORIES, POGLMData, block_errors,
                    recovery_errors)
from ..common.runtime import seed_everything
from ..common.training import last_quarter_gain


class StackedPOGLM(nn.Module):
    r"""``R`` independent :class:`POGLM` s evaluated at once (run dimension first).

    Built from a list of POGLMs (:meth:`from_models`) or from seeds (:meth:`fresh`: run ``r`` starts
    from exactly the initialisation ``torch.manual_seed(seeds[r]); POGLM(...)`` gives). Spike
    tensors are ``(..., R, B, N, T)``: any leading sample dimensions, then runs, sequences, neurons
    and bins.
    """

    def __init__(self, models: Sequence[POGLM]):
        super().__init__()
        models = list(models)
        if not models or not all(isinstance(m, POGLM) for m in models):
            raise ValueError("models must be a non-empty sequence of POGLM")
        first = models[0]
        shape = lambda m: (m.n_visible, m.n_hidden, m.history, m.posterior.kernel_size[0], m.max_rate)
        if any(shape(m) != shape(first) for m in models):
            raise ValueError("every stacked POGLM must have the same sizes and max_rate")
        self.n_runs = len(models)
        self.n_visible, self.n_hidden, self.history = first.n_visible, first.n_hidden, first.history
        self.n_neurons = first.n_neurons
        self.posterior_half_width = first.posterior.kernel_size[0] // 2
        self.max_rate = first.max_rate
        stack = lambda get: nn.Parameter(torch.stack([get(m).detach().clone() for m in models]))
        self.gen_weight = stack(lambda m: m.generative.weight)     # (R, N, N, L)
        self.gen_bias = stack(lambda m: m.generative.bias)         # (R, N)
        self.post_weight = stack(lambda m: m.posterior.weight)     # (R, H, V, 2h+1)
        self.post_bias = stack(lambda m: m.posterior.bias)         # (R, H)

    @classmethod
    def fresh(cls, seeds: Sequence[int], **poglm_kwargs) -> "StackedPOGLM":
        """One freshly initialised POGLM per seed (the initialisation :func:`train_poglm` uses)."""
        models = []
        for seed in seeds:
            torch.manual_seed(int(seed))
            models.append(POGLM(**poglm_kwargs))
        return cls(models)

    def unstack(self, run: int) -> POGLM:
        """Run ``run`` as a stand-alone :class:`POGLM` (a copy, on the CPU)."""
        model = POGLM(self.n_visible, self.n_hidden, self.history, self.posterior_half_width,
                      self.max_rate)
        with torch.no_grad():
            model.generative.weight.copy_(self.gen_weight[run])
            model.generative.bias.copy_(self.gen_bias[run])
            model.posterior.weight.copy_(self.post_weight[run])
            model.posterior.bias.copy_(self.post_bias[run])
        return model

    def _check(self, spikes: torch.Tensor, n_rows: int, name: str) -> None:
        if (not torch.is_tensor(spikes) or spikes.dim() < 4 or spikes.shape[-2] != n_rows
                or spikes.shape[-4] != self.n_runs):
            shape = tuple(spikes.shape) if torch.is_tensor(spikes) else type(spikes).__name__
            raise ValueError(f"{name} must be a tensor of shape (..., {self.n_runs}, n_sequences, "
                             f"{n_rows}, n_bins), got {shape}")

    def _grouped_conv(self, spikes, weight, bias, left: int, right: int) -> torch.Tensor:
        """Each run's Conv1d on its own slice: ``(..., R, B, C, T)`` -> ``(..., R, B, O, T')``."""
        *lead, runs, batch, channels, bins = spikes.shape
        x = spikes.to(weight.dtype).reshape(-1, runs, batch, channels, bins).transpose(1, 2)
        x = F.pad(x.reshape(-1, runs * channels, bins), (left, right))
        out_channels = weight.shape[1]
        out = F.conv1d(x, weight.reshape(runs * out_channels, *weight.shape[2:]),
                       bias.reshape(-1), groups=runs)
        out = out.reshape(-1, batch, runs, out_channels, out.shape[-1]).transpose(1, 2)
        return out.reshape(*lead, runs, batch, out_channels, out.shape[-1])

    def firing_rate(self, spikes: torch.Tensor) -> torch.Tensor:
        """Generative rates, as :meth:`POGLM.firing_rate` run by run. ``(..., R, B, N, T)``."""
        self._check(spikes, self.n_neurons, "spikes")
        drive = self._grouped_conv(spikes, self.gen_weight, self.gen_bias, self.history, 0)[..., :-1]
        return F.softplus(drive).clamp(max=self.max_rate)

    def posterior_rate(self, visible: torch.Tensor) -> torch.Tensor:
        """Posterior rates of the hidden spikes, as :meth:`POGLM.posterior_rate`. ``(..., R, B, H, T)``."""
        self._check(visible, self.n_visible, "visible")
        h = self.posterior_half_width
        return F.softplus(self._grouped_conv(visible, self.post_weight, self.post_bias, h, h)
                          ).clamp(max=self.max_rate)

    def log_joint(self, visible: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x, z)` per run and sequence: ``visible`` ``(R, B, V, T)``, ``hidden``
        ``(..., R, B, H, T)``; returns ``hidden.shape[:-2]``."""
        self._check(hidden, self.n_hidden, "hidden")
        spikes = torch.cat([visible.to(hidden.dtype).expand(*hidden.shape[:-2], *visible.shape[-2:]),
                            hidden], dim=-2)
        return poisson_log_prob(spikes, self.firing_rate(spikes)).sum((-2, -1))


def _run_temperatures(temperature, n_runs: int, like: torch.Tensor):
    """A scalar, or one temperature per run shaped to broadcast against ``(R, B, H, T)`` rates."""
    if temperature is None or isinstance(temperature, (int, float)):
        return temperature
    values = torch.as_tensor(temperature, dtype=like.dtype, device=like.device).reshape(-1)
    if values.numel() != n_runs:
        raise ValueError(f"temperature needs one value per run ({n_runs}), got {values.numel()}")
    return values.reshape(n_runs, 1, 1, 1)


def stacked_negative_elbo(model: StackedPOGLM, visible: torch.Tensor, method: str, temperature=None,
                          n_samples: int = 1, n_categories: int = POGLM_GSM_CATEGORIES) -> torch.Tensor:
    """Minus the ELBO per run, averaged over each run's sequences: shape ``(R,)``.

    The same estimator call as :func:`hitchhiker.book.poglm.negative_elbo` (one
    :func:`hitchhiker.surrogate_loss` over all runs); ``temperature`` is a number or one per run.
    """
    check_method(method, PATHWISE_METHODS + ("score",))
    rate = model.posterior_rate(visible)                          # (R, B, H, T)
    extra = {"n_categories": n_categories} if method == "gsm" else {}
    tau = _run_temperatures(temperature, model.n_runs, rate)

    def per_sample_loss(hidden, log_q):                           # (S, R, B, H, T) -> (S, R, B)
        return log_q.sum((-2, -1)) - model.log_joint(visible, hidden)

    return surrogate_loss(method, rate, per_sample_loss, tau, n_samples, with_log_prob=True,
                          **extra).mean(-1)


def stacked_negative_log_joint(model: StackedPOGLM, spikes: torch.Tensor) -> torch.Tensor:
    r"""The oracle's loss: :math:`-\log p(x, z)` with the hidden spikes *observed*, per run ``(R,)``."""
    v = model.n_visible
    return -model.log_joint(spikes[..., :v, :], spikes[..., v:, :]).mean(-1)


@torch.no_grad()
def evaluate_stacked(model: StackedPOGLM, spikes: torch.Tensor, n_samples: int = 256, seed: int = 0,
                     chunk: int = 64) -> dict:
    r"""Per run, the test ELBO and importance-sampled log-likelihood of :func:`evaluate_poglm`
    (exact counts from :math:`q`; nats per sequence). ``spikes``: ``(R, B, N or V, T)``.

    Returns ``{"elbo": (R,), "log_likelihood": (R,), "log_weights": (S, R, B)}`` (double tensors).
    """
    visible = spikes[..., :model.n_visible, :]
    generator = torch.Generator(device=visible.device).manual_seed(int(seed))
    rate = model.posterior_rate(visible)
    log_w = []
    for start in range(0, n_samples, chunk):
        size = min(chunk, n_samples - start)
        hidden = torch.poisson(rate.expand(size, *rate.shape).contiguous(), generator=generator)
        log_w.append((model.log_joint(visible, hidden)
                      - poisson_log_prob(hidden, rate).sum((-2, -1))).double())
    log_w = torch.cat(log_w)                                               # (S, R, B)
    log_likelihood = torch.logsumexp(log_w, 0) - math.log(n_samples)
    return {"elbo": log_w.mean(0).mean(-1), "log_likelihood": log_likelihood.mean(-1),
            "log_weights": log_w}


def fit_stacked(model: StackedPOGLM, loss_fn: Callable, data: torch.Tensor, *, epochs: int,
                batch_size: int = 8, lr: float = 1e-2, final_lr: float = 1e-4, seed: int = 0,
                eval_fn: Optional[Callable] = None, eval_every: int = 0,
                checkpoint: Optional[str | Path] = None, settings: Optional[dict] = None) -> dict:
    r"""Train every run of a stack with AdamW under a cosine learning-rate schedule.

    Each run draws its own minibatches (a per-run shuffle of its own ``data[r]``; ``data`` is
    ``(R, n_items, ...)``); ``loss_fn(model, batch)`` returns the ``(R,)`` per-run losses, whose sum
    is minimised (so each run sees only its own gradient). The learning rate falls from ``lr`` to
    ``final_lr`` along a half cosine over all steps. ``eval_fn(model) -> (R,)`` is recorded at epoch 0,
    every ``eval_every`` epochs and at the end. When ``checkpoint`` names a file written for the same
    settings, it is loaded instead of training.

    Returns ``{"loss": [(R,) list per epoch], "eval_epoch": [...], "eval": [(R,) list per point],
    "seconds": training time}``.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"need epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
    if not (lr > 0 and final_lr > 0):
        raise ValueError(f"lr and final_lr must be > 0, got {lr} and {final_lr}")
    if data.shape[0] != model.n_runs:
        raise ValueError(f"data must have one slice per run ({model.n_runs}), got shape "
                         f"{tuple(data.shape)}")
    meta = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "final_lr": final_lr, "seed": seed,
            "eval_every": eval_every, "shape": list(data.shape),
            "data_checksum": float(data.double().sum()), **(settings or {})}
    meta = json.loads(json.dumps(meta, default=str))
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        if saved.get("meta") == meta:
            model.load_state_dict(saved["model"])
            return saved["history"]

    start_time = time.perf_counter()
    seed_everything(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    n_runs, n_items = data.shape[:2]
    steps_per_epoch = -(-n_items // batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: (final_lr + 0.5 * (lr - final_lr) * (1 + math.cos(math.pi * step / total))) / lr)
    shuffler = torch.Generator().manual_seed(int(seed))
    runs = torch.arange(n_runs)[:, None]
    history = {"loss": [], "eval_epoch": [], "eval": []}

    def record(epoch):
        if eval_fn is not None:
            history["eval_epoch"].append(epoch)
            history["eval"].append([float(v) for v in eval_fn(model)])

    if eval_every:
        record(0)
    for epoch in range(1, epochs + 1):
        order = torch.argsort(torch.rand(n_runs, n_items, generator=shuffler), dim=1)
        running = torch.zeros(n_runs, dtype=torch.float64)
        for begin in range(0, n_items, batch_size):
            index = order[:, begin:begin + batch_size]
            losses = loss_fn(model, data[runs, index])
            if not torch.isfinite(losses).all():
                raise FloatingPointError(f"a stacked POGLM loss became non-finite at epoch {epoch}")
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            schedule.step()
            running += losses.detach().double() * index.shape[1]
        history["loss"].append((running / n_items).tolist())
        if eval_fn is not None and ((eval_every and epoch % eval_every == 0) or epoch == epochs):
            if not history["eval_epoch"] or history["eval_epoch"][-1] != epoch:
                record(epoch)
    history["seconds"] = time.perf_counter() - start_time
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": model.state_dict(), "history": history, "meta": meta}, path)
    return history


# ------------------------------------------------------------------------------------------ the grid
def poglm_grid_runs(regimes: Sequence[str], temperatures: Sequence[float], score_samples: Sequence[int],
                    seeds: Sequence[int], pathwise_samples: int = 5,
                    relaxations: Sequence[str] = ("eat-sigmoid", "eat-cubic", "gsm")) -> list[dict]:
    """The Figure 4 (bottom) grid: each relaxation at each temperature (``pathwise_samples`` draws),
    the score function at each sample count, for every regime and seed. Rows are
    ``{"regime", "method", "temperature", "n_samples", "seed"}``."""
    runs = []
    for regime in regimes:
        for seed in seeds:
            for s in score_samples:
                runs.append({"regime": regime, "method": "score", "temperature": None,
                             "n_samples": int(s), "seed": int(seed)})
            for method in relaxations:
                for tau in temperatures:
                    runs.append({"regime": regime, "method": method, "temperature": float(tau),
                                 "n_samples": int(pathwise_samples), "seed": int(seed)})
    return runs


def poglm_checkpoint_name(method: str, n_samples: int, runs: Sequence[dict], settings: dict,
                          kind: str = "elbo") -> str:
    """File name of one stack's checkpoint: what it trains, plus a digest of every run and setting
    (so a changed grid never reloads a stale stack)."""
    digest = hashlib.sha1(json.dumps([list(map(dict, runs)), settings], sort_keys=True,
                                     default=str).encode()).hexdigest()[:10]
    return f"poglm-{kind}-{method}-S{n_samples}-{len(runs)}runs-{digest}.pt"


@dataclass
class POGLMGrid:
    """What :func:`run_poglm_grid` returns: one row per run, the test-ELBO curves, the trained models
    (``models[i]`` belongs to ``rows[i]``) and each stack's training time."""

    rows: list
    curves: list
    models: list
    seconds: dict = field(default_factory=dict)


def run_poglm_grid(datasets: dict, runs: Sequence[dict], *, epochs: int, batch_size: int = 8,
                   lr: float = 1e-2, final_lr: float = 1e-4, eval_every: int = 10,
                   curve_samples: int = 32, eval_samples: int = 256,
                   n_categories: int = POGLM_GSM_CATEGORIES, posterior_half_width: int = 3,
                   checkpoint_dir: str | Path | None = None, train_seed: int = 0) -> POGLMGrid:
    """Train every run (one stack per estimator and sample count) and evaluate it.

    ``datasets`` maps each run's ``regime`` to its :class:`POGLMData`. Every run starts from
    ``torch.manual_seed(seed); POGLM()``; the minibatch order and the Monte Carlo draws of a stack
    come from ``train_seed`` (so a run's numbers depend on the stack it was trained in, reproducibly).
    The test-ELBO curve is measured every ``eval_every`` epochs with ``curve_samples`` exact draws;
    the final numbers with ``eval_samples``.

    Rows: the run's keys plus ``n_categories``, ``epochs``, ``test_elbo``, ``test_log_likelihood``,
    ``weight_error``, ``bias_error``, ``final_train_loss`` and ``last_quarter_gain`` (of the curve).
    Curves: ``{regime, method, temperature, n_samples, seed, epoch, test_elbo}``.
    """
    runs = [dict(r) for r in runs]
    groups: dict = {}
    for i, run in enumerate(runs):
        if run["regime"] not in datasets:
            raise ValueError(f"no data set for regime {run['regime']!r}")
        groups.setdefault((run["method"], run["n_samples"]), []).append(i)
    rows, curves, models = [None] * len(runs), [], [None] * len(runs)
    seconds = {}
    for (method, n_samples), members in groups.items():
        group = [runs[i] for i in members]
        first = datasets[group[0]["regime"]]
        model = StackedPOGLM.fresh([r["seed"] for r in group], n_visible=first.n_visible,
                                   n_hidden=first.n_hidden, history=first.weight.shape[-1],
                                   posterior_half_width=posterior_half_width,
                                   max_rate=first.max_rate)
        train = torch.stack([datasets[r["regime"]].train[:, :first.n_visible] for r in group])
        test = torch.stack([datasets[r["regime"]].test for r in group])
        taus = None if method == "score" else [r["temperature"] for r in group]
        settings = {"method": method, "n_samples": n_samples, "runs": group, "train_seed": train_seed,
                    "n_categories": n_categories if method == "gsm" else None,
                    "posterior_half_width": posterior_half_width, "curve_samples": curve_samples}

        def loss_fn(net, batch, method=method, taus=taus, n_samples=n_samples):
            return stacked_negative_elbo(net, batch, method, taus, n_samples, n_categories)

        def eval_fn(net, test=test):
            return evaluate_stacked(net, test, curve_samples, seed=1)["elbo"]

        checkpoint = None
        if checkpoint_dir is not None:
            checkpoint = Path(checkpoint_dir) / poglm_checkpoint_name(
                method, n_samples, group, {"epochs": epochs, "lr": lr, "final_lr": final_lr,
                                           "batch_size": batch_size, **settings})
        with warnings.catch_warnings():
            # GSM warns that K = 8 drops Poisson mass at large rates; the chapter measures that
            # truncation itself (the regimes' rates against K), so one warning per step is noise.
            warnings.filterwarnings("ignore", message="GumbelSoftmaxPoisson: n_categories")
            history = fit_stacked(model, loss_fn, train, epochs=epochs, batch_size=batch_size, lr=lr,
                                  final_lr=final_lr, seed=train_seed, eval_fn=eval_fn,
                                  eval_every=eval_every, checkpoint=checkpoint, settings=settings)
        seconds[method, n_samples] = history["seconds"]
        scores = evaluate_stacked(model, test, eval_samples, seed=0)
        for k, (i, run) in enumerate(zip(members, group)):
            data = datasets[run["regime"]]
            single = model.unstack(k)
            errors = recovery_errors(single, data.weight, data.bias)
            curve = [values[k] for values in history["eval"]]
            rows[i] = {**run, "n_categories": n_categories if method == "gsm" else None,
                       "epochs": epochs, "test_elbo": float(scores["elbo"][k]),
                       "test_log_likelihood": float(scores["log_likelihood"][k]),
                       "weight_error": errors["weight_error"], "bias_error": errors["bias_error"],
                       "final_train_loss": history["loss"][-1][k],
                       "last_quarter_gain": last_quarter_gain(curve)}
            curves += [{**run, "epoch": epoch, "test_elbo": value}
                       for epoch, value in zip(history["eval_epoch"], curve)]
            models[i] = single
    return POGLMGrid(rows, curves, models, seconds)


def fit_oracle(datasets: dict, keys: Sequence[tuple], *, epochs: int, batch_size: int = 8,
               lr: float = 1e-2, final_lr: float = 1e-4, eval_every: int = 10,
               checkpoint_dir: str | Path | None = None, train_seed: int = 0) -> dict:
    """The reference fit with the hidden spikes *observed*: maximum likelihood of the GLM on all
    neurons, same optimiser and schedule. ``keys`` are ``(regime, seed)`` pairs; returns
    ``{key: (POGLM, curve)}`` where ``curve`` is ``[(epoch, test log p(x, z) per sequence)]``."""
    keys = [tuple(k) for k in keys]
    first = datasets[keys[0][0]]
    model = StackedPOGLM.fresh([seed for _, seed in keys], n_visible=first.n_visible,
                               n_hidden=first.n_hidden, history=first.weight.shape[-1],
                               max_rate=first.max_rate)
    train = torch.stack([datasets[regime].train for regime, _ in keys])
    test = torch.stack([datasets[regime].test for regime, _ in keys])

    def eval_fn(net):
        with torch.no_grad():
            return -stacked_negative_log_joint(net, test)

    settings = {"kind": "oracle", "keys": keys, "train_seed": train_seed}
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / poglm_checkpoint_name(
            "oracle", 0, [{"key": k} for k in keys], {"epochs": epochs, "lr": lr, **settings}, "oracle")
    history = fit_stacked(model, lambda net, batch: stacked_negative_log_joint(net, batch), train,
                          epochs=epochs, batch_size=batch_size, lr=lr, final_lr=final_lr,
                          seed=train_seed, eval_fn=eval_fn, eval_every=eval_every,
                          checkpoint=checkpoint, settings=settings)
    return {key: (model.unstack(k), list(zip(history["eval_epoch"], [v[k] for v in history["eval"]])))
            for k, key in enumerate(keys)}


def recovery_table(rows: Sequence[dict], models: Sequence[POGLM], datasets: dict,
                   oracles: dict) -> list[dict]:
    """Per run and block (:data:`POGLM_BLOCKS`): ``error`` of the trained model, ``null_error`` of
    :math:`W = 0` and ``oracle_error`` of the hidden-spikes-observed fit for the same regime and seed
    (``oracles`` from :func:`fit_oracle`)."""
    out = []
    for row, model in zip(rows, models):
        data = datasets[row["regime"]]
        v = data.n_visible
        learned = block_errors(data.weight, model.weight, v)
        null = block_errors(data.weight, torch.zeros_like(data.weight), v)
        oracle = block_errors(data.weight, oracles[row["regime"], row["seed"]][0].weight, v)
        for block in POGLM_BLOCKS:
            out.append({"regime": row["regime"], "method": row["method"],
                        "temperature": row["temperature"], "n_samples": row["n_samples"],
                        "seed": row["seed"], "block": block, "error": learned[block],
                        "null_error": null[block], "oracle_error": oracle[block]})
    return out


def fit_posterior_only(data: POGLMData, weight: torch.Tensor, bias: torch.Tensor, seeds: Sequence[int],
                       method: str = "eat-cubic", temperature: float = 0.1, n_samples: int = 5, *,
                       epochs: int, batch_size: int = 8, lr: float = 1e-2, final_lr: float = 1e-4,
                       checkpoint_dir: str | Path | None = None, train_seed: int = 0) -> StackedPOGLM:
    """A posterior trained for *fixed* generative weights (one run per seed): the ELBO and
    importance-sampled likelihood of a given network, e.g. the ground truth, on the same footing as
    the learned models."""
    model = StackedPOGLM.fresh(seeds, n_visible=data.n_visible, n_hidden=data.n_hidden,
                               history=weight.shape[-1], max_rate=data.max_rate)
    with torch.no_grad():
        model.gen_weight.copy_(weight.expand_as(model.gen_weight))
        model.gen_bias.copy_(bias.expand_as(model.gen_bias))
    model.gen_weight.requires_grad_(False)
    model.gen_bias.requires_grad_(False)
    train = data.train[:, :data.n_visible].expand(len(seeds), *data.train[:, :data.n_visible].shape)
    settings = {"kind": "posterior-only", "method": method, "temperature": temperature,
                "n_samples": n_samples, "seeds": list(seeds),
                "weight_checksum": float(weight.double().abs().sum()), "train_seed": train_seed}
    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / poglm_checkpoint_name(
            method, n_samples, [{"seeds": list(seeds)}], {"epochs": epochs, "lr": lr, **settings},
            "posterior-only")
    fit_stacked(model, lambda net, batch: stacked_negative_elbo(net, batch, method, temperature,
                                                                n_samples),
                train.contiguous(), epochs=epochs, batch_size=batch_size, lr=lr, final_lr=final_lr,
                seed=train_seed, checkpoint=checkpoint, settings=settings)
    return model


def log_likelihood_se(log_weights: torch.Tensor) -> torch.Tensor:
    r"""Monte Carlo standard error of the importance-sampled log-likelihood per sequence, per run.

    ``log_weights``: ``(S, R, B)`` from :func:`evaluate_stacked`. For sequence ``b`` the estimate
    :math:`\log \bar w_b` has, by the delta method, variance :math:`\mathrm{Var}(w_b) / (S\,\bar w_b^2)`;
    the mean over the ``B`` sequences has the square root of the summed variances over ``B``.
    Returns ``(R,)``.
    """
    n = log_weights.shape[0]
    w = torch.exp(log_weights - log_weights.max(0).values)          # rescaled per sequence
    relative_var = w.var(0) / (n * w.mean(0) ** 2)                   # (R, B)
    return relative_var.sum(-1).sqrt() / log_weights.shape[-1]


#: The attempts to recover the hidden blocks, each a change to the grid's training run:
#: ten times the training sequences (the paper generated ten data sets; batch 40 and half the epochs
#: keep the number of steps), a posterior that sees ten bins either side instead of three, and four
#: times the epochs.
RECOVERY_ATTEMPTS = {
    "10x sequences": {"n_train": 400, "batch_size": 40, "epochs_factor": 0.5},
    "posterior sees +-10 bins": {"posterior_half_width": 10},
    "4x epochs": {"epochs_factor": 4},
}


def run_recovery_attempts(regimes: Sequence[str], seeds: Sequence[int], method: str = "eat-cubic",
                          temperature: Optional[float] = 0.1, n_samples: int = 5, *, epochs: int,
                          data_seed: int = 0, attempts: Optional[dict] = None,
                          checkpoint_dir: str | Path | None = None, **grid_kwargs) -> tuple:
    """Train ``method`` under each of :data:`RECOVERY_ATTEMPTS` and measure every block.

    For each attempt the data set of each regime is redrawn with ``simulate_poglm_data(data_seed,
    regime=..., n_train=...)`` (the same ground truth: the weights are drawn first), and the oracle is
    refitted on it. Returns ``(recovery rows with an "attempt" column, grid rows with "attempt")``.
    """
    from ..poglm.model import simulate_poglm_data

    attempts = RECOVERY_ATTEMPTS if attempts is None else attempts
    recovery, rows = [], []
    for name, spec in attempts.items():
        spec = dict(spec)
        n_train = spec.pop("n_train", 40)
        factor = spec.pop("epochs_factor", 1)
        batch_size = spec.pop("batch_size", grid_kwargs.get("batch_size", 8))
        half_width = spec.pop("posterior_half_width", 3)
        if spec:
            raise ValueError(f"attempt {name!r} has unknown settings {sorted(spec)}")
        n_epochs = max(1, int(round(epochs * factor)))
        datasets = {r: simulate_poglm_data(data_seed, regime=r, n_train=n_train) for r in regimes}
        runs = [{"regime": r, "method": method, "temperature": temperature, "n_samples": n_samples,
                 "seed": int(s)} for r in regimes for s in seeds]
        kwargs = {**grid_kwargs, "batch_size": batch_size}
        grid = run_poglm_grid(datasets, runs, epochs=n_epochs, posterior_half_width=half_width,
                              checkpoint_dir=checkpoint_dir, **kwargs)
        oracle_kwargs = {k: v for k, v in kwargs.items() if k in ("batch_size", "lr", "final_lr",
                                                                  "eval_every", "train_seed")}
        oracles = fit_oracle(datasets, [(r, int(s)) for r in regimes for s in seeds], epochs=n_epochs,
                             checkpoint_dir=checkpoint_dir, **oracle_kwargs)
        recovery += [{"attempt": name, **row}
                     for row in recovery_table(grid.rows, grid.models, datasets, oracles)]
        rows += [{"attempt": name, **row} for row in grid.rows]
    return recovery, rows


def compare_likelihoods(data: POGLMData, models: dict, n_samples: int = 4096, seed: int = 0) -> list:
    """Importance-sampled log-likelihood (with its Monte Carlo standard error) and ELBO of several
    networks on the same training and test sequences, e.g. the truth against learned fits.

    ``models`` maps a label to a :class:`POGLM` (its own posterior is the proposal). Returns rows
    ``{"model", "split", "elbo", "log_likelihood", "log_likelihood_se"}`` (nats per sequence).
    """
    labels = list(models)
    stack = StackedPOGLM([models[k] for k in labels])
    out = []
    for split, spikes in (("train", data.train), ("test", data.test)):
        scores = evaluate_stacked(stack, spikes.expand(len(labels), *spikes.shape).contiguous(),
                                  n_samples, seed)
        se = log_likelihood_se(scores["log_weights"])
        out += [{"model": label, "split": split, "elbo": float(scores["elbo"][k]),
                 "log_likelihood": float(scores["log_likelihood"][k]),
                 "log_likelihood_se": float(se[k])} for k, label in enumerate(labels)]
    return out


def regime_summary(datasets: dict, n_categories: int = POGLM_GSM_CATEGORIES) -> list:
    """Per regime, the true rates that an estimator must cover: mean and largest rate, the share of
    bins at the clamp, and the Poisson mass a GSM truncated to ``n_categories`` drops,
    :math:`P(z \\ge K)`, averaged over all bins and at the largest rate."""
    from ...distributions import poisson_log_prob as log_pmf

    out = []
    counts = torch.arange(n_categories, dtype=torch.float64)
    for regime, data in datasets.items():
        rates = torch.cat([data.train_rates.flatten(), data.test_rates.flatten()]).double()
        kept = lambda lam: log_pmf(counts, lam[..., None]).exp().sum(-1)       # P(z < K)
        out.append({"regime": regime, "mean_rate": float(rates.mean()), "max_rate": float(rates.max()),
                    "clamp_share": data.clamp_share(),
                    "tail_mass_mean": float((1 - kept(rates)).mean()),
                    "tail_mass_at_max": float(1 - kept(rates.max()))})
    return out


@torch.no_grad()
def posterior_rate_summary(rows: Sequence[dict], models: Sequence[POGLM], datasets: dict,
                           method: str = "gsm", n_categories: int = POGLM_GSM_CATEGORIES) -> list:
    """Per regime, the posterior rates that ``method``'s trained models put on the hidden spikes of
    the test sequences: the largest, and the Poisson mass :math:`P(z \\ge K)` a GSM with
    ``n_categories`` drops at it and on average over bins."""
    from ...distributions import poisson_log_prob as log_pmf

    counts = torch.arange(n_categories, dtype=torch.float64)
    rates: dict = {}
    for row, model in zip(rows, models):
        if row["method"] == method:
            data = datasets[row["regime"]]
            rates.setdefault(row["regime"], []).append(
                model.posterior_rate(data.test[:, :data.n_visible]).double().flatten())
    out = []
    for regime, values in rates.items():
        values = torch.cat(values)
        tail = 1 - log_pmf(counts, values[:, None]).exp().sum(-1)
        out.append({"regime": regime, "max_posterior_rate": float(values.max()),
                    "tail_mass_mean": float(tail.mean()), "tail_mass_at_max": float(tail.max())})
    return out
