r"""Control runs of the POGLM chapter: each changes one thing about a grid run, so that a cause is measured.

* **Initialise at the truth** (:func:`from_truth_runs`, :func:`truth_starts`): each estimator trained
  from the true generative weights, with a posterior already refitted to them. If it drifts away from
  the truth, the ELBO (with its factorised posterior) pulls away from it; if it stays, the data do not
  pin the weights (fits from random starts end elsewhere with as good a likelihood).
* **The score function's recipe** (:func:`score_control_runs`): the official POGLM recipe
  (:data:`OFFICIAL_RECIPE`: AdamW at a constant learning rate 1e-3, batch 8, 100 epochs = 500 steps, no
  baseline at any sample count) beside the book's (cosine 1e-2 -> 1e-4, 400 epochs, leave-one-out
  baseline at S >= 2), with each change alone: the book's recipe without the baseline and the
  official budget with it; the relaxations at the official recipe for comparison.
* **EAT-cubic above tau = 1** (:func:`wide_temperature_runs`).

>>> [r["baseline"] for r in score_control_runs(["paper"], [1, 2], [0])["book recipe, no baseline"]]
[False]
>>> sorted(score_control_runs(["paper"], [1, 2], [0]))
['book recipe, no baseline', 'official recipe', 'official recipe, leave-one-out']
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import torch

from .grid import run_poglm_grid
from .heldout import heldout_comparison
from .model import POGLM
from .recovery import recovery_table

#: The official POGLM code's training: AdamW at lr 1e-3 throughout (``final_lr`` = ``lr``: no decay),
#: batch 8, 100 epochs (500 steps of 40 sequences).
OFFICIAL_RECIPE = {"epochs": 100, "batch_size": 8, "lr": 1e-3, "final_lr": 1e-3}

#: One setting per estimator for the initialise-at-the-truth control: ``(method, temperature, S)``.
FROM_TRUTH_SETTINGS = (("eat-sigmoid", 0.1, 5), ("eat-cubic", 0.1, 5), ("gsm", 0.1, 5), ("score", None, 2))


def wide_temperature_runs(regimes: Sequence[str], temperatures: Sequence[float], seeds: Sequence[int],
                          n_samples: int = 5) -> list[dict]:
    """EAT-cubic runs at ``temperatures`` (the grid's row format), for every regime and seed."""
    return [{"regime": r, "method": "eat-cubic", "temperature": float(t), "n_samples": int(n_samples),
             "seed": int(s)} for r in regimes for s in seeds for t in temperatures]


#: Base temperatures of the rate-adaptive EAT-cubic runs (paper regime): the cold end of the grid,
#: where the cubic's window at the POGLM's rates (mean 0.65 per bin) holds few arrivals.
ADAPTIVE_TEMPERATURES = (0.02, 0.05, 0.1)
#: The GSM truncation control (stress regime): K = 27 categories drop less than 1e-5 of the Poisson mass
#: even at the clamp (rate 10), against K = 8's 78%; at the grid's coldest and hottest temperature.
WIDE_GSM_CATEGORIES = 27
WIDE_GSM_TEMPERATURES = (0.02, 0.5)


def adaptive_runs(regimes: Sequence[str], temperatures: Sequence[float], seeds: Sequence[int],
                  n_samples: int = 5) -> list[dict]:
    """Rate-adaptive EAT-cubic runs (``temperature_rule="rate-adaptive"``, base ``temperatures``), the
    grid's row format, for every regime and seed."""
    return [{"regime": r, "method": "eat-cubic", "temperature": float(t), "n_samples": int(n_samples),
             "seed": int(s), "temperature_rule": "rate-adaptive"}
            for r in regimes for s in seeds for t in temperatures]


def run_adaptive_and_truncation(datasets: dict, config: dict, checkpoint_dir: str | Path | None = None
                                ) -> dict:
    """The two temperature controls at the sizes of ``config`` (:func:`~.config.poglm_config`), with the
    grid's schedule and held-out sample size:

    * ``"adaptive"``: rate-adaptive EAT-cubic (:func:`adaptive_runs`) at ``config["adaptive_temperatures"]``
      in the paper regime;
    * ``"gsm_wide"``: GSM with ``config["gsm_wide_categories"]`` categories at
      ``config["gsm_wide_temperatures"]`` in the stress regime.

    Returns ``{name: POGLMGrid}``.
    """
    kwargs = {"checkpoint_dir": checkpoint_dir, "heldout_samples": config["likelihood_samples"],
              **config["schedule"]}
    adaptive = run_poglm_grid(datasets, adaptive_runs(["paper"], config["adaptive_temperatures"],
                                                      config["seeds"]), **kwargs)
    wide = [{"regime": "stress", "method": "gsm", "temperature": float(t), "n_samples": 5, "seed": int(s)}
            for s in config["seeds"] for t in config["gsm_wide_temperatures"]]
    gsm_wide = run_poglm_grid(datasets, wide, n_categories=config["gsm_wide_categories"], **kwargs)
    return {"adaptive": adaptive, "gsm_wide": gsm_wide}


def paired_difference(rows: Sequence[dict], reference_rows: Sequence[dict], keys=("regime", "temperature"),
                      metrics=("heldout_elbo", "heldout_log_likelihood")) -> pd.DataFrame:
    """Each setting of ``rows`` against the ``reference_rows`` of the same ``keys`` and seed (e.g.
    rate-adaptive EAT-cubic against fixed-temperature EAT-cubic at the same base temperature): per
    setting and metric, the seed means of both, the mean of the seed-paired differences (``rows`` minus
    reference: positive, ``rows`` is ahead), the standard error of that mean across seeds
    (``diff_seed_se``: sd of the paired differences over sqrt(seeds)) and the Monte Carlo standard error
    of the mean difference (``diff_mc_se``, from the ``<metric>_se`` columns; independent draws)."""
    frame, ref = pd.DataFrame(list(rows)), pd.DataFrame(list(reference_rows))
    keys = list(keys)
    joined = frame.merge(ref, on=keys + ["seed"], suffixes=("", "_ref"))
    if joined.empty:
        raise ValueError("no row of rows has a reference row with the same settings and seed")
    out = []
    for key, group in joined.groupby(keys):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)), seeds=len(group))
        for metric in metrics:
            diff = group[metric] - group[f"{metric}_ref"]
            row[metric] = float(group[metric].mean())
            row[f"{metric}_ref"] = float(group[f"{metric}_ref"].mean())
            row[f"{metric}_diff"] = float(diff.mean())
            row[f"{metric}_diff_seed_se"] = (float(diff.std(ddof=1) / len(diff) ** 0.5) if len(diff) > 1
                                             else float("nan"))
            mc = (group[f"{metric}_se"] ** 2 + group[f"{metric}_se_ref"] ** 2).sum() ** 0.5 / len(group)
            row[f"{metric}_diff_mc_se"] = float(mc)
        out.append(row)
    return pd.DataFrame(out)


def adaptive_temperature_summary(rows: Sequence[dict], models: Sequence[POGLM], datasets: dict) -> list:
    r"""Per regime and base temperature of the rate-adaptive runs among ``rows`` (``models[i]`` trained
    for ``rows[i]``), the temperatures the rule gives on the trained posteriors' rates over the hidden
    spikes of the test sequences (all seeds pooled): their mean, the share of elements at the cap
    (:math:`\tau_k = 1`, i.e. :math:`\lambda_k \le 1/2`), the share left at the base (:math:`\tau_k = \tau`),
    and the mean posterior rate."""
    from .model import adaptive_temperatures

    pooled: dict = {}
    for row, model in zip(rows, models):
        if row.get("temperature_rule") != "rate-adaptive":
            continue
        data = datasets[row["regime"]]
        with torch.no_grad():
            rate = model.posterior_rate(data.test[:, :data.n_visible]).double()
        tau = adaptive_temperatures(rate, row["temperature"])
        pooled.setdefault((row["regime"], row["temperature"]), []).append((rate.flatten(), tau.flatten()))
    out = []
    for (regime, base), parts in pooled.items():
        rate, tau = (torch.cat(v) for v in zip(*parts))
        out.append({"regime": regime, "temperature": base, "mean_rate": float(rate.mean()),
                    "mean_adaptive_temperature": float(tau.mean()),
                    "share_at_cap": float((tau >= 1.0).double().mean()),
                    "share_at_base": float((tau <= base).double().mean())})
    return out


def score_control_runs(regimes: Sequence[str], score_samples: Sequence[int], seeds: Sequence[int],
                       temperature: float = 0.1, pathwise_samples: int = 5) -> dict:
    """The runs of the score-function control, per recipe (a key of the returned dict):

    * ``"book recipe, no baseline"``: the score function at every ``S >= 2`` with ``baseline=False``
      (the grid's ``S = 1`` run has none already), trained with the book's schedule;
    * ``"official recipe"``: the score function at every ``S`` without a baseline, and each relaxation
      at ``temperature``, trained with :data:`OFFICIAL_RECIPE`;
    * ``"official recipe, leave-one-out"``: the score function at every ``S >= 2`` with the baseline,
      trained with :data:`OFFICIAL_RECIPE`.
    """
    def score(samples, baseline):
        return [{"regime": r, "method": "score", "temperature": None, "n_samples": int(n),
                 "seed": int(s), "baseline": baseline} for r in regimes for s in seeds for n in samples]

    several = [n for n in score_samples if n >= 2]
    relaxed = [{"regime": r, "method": m, "temperature": float(temperature),
                "n_samples": int(pathwise_samples), "seed": int(s)}
               for r in regimes for s in seeds for m in ("eat-sigmoid", "eat-cubic", "gsm")]
    return {"book recipe, no baseline": score(several, False),
            "official recipe": score(score_samples, False) + relaxed,
            "official recipe, leave-one-out": score(several, True)}


def from_truth_runs(regimes: Sequence[str], seeds: Sequence[int],
                    settings: Sequence[tuple] = FROM_TRUTH_SETTINGS) -> list[dict]:
    """The initialise-at-the-truth runs: each ``(method, temperature, S)`` of ``settings`` for every
    regime and seed (the seed picks the posterior refit the run starts from, and its minibatches)."""
    return [{"regime": r, "method": m, "temperature": None if t is None else float(t), "n_samples": int(n),
             "seed": int(s)} for r in regimes for s in seeds for m, t, n in settings]


def truth_starts(runs: Sequence[dict], datasets: dict, posteriors: dict, seeds: Sequence[int]) -> list:
    """Starting models for :func:`from_truth_runs`: the true generative weights of the run's regime and
    the posterior of ``posteriors[regime]`` (a :class:`POGLM` with one member per seed of ``seeds``, e.g.
    from :func:`~.grid.fit_posterior_only` with the true weights) for the run's seed."""
    seeds = [int(s) for s in seeds]
    out = []
    for run in runs:
        data, fitted = datasets[run["regime"]], posteriors[run["regime"]]
        if fitted.n_members != len(seeds):
            raise ValueError(f"posteriors[{run['regime']!r}] must have one member per seed ({len(seeds)}), "
                             f"got {fitted.n_members}")
        start = fitted.member(seeds.index(int(run["seed"])))
        with torch.no_grad():
            start.gen_weight.copy_(data.weight[None])
            start.gen_bias.copy_(data.bias[None])
        out.append(start)
    return out


def drift_summary(truth_recovery: Sequence[dict], grid_rows: Sequence[dict], grid_recovery: Sequence[dict],
                  blocks=("vis<-vis", "vis<-hid", "hid<-vis", "hid<-hid", "all")) -> list:
    """Per regime, method and block, the seed-mean weight error of the runs started at the truth
    (``from_truth``; ``truth_recovery``: :func:`~.recovery.recovery_table` rows of
    :func:`run_controls`) against the grid's runs of the same setting (:data:`FROM_TRUTH_SETTINGS`)
    that started away from the true weights (``from_scratch``; ``grid_rows`` with
    ``initial_weight_error > 0`` and their ``grid_recovery`` rows), with :math:`W = 0`
    (``null_error``) and the oracle (``oracle_error``) of the from-truth runs' seeds."""
    away = {(r["regime"], r["method"], r["seed"]) for r in grid_rows
            if _setting(r) is not None and r["initial_weight_error"] > 0}
    scratch = pd.DataFrame([r for r in grid_recovery if _setting(r) is not None
                            and (r["regime"], r["method"], r["seed"]) in away])
    truth = pd.DataFrame(list(truth_recovery))
    keys = ["regime", "method", "block"]
    mean = truth.groupby(keys)[["error", "null_error", "oracle_error"]].mean()
    out = mean.rename(columns={"error": "from_truth"}).join(
        scratch.groupby(keys)["error"].mean().rename("from_scratch"))
    out = out.reset_index()
    out = out[out["block"].isin(list(blocks))]
    return out[keys + ["from_truth", "from_scratch", "null_error", "oracle_error"]].to_dict("records")


def _setting(row: dict) -> Optional[tuple]:
    """``(method, temperature, S)`` of a grid row if it is one of :data:`FROM_TRUTH_SETTINGS`."""
    tau = row["temperature"]
    tau = None if tau is None or tau != tau else float(tau)
    key = (row["method"], tau, int(row["n_samples"]))
    return key if key in FROM_TRUTH_SETTINGS else None


def truth_versus_fits(datasets: dict, rows: Sequence[dict], models: Sequence[POGLM], posteriors: dict,
                      n_samples: int = 4096, seed: int = 0, cache_dir=None) -> list[dict]:
    """Held-out (and training) log-likelihood of the truth against every grid fit of
    :data:`FROM_TRUTH_SETTINGS`, per regime, all under one mixture proposal
    (:func:`~.heldout.heldout_comparison`): the posteriors of ``posteriors[regime]`` (refitted to the
    true weights) and of every one of those fits. Rows: ``regime``, ``model`` (``"truth"`` or
    ``"<method> (seed s)"``), ``method`` (``"truth"`` for the truth), ``seed``, ``split``,
    ``log_likelihood``, ``log_likelihood_se``, ``n_draws``, ``n_components``. ``cache_dir``: see
    :func:`~.heldout.heldout_comparison`."""
    out = []
    for regime, data in datasets.items():
        fits = [(row, model) for row, model in zip(rows, models)
                if row["regime"] == regime and _setting(row) is not None]
        networks = {"truth": data.true_model(), **{f"{row['method']} (seed {row['seed']})": model
                                                  for row, model in fits}}
        truth_posts = posteriors[regime]
        proposals = POGLM.from_members([truth_posts] + [model for _, model in fits])
        meta = {"truth": ("truth", None)}
        meta.update({f"{row['method']} (seed {row['seed']})": (row["method"], row["seed"])
                     for row, _ in fits})
        for row in heldout_comparison(data, networks, proposals, n_samples, seed, cache_dir=cache_dir):
            method, fit_seed = meta[row["model"]]
            out.append({"regime": regime, "method": method, "seed": fit_seed, **row,
                        "n_components": proposals.n_members})
    return out


def run_controls(datasets: dict, config: dict, posteriors: dict, oracles: dict,
                 checkpoint_dir: str | Path | None = None) -> dict:
    """Every control run of the chapter at the sizes of ``config`` (:func:`~.config.poglm_config`):
    EAT-cubic at ``config["wide_temperatures"]``, the score-function control
    (:func:`score_control_runs`; the official recipe at ``config["official_schedule"]``) and the
    initialise-at-the-truth runs (:func:`from_truth_runs`, starting from ``posteriors``).

    Returns ``{"rows": grid rows with "control" and "recipe" columns, "recovery": recovery rows of the
    from-truth runs (:func:`~.recovery.recovery_table` against ``oracles``), "models": one per row,
    "seconds": {control: training seconds}}``.
    """
    schedule, seeds, regimes = config["schedule"], config["seeds"], list(datasets)
    kwargs = {"checkpoint_dir": checkpoint_dir, "heldout_samples": config["likelihood_samples"]}
    official = config["official_schedule"]
    plan = [("tau above 1", "book", wide_temperature_runs(regimes, config["wide_temperatures"], seeds),
             schedule, None)]
    for name, runs in score_control_runs(regimes, config["score_samples"], seeds).items():
        plan.append(("score recipe", name, runs, schedule if name.startswith("book") else official, None))
    truth_runs = from_truth_runs(regimes, seeds)
    plan.append(("from truth", "book", truth_runs, schedule, truth_starts(truth_runs, datasets, posteriors,
                                                                          seeds)))
    rows, models, recovery, seconds = [], [], [], {}
    for control, recipe, runs, sched, init in plan:
        grid = run_poglm_grid(datasets, runs, init=init, **sched, **kwargs)
        rows += [{"control": control, "recipe": recipe, **row} for row in grid.rows]
        models += grid.models
        seconds[control, recipe] = sum(grid.seconds.values())
        if control == "from truth":
            recovery += [{"start": "truth", **row}
                         for row in recovery_table(grid.rows, grid.models, datasets, oracles)]
    return {"rows": rows, "recovery": recovery, "models": models, "seconds": seconds}


def score_control_table(grid_rows: Sequence[dict], control_rows: Sequence[dict],
                        temperature: float = 0.1, metric: str = "heldout_elbo") -> pd.DataFrame:
    """The score-function control side by side: per regime, recipe (``"book"`` or ``"official"``),
    baseline (``"leave-one-out"`` or ``"none"``) and sample count, the seed mean of ``metric`` and its
    gap to EAT-cubic at ``temperature`` trained with the *same* recipe (cubic minus score, paired by
    seed; positive: the score function is behind), with the runs' largest ``last_quarter_gain``.
    The relaxations trained with each recipe are listed the same way (``baseline`` empty).

    ``grid_rows``: the grid's rows (the book's recipe; the score function's ``S >= 2`` runs there use
    the leave-one-out baseline, ``S = 1`` none); ``control_rows``: :func:`run_controls`'s rows.
    """
    grid = pd.DataFrame(list(grid_rows)).assign(recipe="book")
    controls = pd.DataFrame(list(control_rows))
    controls = controls[controls["control"] == "score recipe"].copy()
    controls["recipe"] = controls["recipe"].str.split(" ").str[0]
    frame = pd.concat([grid, controls], ignore_index=True)
    is_score = frame["method"] == "score"
    explicit = frame["baseline"] if "baseline" in frame else pd.Series(float("nan"), index=frame.index)
    uses = explicit.where(explicit.notna(), frame["n_samples"] >= 2)
    frame["baseline"] = ""
    frame.loc[is_score, "baseline"] = uses[is_score].map({True: "leave-one-out", False: "none"})
    frame = frame[is_score | (frame["temperature"] == temperature)]
    cubic = frame[frame["method"] == "eat-cubic"].set_index(["recipe", "regime", "seed"])[metric]
    cubic = cubic[~cubic.index.duplicated()]
    frame = frame.assign(gap_to_cubic=[cubic.get((r, g, s), float("nan")) - v for r, g, s, v in
                                       zip(frame["recipe"], frame["regime"], frame["seed"], frame[metric])])
    keys = ["regime", "recipe", "method", "baseline", "n_samples"]
    table = frame.groupby(keys).agg(**{metric: (metric, "mean"), "gap_to_cubic": ("gap_to_cubic", "mean"),
                                       "gap_min": ("gap_to_cubic", "min"), "gap_max": ("gap_to_cubic", "max"),
                                       "last_quarter_gain": ("last_quarter_gain", "max"),
                                       "seeds": ("seed", "nunique")})
    return table.reset_index()


def likelihood_gaps(heldout_rows: Sequence[dict]) -> pd.DataFrame:
    """Per regime, split and estimator, each fit's log-likelihood minus the truth's (rows of
    :func:`truth_versus_fits`; positive: the fit explains the spikes better): the mean over fits, the
    lowest and highest, and the largest standard error of a difference (``sqrt(se_fit^2 +
    se_truth^2)``: conservative, as the draws are shared)."""
    frame = pd.DataFrame(list(heldout_rows))
    truth = frame[frame["method"] == "truth"].set_index(["regime", "split"])
    fits = frame[frame["method"] != "truth"].copy()
    index = list(zip(fits["regime"], fits["split"]))
    fits["gap"] = fits["log_likelihood"].to_numpy() - truth.loc[index, "log_likelihood"].to_numpy()
    fits["gap_se"] = (fits["log_likelihood_se"].to_numpy() ** 2
                      + truth.loc[index, "log_likelihood_se"].to_numpy() ** 2) ** 0.5
    return (fits.groupby(["regime", "split", "method"])
            .agg(mean=("gap", "mean"), lowest=("gap", "min"), highest=("gap", "max"),
                 worst_se=("gap_se", "max"))
            .reset_index())


def start_comparison(grid_rows: Sequence[dict], control_rows: Sequence[dict]) -> pd.DataFrame:
    """Per regime and estimator (:data:`FROM_TRUTH_SETTINGS`), the seed means of the held-out ELBO and
    log-likelihood and of the weight error for the runs started at the truth (``start="truth"``) and
    the grid's runs of the same setting that started away from the true weights (``start="random"``)."""
    grid = [dict(r, start="random") for r in grid_rows
            if _setting(r) is not None and r["initial_weight_error"] > 0]
    truth = [dict(r, start="truth") for r in control_rows if r["control"] == "from truth"]
    frame = pd.DataFrame(grid + truth)
    columns = ["heldout_elbo", "heldout_log_likelihood", "final_train_loss", "weight_error"]
    return frame.groupby(["regime", "method", "start"])[columns].mean().reset_index()
