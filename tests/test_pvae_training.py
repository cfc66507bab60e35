"""Training the P-VAE grid: the official schedule, per-member clipping, stacked == alone, checkpoints."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from hitchhiker.book.common.checkpoint import CheckpointError, load_checkpoint
from hitchhiker.book.common.training import clip_per_member as _clip_per_member
from hitchhiker.book.pvae.config import PVAESchedule, ensemble_groups, pvae_config, pvae_runs, run_label
from hitchhiker.book.pvae.model import PoissonVAE
from hitchhiker.book.pvae.summary import convergence, summarize_pvae
from hitchhiker.book.pvae.train import run_pvae_grid, train_pvae_ensemble


def _run(method="exact", tau=None, seed=0, n=1, schedule=None):
    return {"method": method, "temperature": tau, "n_samples": n, "seed": seed,
            "tau_schedule": schedule or ("none" if tau is None else "anneal")}


def _data(n=400, pixels=16, seed=0):
    """Patches of one sparse linear model (the same dictionary for every seed): training data for
    seed 0, held-out data of the same distribution for another seed."""
    phi = torch.randn(pixels, 32, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(100 + seed)
    z = torch.poisson(torch.full((n, 32), 0.3), generator=g)
    x = z @ phi.T + 0.1 * torch.randn(n, pixels, generator=g)
    return (x - 3.9) / 2.3   # about zero mean and unit variance, the same shift for every seed


def test_schedule_is_the_official_recipe():
    s = PVAESchedule(steps=1000, warmup_steps=100)
    assert s.learning_rate(0) == pytest.approx(5e-3 / 100)
    assert s.learning_rate(99) == pytest.approx(5e-3)
    assert s.learning_rate(100) == pytest.approx(5e-3)
    assert s.learning_rate(999) == pytest.approx(1e-5)
    mid = 100 + (999 - 100) / 2
    assert s.learning_rate(int(mid)) == pytest.approx(1e-5 + 0.5 * (5e-3 - 1e-5), rel=1e-2)
    assert s.beta(0) == pytest.approx(1e-4) and s.beta(250) == pytest.approx(1e-4 + (1 - 1e-4) / 2)
    assert s.beta(500) == 1 and s.beta(900) == 1
    assert s.temperature(0, 0.1) == 1.0 and s.temperature(250, 0.1) == pytest.approx(0.55)
    assert s.temperature(500, 0.1) == pytest.approx(0.1) and s.temperature(800, 0.1) == pytest.approx(0.1)
    assert s.temperature(0, 0.1, "fixed") == 0.1
    with pytest.raises(ValueError, match="schedule"):
        s.temperature(0, 0.1, "geometric")
    with pytest.raises(ValueError, match="warmup_steps"):
        PVAESchedule(steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="lr_final"):
        PVAESchedule(steps=10, lr_final=1.0)


def test_clipping_is_per_member_as_clip_grad_norm():
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(3, 4, 5)), torch.nn.Parameter(torch.zeros(3, 6))]
    grads = [torch.randn(3, 4, 5) * 10, torch.randn(3, 6) * 10]
    grads[0][2] *= 1e-3
    grads[1][2] *= 1e-3                                   # member 2 is below the bound
    for p, g in zip(params, grads):
        p.grad = g.clone()
    _clip_per_member(params, 5.0)
    for member in range(3):
        alone = [torch.nn.Parameter(torch.zeros_like(g[member])) for g in grads]
        for p, g in zip(alone, grads):
            p.grad = g[member].clone()
        torch.nn.utils.clip_grad_norm_(alone, 5.0)
        for p, q in zip(params, alone):
            torch.testing.assert_close(p.grad[member], q.grad)


def test_a_member_trains_as_it_would_alone():
    train, val = _data(), _data(100, seed=1)
    schedule = PVAESchedule(steps=40, warmup_steps=4, clip_norm=1.0)   # the clip is active
    runs = [_run(seed=0), _run(seed=1)]
    stack, curves = train_pvae_ensemble(train, val, runs, schedule, batch_size=20, n_evals=4, n_latents=24)
    alone, curves1 = train_pvae_ensemble(train, val, runs[1:], schedule, batch_size=20, n_evals=4,
                                         n_latents=24)
    torch.testing.assert_close(stack.decoder[1], alone.decoder[0], rtol=0, atol=1e-6)
    assert [c["step"] for c in curves1] == [10, 20, 30, 40]
    ours = [c["val_nelbo_closed_form"] for c in curves if c["seed"] == 1]
    np.testing.assert_allclose(ours, [c["val_nelbo_closed_form"] for c in curves1], rtol=1e-6)
    with pytest.raises(ValueError, match="one method"):
        train_pvae_ensemble(train, val, [_run(), _run("score", n=2)], schedule)


@pytest.mark.parametrize("method,tau,n", [("exact", None, 1), ("eat-sigmoid", 0.5, 1),
                                          ("eat-cubic", 0.1, 1), ("gsm", 0.2, 1), ("score", None, 4)])
def test_short_training_lowers_the_validation_nelbo(method, tau, n):
    train, val = _data(), _data(100, seed=1)
    schedule = PVAESchedule(steps=120, warmup_steps=5, beta_start=1.0)
    model, curves = train_pvae_ensemble(train, val, [_run(method, tau, n=n)], schedule, batch_size=25,
                                        n_evals=3, n_latents=32, prior_log_rate_range=(-0.7, -0.7))
    before = PoissonVAE(16, 32, 1, seeds=[0], prior_log_rate_range=(-0.7, -0.7))
    from hitchhiker.book.pvae.model import validation_nelbo
    start = validation_nelbo(before, val, exact=True)[0][0]
    assert curves[-1]["val_nelbo_closed_form"] < 0.8 * start, (start, curves)


def test_checkpoint_is_resumed_and_reused(tmp_path):
    train, val = _data(), _data(100, seed=1)
    schedule = PVAESchedule(steps=30, warmup_steps=2)
    runs = [_run("eat-cubic", 0.1)]
    kwargs = dict(batch_size=20, n_evals=3, n_latents=16, checkpoint_every=10)
    full, full_curves = train_pvae_ensemble(train, val, runs, schedule, **kwargs)
    path = tmp_path / "run.pt"
    # stop after 20 of 30 steps (a shorter schedule would change the annealing): fake it by saving
    # the state a 30-step run has at step 20, then resume from it
    partial, _ = train_pvae_ensemble(train, val, runs, schedule, checkpoint=path, **kwargs)
    (path,) = tmp_path.glob("run-*-30steps.pt")
    saved = load_checkpoint(path)
    assert saved["step"] == 30
    stamp = path.stat().st_mtime_ns
    again, again_curves = train_pvae_ensemble(train, val, runs, schedule, checkpoint=tmp_path / "run",
                                              **kwargs)
    assert path.stat().st_mtime_ns == stamp and again_curves == full_curves
    torch.testing.assert_close(again.decoder, full.decoder)
    other, _ = train_pvae_ensemble(train, val, [_run("eat-cubic", 0.2)], schedule,
                                   checkpoint=tmp_path / "run",
                                   **kwargs)
    assert not torch.equal(other.decoder, full.decoder)          # another run: not reloaded


def test_resume_from_the_middle_gives_the_same_run(tmp_path):
    train, val = _data(), _data(100, seed=1)
    schedule = PVAESchedule(steps=30, warmup_steps=2)
    runs = [_run("exact")]
    kwargs = dict(batch_size=20, n_evals=3, n_latents=16, checkpoint_every=10)
    full, _ = train_pvae_ensemble(train, val, runs, schedule, **kwargs)
    path = tmp_path / "run.pt"

    class Stop(Exception):
        pass

    def stop_after_20(message):
        if "step 20/" in message:
            raise Stop
    with pytest.raises(Stop):
        train_pvae_ensemble(train, val, runs, schedule, checkpoint=path, log=stop_after_20, **kwargs)
    (file,) = tmp_path.glob("run-*.pt")
    assert load_checkpoint(file)["step"] == 20
    resumed, curves = train_pvae_ensemble(train, val, runs, schedule, checkpoint=path, **kwargs)
    torch.testing.assert_close(resumed.decoder, full.decoder, rtol=0, atol=0)
    assert [c["step"] for c in curves] == [10, 20, 30]


def test_grid_groups_and_labels():
    runs = pvae_runs([0.1, 0.5], [2, 8], seeds=[0, 1], single_seed_temperatures=[0.02],
                     fixed_temperatures=[0.5], score_seeds=[0])
    # per seed: exact + 3 relaxations x 2 taus; seed 0 adds 3 x (0.02 anneal, 0.5 fixed); score: 2 S
    assert len(runs) == 2 * (1 + 6) + 3 * 2 + 2
    assert {r["method"] for r in runs} == {"exact", "eat-sigmoid", "eat-cubic", "gsm", "score"}
    assert all(r["temperature"] is None and r["tau_schedule"] == "none"
               for r in runs if r["method"] in ("exact", "score"))
    labels = [run_label(r) for r in runs]
    assert len(set(labels)) == len(labels)
    assert "eat-cubic-tau0.5-fixed-seed0" in labels and "score-S8-seed0" in labels
    groups = ensemble_groups(runs, {"gsm": 2})
    assert sorted(len(g) for g in groups if g[0]["method"] == "gsm") == [2, 2, 2]  # main: 4, extra: 2
    assert {r["grid_part"] for r in runs if r["tau_schedule"] == "fixed"} == {"extra"}
    assert sum(len(g) for g in groups) == len(runs)
    assert all(len({(r["method"], r["n_samples"]) for r in g}) == 1 for g in groups)


def test_run_grid_rows_curves_and_models(tmp_path):
    train, val = _data(), _data(100, seed=1)
    runs = [_run(seed=0), _run(seed=1), _run("eat-cubic", 0.1, seed=0)]
    rows, curves, models = run_pvae_grid(train, val, runs, PVAESchedule(steps=20, warmup_steps=2),
                                         batch_size=20, n_evals=2, checkpoint_dir=tmp_path)
    assert [r["method"] for r in rows] == ["exact", "exact", "eat-cubic"]
    assert all(r["steps"] == 20 and r["batch_size"] == 20 and np.isfinite(r["val_nelbo"]) for r in rows)
    assert all(0 < r["localisation"] < 1 for r in rows)
    assert len(curves) == 3 * 2 and set(models) == {run_label(r) for r in runs}
    assert models["exact-seed1"].decoder.shape == (1, 512, 16)


def test_convergence_measures_the_last_quarter():
    curves = pd.DataFrame([{**_run(), "step": s, "val_nelbo_closed_form": v}
                           for s, v in [(25, 200.0), (50, 150.0), (75, 102.0), (100, 100.0)]])
    out = convergence(curves)
    # the shared definition: from the point at 3/4 of the steps (102) to the end (100), relative to it
    assert out["improvement"].item() == pytest.approx(2 / 102)
    # measured in steps, not points: of 600 steps the last quarter starts at 450; the first point at
    # or after it is the second of five here (the point count alone would pick the fourth)
    uneven = pd.DataFrame([{**_run(), "step": s, "val_nelbo_closed_form": v} for s, v in
                           [(100, 200.0), (460, 150.0), (470, 120.0), (480, 102.0), (600, 100.0)]])
    assert convergence(uneven)["improvement"].item() == pytest.approx(50 / 150)


def test_summary_gap_is_paired_by_seed():
    rows = [
        {**_run(seed=0), "val_nelbo": 100.0}, {**_run(seed=1), "val_nelbo": 110.0},
        {**_run("eat-cubic", 0.5, seed=0), "val_nelbo": 101.0},
        {**_run("eat-cubic", 0.5, seed=1), "val_nelbo": 113.0},
        {**_run("eat-cubic", 0.5, seed=0, schedule="fixed"), "val_nelbo": 104.0},
        {**_run("score", n=4), "val_nelbo": 120.0},
    ]
    table = summarize_pvae(rows).set_index(["method", "tau_schedule"])
    assert table.loc[("eat-cubic", "anneal"), "val_nelbo"] == pytest.approx(107.0)
    assert table.loc[("eat-cubic", "anneal"), "gap"] == pytest.approx(2.0)   # (1 + 3) / 2
    assert table.loc[("eat-cubic", "anneal"), "gap_se"] == pytest.approx(1.0)
    assert table.loc[("eat-cubic", "anneal"), "gap_pct"] == pytest.approx(100 * 2 / 105)
    # one seed: its gap is relative to that seed's exact run, not to the mean over seeds
    assert table.loc[("eat-cubic", "fixed"), "gap_pct"] == pytest.approx(4.0)
    assert table.loc[("exact", "none"), "gap"] == 0 and table.loc[("score", "none"), "n_seeds"] == 1
    with pytest.raises(ValueError, match="exact"):
        summarize_pvae(rows[2:])


def test_config_takes_the_scale_as_an_argument(monkeypatch):
    monkeypatch.setenv("HITCHHIKER_SCALE", "smoke")
    assert pvae_config("paper")["steps"] == 240_000 and pvae_config()["steps"] == 60
    with pytest.raises(ValueError, match="scale"):
        pvae_config("huge")


def test_config_at_every_scale(monkeypatch):
    for scale in ("smoke", "default", "paper"):
        monkeypatch.setenv("HITCHHIKER_SCALE", scale)
        config = pvae_config()
        assert config["schedule"].steps == config["steps"]
        assert config["steps"] * config["batch_size"] >= {"smoke": 1, "default": 1_500_000,
                                                          "paper": 240_000_000}[scale]
        assert {r["method"] for r in config["runs"]} == {"exact", "eat-sigmoid", "eat-cubic", "gsm",
                                                         "score"}


def test_default_grid_is_the_issues_cut():
    config = pvae_config("default")
    runs = pd.DataFrame([r for r in config["runs"] if r["grid_part"] != "added"])
    relaxed = runs[runs.method.isin(["eat-sigmoid", "eat-cubic", "gsm"])]
    annealed = relaxed[relaxed.tau_schedule == "anneal"]
    # three seeds at tau = 0.1 and 0.5, one elsewhere; fixed tau at 0.02 and 0.5; score over S
    seeds = annealed.groupby(["method", "temperature"]).seed.nunique()
    assert (seeds.xs(0.1, level="temperature") == 3).all() and (seeds.xs(0.5, level="temperature") == 3).all()
    assert set(seeds[seeds == 1].index.get_level_values("temperature")) == {0.02, 0.05, 0.2}
    fixed = relaxed[relaxed.tau_schedule == "fixed"]
    assert sorted(fixed.temperature.unique()) == [0.02, 0.5] and set(fixed.seed) == {0}
    assert sorted(runs[runs.method == "score"].n_samples) == [2, 4, 8]
    assert sorted(runs[runs.method == "exact"].seed) == [0, 1, 2]
    # the exact runs again, four times longer, as their own part with their own labels, and each
    # relaxation at tau = 0.1 and 0.5 (seed 0) at the same budget
    assert config["long_schedule"].steps == 4 * config["steps"]
    long_labels = [run_label(r) for r in config["long_runs"]]
    assert long_labels == ["exact-long-seed0", "exact-long-seed1", "exact-long-seed2"] + [
        f"{m}-tau{t}-anneal-long-seed0" for m in ("eat-sigmoid", "eat-cubic", "gsm") for t in (0.1, 0.5)]
    # beside the grid: EAT-cubic at tau = 1 and 2, GSM under the wider cap, seed 0, in their own stacks
    added = [r for r in config["runs"] if r["grid_part"] == "added"]
    assert [run_label(r) for r in added] == ["eat-cubic-tau1-anneal-seed0", "eat-cubic-tau2-anneal-seed0",
                                             "gsm-tau0.1-anneal-K64-seed0", "gsm-tau0.5-anneal-K64-seed0"]
    groups = ensemble_groups(config["runs"], config["max_members"])
    assert all(len({r["grid_part"] for r in g}) == 1 and len({r.get("gsm_max_categories") for r in g}) == 1
               for g in groups)
    assert not set(long_labels) & {run_label(r) for r in config["runs"]}
    assert pvae_config("paper")["long_runs"] == [] and pvae_config("paper")["long_schedule"] is None


def test_summary_refuses_two_exact_runs_of_one_seed():
    rows = [{**_run(seed=0), "val_nelbo": 100.0},
            {**_run(seed=0), "grid_part": "long", "val_nelbo": 99.0},
            {**_run("eat-cubic", 0.5, seed=0), "val_nelbo": 101.0}]
    with pytest.raises(ValueError, match="more than one exact run per seed"):
        summarize_pvae(rows)


def test_convergence_keeps_the_parts_apart():
    rows = []
    for part, values in (("main", [200.0, 150.0, 102.0, 100.0]), ("long", [200.0, 150.0, 100.0, 100.0])):
        rows += [{**_run(), "grid_part": part, "step": 25 * (i + 1), "val_nelbo_closed_form": v}
                 for i, v in enumerate(values)]
    out = convergence(pd.DataFrame(rows)).set_index("grid_part")["improvement"]
    assert out["main"] == pytest.approx(2 / 102) and out["long"] == 0


def test_run_config_trains_the_grid_and_the_long_runs(tmp_path):
    from types import SimpleNamespace

    from hitchhiker.book.pvae.train import run_pvae_config

    data = SimpleNamespace(train=_data(), val=_data(100, seed=1))
    config = dict(batch_size=20, n_evals=2, val_samples=2, workers=1, max_members=None,
                  prior_log_rate_range=(-0.7, -0.7),
                  runs=[_run(seed=0) | {"grid_part": "main"},
                        _run("eat-cubic", 0.1, seed=0) | {"grid_part": "main"}],
                  schedule=PVAESchedule(steps=10, warmup_steps=2),
                  long_runs=[_run(seed=0) | {"grid_part": "long"}],
                  long_schedule=PVAESchedule(steps=40, warmup_steps=2))
    rows, curves, models = run_pvae_config(config, data, checkpoint_dir=tmp_path)
    assert [(r["method"], r["grid_part"], r["steps"]) for r in rows] == [
        ("exact", "main", 10), ("eat-cubic", "main", 10), ("exact", "long", 40)]
    assert set(models) == {"exact-seed0", "eat-cubic-tau0.1-anneal-seed0", "exact-long-seed0"}
    assert max(c["step"] for c in curves if c["grid_part"] == "long") == 40
    # the long run starts from the same initialisation and trains under its own, longer schedule
    assert not torch.equal(models["exact-long-seed0"].decoder, models["exact-seed0"].decoder)
    only_long, _, _ = run_pvae_config(config, data, checkpoint_dir=tmp_path, parts=["long"])
    assert [r["grid_part"] for r in only_long] == ["long"]


def test_more_steps_extend_a_finished_run_or_keep_it(tmp_path):
    train, val = _data(), _data(100, seed=1)
    kwargs = dict(batch_size=20, n_latents=16, checkpoint=tmp_path / "run")
    # a schedule whose first 20 steps do not depend on its length (constant lr, no anneals)
    flat = dict(warmup_steps=2, lr_final=None, beta_start=1.0)
    runs = [_run("eat-cubic", 0.1, schedule="fixed")]
    short, _ = train_pvae_ensemble(train, val, runs, PVAESchedule(steps=20, **flat), n_evals=2, **kwargs)
    (first,) = tmp_path.glob("run-*.pt")
    before = first.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # extended from the 20-step file, not started anew
        longer, curves = train_pvae_ensemble(train, val, runs, PVAESchedule(steps=40, **flat), n_evals=4,
                                             **kwargs)
    fresh, fresh_curves = train_pvae_ensemble(train, val, runs, PVAESchedule(steps=40, **flat), n_evals=4,
                                              batch_size=20, n_latents=16)
    assert torch.equal(longer.decoder, fresh.decoder) and curves == fresh_curves
    assert first.read_bytes() == before and len(list(tmp_path.glob("run-*.pt"))) == 2
    # the same run (one settings digest), two lengths: the 40-step file continued the 20-step one
    assert {p.name.replace("-40steps", "-20steps") for p in tmp_path.glob("run-*.pt")} == {first.name}
    # the official recipe: its cosine and anneals follow the length, so 40 steps are another run;
    # the 20-step file is kept and the new run says why it starts anew
    official = [_run("eat-cubic", 0.1)]
    train_pvae_ensemble(train, val, official, PVAESchedule(steps=20, warmup_steps=2), n_evals=2, **kwargs)
    files = set(tmp_path.glob("run-*.pt"))
    with pytest.warns(UserWarning, match="cannot be extended.*earlier file is kept"):
        train_pvae_ensemble(train, val, official, PVAESchedule(steps=40, warmup_steps=2), n_evals=4, **kwargs)
    assert files < set(tmp_path.glob("run-*.pt"))


@pytest.mark.parametrize("change", ["train row 300", "every val row"])
def test_changed_data_is_refused_not_reloaded(tmp_path, change):
    train, val = _data(), _data(100, seed=1)
    kwargs = dict(batch_size=20, n_evals=2, n_latents=16, checkpoint=tmp_path / "run")
    schedule = PVAESchedule(steps=10, warmup_steps=2)
    train_pvae_ensemble(train, val, [_run()], schedule, **kwargs)
    if change == "train row 300":
        train = train.clone()
        train[300] += 0.5
    else:
        val = _data(100, seed=2)
    with pytest.raises(CheckpointError, match=r"run-.*steps\.pt.*data\.(train|val)"):
        train_pvae_ensemble(train, val, [_run()], schedule, **kwargs)


def test_two_shards_merged_equal_one_unsharded_run(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hitchhiker.book.pvae.grid import merge_shards, train_shard, write_pvae_results
    from hitchhiker.book.pvae.train import run_pvae_config

    monkeypatch.setenv("HITCHHIKER_SCALE", "default")          # results files are written
    data = SimpleNamespace(train=_data(), val=_data(100, seed=1))
    config = dict(n_train=400, batch_size=20, n_evals=2, val_samples=2, workers=1, max_members=None,
                  prior_log_rate_range=(-0.7, -0.7),
                  runs=[_run(seed=0) | {"grid_part": "main"}, _run(seed=1) | {"grid_part": "main"},
                        _run("eat-cubic", 0.1, seed=0) | {"grid_part": "main"},
                        _run("score", n=2, seed=0) | {"grid_part": "main"}],
                  schedule=PVAESchedule(steps=10, warmup_steps=2),
                  long_runs=[_run(seed=0) | {"grid_part": "long"}],
                  long_schedule=PVAESchedule(steps=20, warmup_steps=2))
    rows, curves, models = run_pvae_config(config, data)
    write_pvae_results(rows, curves, models, config, tmp_path / "one")
    for k in range(2):
        train_shard(config, data, (k, 2), tmp_path / "shards", checkpoint_dir=tmp_path / "checkpoints")
    assert len(list((tmp_path / "shards").glob("pvae-shard*of2.pt"))) == 2
    merge_shards(config, 2, tmp_path / "shards", tmp_path / "merged")
    for name in ("pvae.csv", "pvae_curves.csv", "pvae_decoders.pt"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "merged" / name).read_bytes(), name
    with pytest.raises(FileNotFoundError, match="shard 0/3"):
        merge_shards(config, 3, tmp_path / "shards", tmp_path / "merged")


def test_other_evaluation_steps_of_a_stored_run_are_refused(tmp_path):
    train, val = _data(), _data(100, seed=1)
    kwargs = dict(batch_size=20, n_latents=16, checkpoint=tmp_path / "run")
    train_pvae_ensemble(train, val, [_run()], PVAESchedule(steps=10, warmup_steps=2), n_evals=2, **kwargs)
    with pytest.raises(CheckpointError, match="evaluation steps"):
        train_pvae_ensemble(train, val, [_run()], PVAESchedule(steps=10, warmup_steps=2), n_evals=5, **kwargs)


def test_a_crafted_pvae_checkpoint_is_refused_without_running_it(tmp_path):
    import os

    train, val = _data(), _data(100, seed=1)
    kwargs = dict(batch_size=20, n_evals=2, n_latents=16, checkpoint=tmp_path / "run")
    schedule = PVAESchedule(steps=10, warmup_steps=2)
    train_pvae_ensemble(train, val, [_run()], schedule, **kwargs)
    (path,) = tmp_path.glob("run-*.pt")
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    saved = load_checkpoint(path)
    saved["curves"] = Payload()
    torch.save(saved, path)                           # a file under the run's own name
    with pytest.raises(CheckpointError, match=path.name):
        train_pvae_ensemble(train, val, [_run()], schedule, **kwargs)
    assert not marker.exists()


def _tiny_config(runs, long_runs=(), steps=6):
    return dict(n_train=400, batch_size=20, n_evals=2, val_samples=2, workers=1, max_members=None,
                prior_log_rate_range=(-0.7, -0.7), runs=[dict(r) for r in runs],
                schedule=PVAESchedule(steps=steps, warmup_steps=2), long_runs=[dict(r) for r in long_runs],
                long_schedule=PVAESchedule(steps=2 * steps, warmup_steps=2) if long_runs else None)


def test_experiment_trains_what_the_stored_files_lack_and_no_more(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hitchhiker.book.pvae import grid

    monkeypatch.setenv("HITCHHIKER_SCALE", "default")          # results files are read and written
    data = SimpleNamespace(train=_data(), val=_data(100, seed=1))
    exact = _run(seed=0) | {"grid_part": "main"}
    cubic = _run("eat-cubic", 0.5, seed=0) | {"grid_part": "main"}
    config = _tiny_config([exact], [exact | {"grid_part": "long"}])
    assert grid.missing_runs(config, tmp_path) == ["exact-seed0", "exact-long-seed0"]   # no files yet
    results, curves, decoders = grid.pvae_experiment(config, data, directory=tmp_path)
    assert grid.missing_runs(config, tmp_path) == []
    first = results.set_index("method").loc["exact"]

    trained = []
    real = grid.run_pvae_config

    def spy(*args, **kwargs):
        trained.append(kwargs.get("labels"))
        return real(*args, **kwargs)

    monkeypatch.setattr(grid, "run_pvae_config", spy)
    grown = _tiny_config([exact, cubic, cubic | {"temperature": 0.1}], [exact | {"grid_part": "long"}])
    new = ["eat-cubic-tau0.5-anneal-seed0", "eat-cubic-tau0.1-anneal-seed0"]
    assert grid.missing_runs(grown, tmp_path) == new
    results, curves, decoders = grid.pvae_experiment(grown, data, directory=tmp_path)
    assert trained == [["eat-cubic-tau0.5-anneal-seed0", "eat-cubic-tau0.1-anneal-seed0"]]
    assert [run_label(r) for r in results.to_dict("records")] == [
        "exact-seed0", "eat-cubic-tau0.5-anneal-seed0", "eat-cubic-tau0.1-anneal-seed0", "exact-long-seed0"]
    kept = results[(results.method == "exact") & (results.grid_part == "main")].iloc[0]
    assert kept.val_nelbo == first.loc[first.grid_part == "main", "val_nelbo"].iloc[0]   # not retrained
    assert set(curves.method) == {"exact", "eat-cubic"} and len(decoders) == 4   # exact, seed-0 tau 0.1, 0.5
    # re-read: nothing trains
    grid.pvae_experiment(grown, data, directory=tmp_path)
    assert len(trained) == 1
    # a stored run under other settings is not trusted: other steps mean every run is missing
    assert len(grid.missing_runs(_tiny_config(grown["runs"], grown["long_runs"], steps=8), tmp_path)) == 4
    # a run the decoder file should hold but does not is missing too
    stored = torch.load(tmp_path / "pvae_decoders.pt", weights_only=True)
    torch.save({k: v for k, v in stored.items() if k != "exact-seed0"}, tmp_path / "pvae_decoders.pt")
    assert grid.missing_runs(grown, tmp_path) == ["exact-seed0"]


def test_update_refuses_runs_outside_the_grid_and_smoke_scale(tmp_path, monkeypatch):
    from hitchhiker.book.pvae.grid import update_pvae_results

    config = _tiny_config([_run(seed=0) | {"grid_part": "main"}])
    rows = [{**_run("gsm", 0.1, seed=0), "grid_part": "main", "val_nelbo": 1.0}]
    monkeypatch.setenv("HITCHHIKER_SCALE", "smoke")
    with pytest.raises(RuntimeError, match="not at scale 'smoke'"):
        update_pvae_results(rows, [], {}, config, tmp_path)
    monkeypatch.setenv("HITCHHIKER_SCALE", "default")
    with pytest.raises(ValueError, match="not in this scale's grid"):
        update_pvae_results(rows, [], {}, config, tmp_path)


def test_run_labels_name_the_wider_gsm_cap_only_when_set():
    run = _run("gsm", 0.1) | {"grid_part": "added"}
    assert run_label(run) == "gsm-tau0.1-anneal-seed0"
    assert run_label(run | {"gsm_max_categories": 64}) == "gsm-tau0.1-anneal-K64-seed0"
    assert run_label(run | {"gsm_max_categories": float("nan")}) == "gsm-tau0.1-anneal-seed0"   # a CSV row
