r"""The chapter's grid of POGLM runs, trained to convergence, with the references it is judged against.

Runs of one estimator and sample count train together as the members of one :class:`POGLM` (its loss is
the sum of the members' losses, so each member's gradient is its own, and AdamW, elementwise, updates
each member exactly as it would alone). Members of one stack share the estimator and the number of Monte
Carlo samples; temperatures, data sets and initialisations may differ per member. The oracle
(:func:`fit_oracle`) fits the same GLM with the hidden spikes observed; :func:`fit_posterior_only` fits
only a posterior for given generative weights (e.g. the truth); :func:`run_recovery_attempts` retrains
under changed data, posterior width or length.

>>> runs = poglm_grid_runs(["paper"], [0.1], [2], seeds=[0])
>>> [(r["method"], r["temperature"], r["n_samples"]) for r in runs]
[('score', None, 2), ('eat-sigmoid', 0.1, 5), ('eat-cubic', 0.1, 5), ('gsm', 0.1, 5)]
>>> grid = run_poglm_grid({"paper": data}, runs, epochs=600)          # doctest: +SKIP
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..common.checkpoint import atomic_save, content_digest, data_digest, load_checkpoint
from ..common.minibatches import GeneratorOrder, Minibatches
from ..common.schedule import Schedule
from ..common.training import last_quarter_gain, train
from .model import (
    POGLM,
    POGLM_GSM_CATEGORIES,
    TEMPERATURE_RULES,
    POGLMData,
    evaluate,
    negative_elbo,
    negative_log_joint,
    simulate_poglm_data,
)
from .recovery import elbo_se, log_likelihood_se, recovery_errors, recovery_table


def fit_members(model: POGLM, loss_fn: Callable, data: torch.Tensor, *, epochs: int, batch_size: int = 8,
                lr: float = 1e-2, final_lr: float = 1e-4, seed: int = 0, eval_fn: Optional[Callable] = None,
                eval_every: int = 0, checkpoint: str | Path | None = None, identity: Optional[dict] = None,
                read: Optional[dict] = None, checkpoint_every: int = 50) -> dict:
    r"""Train every member of a :class:`POGLM` with AdamW under a cosine learning-rate schedule, through
    the book's one trainer (:func:`~hitchhiker.book.common.training.train`).

    Each member draws its own minibatches (a per-member shuffle of its own ``data[m]``; ``data`` is
    ``(M, n_items, ...)``, the shuffles from one generator seeded with ``seed``); ``loss_fn(model,
    batch)`` returns the ``(M,)`` per-member losses, whose sum is minimised (so each member sees only
    its own gradient). The learning rate falls from ``lr`` to ``final_lr`` along a half cosine over all
    steps. ``eval_fn(model) -> (M,)`` is recorded at epoch 0 (when ``eval_every``), every ``eval_every``
    epochs and at the end.

    ``checkpoint`` is a path stem: :func:`~hitchhiker.book.common.training.checkpoint_file` adds a
    digest of ``identity`` (which must hold every setting of the run) together with the sha256 of
    ``data`` and of every tensor in ``read`` (everything else the run reads, e.g. the test spikes of
    ``eval_fn``), and the run's length. So changed data or settings train anew into another file,
    never reload an old one. The file is written every ``checkpoint_every`` epochs and at the end,
    resumed when unfinished and loaded when finished.

    Returns ``{"loss": [(M,) list per epoch], "eval_epoch": [...], "eval": [(M,) list per point],
    "seconds": training time}``.
    """
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"need epochs >= 1 and batch_size >= 1, got {epochs} and {batch_size}")
    if not (lr > 0 and final_lr > 0):
        raise ValueError(f"lr and final_lr must be > 0, got {lr} and {final_lr}")
    if data.shape[0] != model.n_members:
        raise ValueError(f"data must have one slice per member ({model.n_members}), got shape "
                         f"{tuple(data.shape)}")
    n_members, n_items = data.shape[:2]
    batches = Minibatches(data, batch_size, GeneratorOrder(n_members, n_items, seed), per_member=True)
    per_epoch = batches.steps_per_epoch
    total = epochs * per_epoch
    schedule = Schedule(steps=total, lr=lr, lr_final=final_lr, decay_steps=total, cosine_form="lambdalr")
    eval_steps = set()
    if eval_fn is not None:
        eval_steps = {total} | ({e * per_epoch for e in range(0, epochs + 1, eval_every)} if eval_every
                                else set())
    read = {"train": data, **(read or {})}
    if checkpoint is not None:
        identity = {**(identity or {}), "data": data_digest(read)}
    history = train(model, lambda net, batch, step: loss_fn(net, batch), batches, schedule,
                    optimizer="adamw", seed=seed, evaluate=eval_fn, eval_steps=sorted(eval_steps),
                    checkpoint=checkpoint, identity=identity, data=read,
                    checkpoint_every=per_epoch * checkpoint_every if checkpoint is not None else None,
                    extend=False, progress_bar=False)
    return {"loss": history["loss"], "eval_epoch": [step // per_epoch for step, _ in history["eval"]],
            "eval": [value for _, value in history["eval"]], "seconds": history["seconds"]}


def cached_evaluation(directory: str | Path | None, model: POGLM, spikes: torch.Tensor, settings: dict,
                      compute: Callable[[], dict]) -> dict:
    """``compute()`` (a dict of tensors: an evaluation of ``model`` on ``spikes``), stored once in
    ``directory`` and read back on later calls.

    The file is named by the sha256 of everything the result depends on -- every parameter of
    ``model``, the bytes of ``spikes`` and ``settings`` (sample sizes, seeds, what is computed) -- so a
    retrained model or other data never reads an old result. It is written atomically with a content
    digest and read with ``weights_only=True`` (:func:`~hitchhiker.book.common.checkpoint.load_checkpoint`:
    a damaged file is an error, never recomputed over). Without ``directory``: just ``compute()``.
    """
    if directory is None:
        return compute()
    key = {"settings": settings, "spikes": data_digest({"spikes": spikes}),
           "parameters": content_digest({name: p.detach().cpu() for name, p in model.named_parameters()})}
    path = Path(directory) / f"poglm-evaluation-{content_digest(key)[:16]}.pt"
    if path.exists():
        saved = load_checkpoint(path, finite=())
        if saved["key"] != key:
            raise ValueError(f"{path} holds another evaluation (its key differs): delete it")
        return saved["values"]
    values = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({"key": key, "values": values}, path)
    return values


def _checkpoint_stem(checkpoint_dir, kind: str, method: str, n_samples: int, n_members: int):
    """``<dir>/poglm-<kind>-<method>-S<n>-<M>members`` (the trainer adds a digest of every setting and
    the length), or ``None`` without a folder."""
    if checkpoint_dir is None:
        return None
    return Path(checkpoint_dir) / f"poglm-{kind}-{method}-S{n_samples}-{n_members}members"


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
                   checkpoint_dir: str | Path | None = None, train_seed: int = 0,
                   init: Optional[Sequence[POGLM]] = None, heldout_samples: int = 0) -> POGLMGrid:
    """Train every run (one stack per estimator, sample count and baseline) and evaluate it.

    ``datasets`` maps each run's ``regime`` to its :class:`POGLMData`. Every run starts from
    ``torch.manual_seed(seed); POGLM()``; the minibatch order and the Monte Carlo draws of a stack
    come from ``train_seed`` (so a run's numbers depend on the stack it was trained in, reproducibly).
    A run may set ``"baseline"`` (score only: ``False`` drops the leave-one-out baseline, see
    :func:`~hitchhiker.book.poglm.model.negative_elbo`) and ``"temperature_rule"`` (EAT-cubic only:
    ``"rate-adaptive"``, its ``temperature`` then the base of the per-element rule, see
    :func:`~hitchhiker.book.poglm.model.adaptive_temperatures`); ``init[i]``, a one-member :class:`POGLM`,
    is where run ``i`` starts
    instead (every parameter copied; e.g. the true weights with a posterior refitted to them).
    The test-ELBO curve is measured every ``eval_every`` epochs with ``curve_samples`` exact draws;
    the final numbers with ``eval_samples``; with ``heldout_samples > 0`` the test ELBO and
    importance-sampled log-likelihood are measured again with that many draws (another seed), with
    their Monte Carlo standard errors (:func:`~.recovery.elbo_se`, :func:`~.recovery.log_likelihood_se`).

    Rows: the run's keys plus ``n_categories``, ``epochs``, ``initial_weight_error`` (of the start, as
    ``weight_error``: 0 where a run starts at the true weights), ``test_elbo``, ``test_log_likelihood``,
    ``weight_error``, ``bias_error``, ``final_train_loss`` and ``last_quarter_gain`` (of the curve);
    with ``heldout_samples``: ``heldout_samples``, ``heldout_elbo``, ``heldout_elbo_se``,
    ``heldout_log_likelihood`` and ``heldout_log_likelihood_se``.
    Curves: ``{regime, method, temperature, n_samples, seed, epoch, test_elbo}``.
    """
    runs = [dict(r) for r in runs]
    if init is not None and len(init) != len(runs):
        raise ValueError(f"init must hold one model per run ({len(runs)}), got {len(init)}")
    if isinstance(heldout_samples, bool) or not isinstance(heldout_samples, int) or heldout_samples < 0:
        raise ValueError(f"heldout_samples must be an integer >= 0, got {heldout_samples!r}")
    groups: dict = {}
    for i, run in enumerate(runs):
        if run["regime"] not in datasets:
            raise ValueError(f"no data set for regime {run['regime']!r}")
        baseline = run.get("baseline")
        if baseline is not None and (run["method"] != "score" or not isinstance(baseline, bool)):
            raise ValueError(f"run {i}: baseline must be True or False and only for method 'score', got "
                             f"{baseline!r} for {run['method']!r}")
        rule = run.get("temperature_rule")
        if rule is not None and (rule not in TEMPERATURE_RULES or run["method"] != "eat-cubic"):
            raise ValueError(f"run {i}: temperature_rule must be one of {TEMPERATURE_RULES} and only for "
                             f"method 'eat-cubic', got {rule!r} for {run['method']!r}")
        groups.setdefault((run["method"], run["n_samples"], baseline, rule), []).append(i)
    rows, curves, models = [None] * len(runs), [], [None] * len(runs)
    seconds = {}
    for (method, n_samples, baseline, rule), members in groups.items():
        group = [runs[i] for i in members]
        first = datasets[group[0]["regime"]]
        model = POGLM(first.n_visible, first.n_hidden, first.weight.shape[-1], posterior_half_width,
                      first.max_rate, len(group), seeds=[r["seed"] for r in group])
        read = {}
        if init is not None:
            start = POGLM.from_members([init[i] for i in members])
            if start._sizes() != model._sizes():
                raise ValueError("init models must have the sizes of the grid's models")
            with torch.no_grad():
                for name, param in model.named_parameters():
                    param.copy_(getattr(start, name))
                    read[f"init_{name}"] = param.detach().clone()
        initial = [recovery_errors(model.member(k), datasets[r["regime"]].weight, datasets[r["regime"]].bias)
                   ["weight_error"] for k, r in enumerate(group)]
        train = torch.stack([datasets[r["regime"]].train[:, :first.n_visible] for r in group])
        test = torch.stack([datasets[r["regime"]].test for r in group])
        taus = None if method == "score" else [r["temperature"] for r in group]
        identity = {"kind": "elbo", "method": method, "n_samples": n_samples, "runs": group,
                    "n_categories": n_categories if method == "gsm" else None,
                    "posterior_half_width": posterior_half_width, "max_rate": first.max_rate,
                    "curve_samples": curve_samples, "eval_every": eval_every}

        def loss_fn(net, batch, method=method, taus=taus, n_samples=n_samples, baseline=baseline, rule=rule):
            return negative_elbo(net, batch, method, taus, n_samples, n_categories, baseline=baseline,
                                 temperature_rule=rule)

        def eval_fn(net, test=test):
            return evaluate(net, test, curve_samples, seed=1)["elbo"]

        with warnings.catch_warnings():
            # GSM warns that K = 8 drops Poisson mass at large rates; the chapter measures that
            # truncation itself (the regimes' rates against K), so one warning per step is noise.
            warnings.filterwarnings("ignore", message="GumbelSoftmaxPoisson: n_categories")
            history = fit_members(model, loss_fn, train, epochs=epochs, batch_size=batch_size, lr=lr,
                                  final_lr=final_lr, seed=train_seed, eval_fn=eval_fn,
                                  eval_every=eval_every, identity=identity, read={"test": test, **read},
                                  checkpoint=_checkpoint_stem(checkpoint_dir, "elbo", method, n_samples,
                                                              len(group)))
        key = (method, n_samples) + ((baseline,) if baseline is not None else ()) + ((rule,) if rule else ())
        seconds[key] = history["seconds"]
        def final_scores(model=model, test=test):
            scores = evaluate(model, test, eval_samples, seed=0)
            out = {"elbo": scores["elbo"], "log_likelihood": scores["log_likelihood"]}
            if heldout_samples:
                precise = evaluate(model, test, heldout_samples, seed=2)
                out.update({"heldout_elbo": precise["elbo"],
                            "heldout_elbo_se": elbo_se(precise["log_weights"]),
                            "heldout_log_likelihood": precise["log_likelihood"],
                            "heldout_log_likelihood_se": log_likelihood_se(precise["log_weights"])})
            return out

        scores = cached_evaluation(checkpoint_dir, model, test, {"eval": [eval_samples, 0],
                                                                  "heldout": [heldout_samples, 2]},
                                   final_scores)
        heldout = {}
        if heldout_samples:
            heldout = {"heldout_samples": heldout_samples,
                       **{k: v for k, v in scores.items() if k.startswith("heldout_")}}
        for k, (i, run) in enumerate(zip(members, group)):
            data = datasets[run["regime"]]
            single = model.member(k)
            errors = recovery_errors(single, data.weight, data.bias)
            curve = [values[k] for values in history["eval"]]
            rows[i] = {**run, "n_categories": n_categories if method == "gsm" else None,
                       "epochs": epochs, "initial_weight_error": initial[k],
                       "test_elbo": float(scores["elbo"][k]),
                       "test_log_likelihood": float(scores["log_likelihood"][k]),
                       "weight_error": errors["weight_error"], "bias_error": errors["bias_error"],
                       "final_train_loss": history["loss"][-1][k],
                       "last_quarter_gain": last_quarter_gain(curve),
                       **{key: (value if isinstance(value, int) else float(value[k]))
                          for key, value in heldout.items()}}
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
    model = POGLM(first.n_visible, first.n_hidden, first.weight.shape[-1], max_rate=first.max_rate,
                  n_members=len(keys), seeds=[seed for _, seed in keys])
    train = torch.stack([datasets[regime].train for regime, _ in keys])
    test = torch.stack([datasets[regime].test for regime, _ in keys])

    def eval_fn(net):
        with torch.no_grad():
            return -negative_log_joint(net, test)

    identity = {"kind": "oracle", "keys": keys, "max_rate": first.max_rate, "eval_every": eval_every}
    history = fit_members(model, negative_log_joint, train, epochs=epochs, batch_size=batch_size, lr=lr,
                          final_lr=final_lr, seed=train_seed, eval_fn=eval_fn, eval_every=eval_every,
                          identity=identity, read={"test": test},
                          checkpoint=_checkpoint_stem(checkpoint_dir, "oracle", "oracle", 0, len(keys)))
    return {key: (model.member(k), list(zip(history["eval_epoch"], [v[k] for v in history["eval"]])))
            for k, key in enumerate(keys)}


def fit_posterior_only(data: POGLMData, weight: torch.Tensor, bias: torch.Tensor, seeds: Sequence[int],
                       method: str = "eat-cubic", temperature: float = 0.1, n_samples: int = 5, *,
                       epochs: int, batch_size: int = 8, lr: float = 1e-2, final_lr: float = 1e-4,
                       checkpoint_dir: str | Path | None = None, train_seed: int = 0) -> POGLM:
    """A posterior trained for *fixed* generative weights (one run per seed): the ELBO and
    importance-sampled likelihood of a given network, e.g. the ground truth, on the same footing as
    the learned models."""
    model = POGLM(data.n_visible, data.n_hidden, weight.shape[-1], max_rate=data.max_rate,
                  n_members=len(seeds), seeds=seeds)
    with torch.no_grad():
        model.gen_weight.copy_(weight.expand_as(model.gen_weight))
        model.gen_bias.copy_(bias.expand_as(model.gen_bias))
    model.gen_weight.requires_grad_(False)
    model.gen_bias.requires_grad_(False)
    train = data.train[:, :data.n_visible].expand(len(seeds), *data.train[:, :data.n_visible].shape)
    identity = {"kind": "posterior-only", "method": method, "temperature": temperature,
                "n_samples": n_samples, "seeds": [int(s) for s in seeds], "max_rate": data.max_rate}
    fit_members(model, lambda net, batch: negative_elbo(net, batch, method, temperature, n_samples),
                train.contiguous(), epochs=epochs, batch_size=batch_size, lr=lr, final_lr=final_lr,
                seed=train_seed, identity=identity, read={"weight": weight, "bias": bias},
                checkpoint=_checkpoint_stem(checkpoint_dir, "posterior-only", method, n_samples, len(seeds)))
    return model


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
