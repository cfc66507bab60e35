"""Poisson VAE: closed forms, losses per method, training, checkpoints, validation."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Poisson, kl_divergence

from hitchhiker.book.vae import (
    VAE_METHODS,
    PoissonVAE,
    filter_mosaic,
    poisson_kl,
    pvae_runs,
    run_pvae_experiments,
    soft_clamp,
    summarize_pvae,
    train_pvae,
    validation_nelbo,
)


def _model(n_inputs=16, n_latents=24, seed=0):
    torch.manual_seed(seed)
    model = PoissonVAE(n_inputs=n_inputs, n_latents=n_latents, prior_rate=2.0)
    with torch.no_grad():  # a spread of rates, some well above 1
        model.encoder.weight.normal_(0, 0.5)
    return model


def test_shapes_and_rates():
    model = PoissonVAE()
    assert model.encoder.weight.shape == (512, 256) and model.encoder.bias is None
    assert model.decoder.weight.shape == (256, 512) and model.decoder.bias is None
    assert model.filters.shape == (512, 256)
    x = torch.randn(5, 256)
    r, dr, lam = model.rates(x)
    assert r.shape == (512,) and dr.shape == lam.shape == (5, 512)
    torch.testing.assert_close(lam, r * dr)
    with pytest.raises(ValueError, match="x must have shape"):
        model.rates(torch.randn(5, 255))


def test_soft_clamp_is_bounded_smooth_and_near_identity_inside():
    x = torch.linspace(-50, 50, 1001, requires_grad=True)
    y = soft_clamp(x, -3.0, 2.0)
    assert float(y.detach().min()) > -3 - 1e-5 and float(y.detach().max()) < 2 + 1e-5
    assert float(y.detach()[0]) < -2.99 and float(y.detach()[-1]) > 1.99
    y.sum().backward()
    assert (x.grad >= 0).all() and (x.grad <= 1).all()
    assert (x.grad[(x > -2) & (x < 1)] > 0.3).all()
    assert abs(float(soft_clamp(torch.tensor(-0.5), -30.0, 30.0)) + 0.5) < 1e-6
    with pytest.raises(ValueError, match="low < high"):
        soft_clamp(x, 1.0, 1.0)


def test_kl_matches_torch_distributions():
    model = _model()
    x = torch.randn(7, 16)
    r, dr, lam = model.rates(x)
    expected = kl_divergence(Poisson(lam), Poisson(r.expand_as(lam))).sum(-1)
    torch.testing.assert_close(model.kl(x), expected, rtol=1e-5, atol=1e-5)
    assert float(poisson_kl(torch.tensor(3.0), torch.tensor(1.0))) == 0.0


def test_exact_reconstruction_equals_monte_carlo_average():
    model = _model()
    x = torch.randn(6, 16)
    _, _, lam = model.rates(x)
    closed = model.expected_reconstruction_error(x, lam).detach()
    n = 20_000
    z = torch.poisson(lam.detach().expand(n, *lam.shape))
    errors = model.reconstruction_error(x, z).detach()
    mean, se = errors.mean(0), errors.std(0) / math.sqrt(n)
    assert ((mean - closed).abs() < 4 * se).all(), (mean, closed, se)
    # the variance term matters: without it the closed form would be off by many standard errors
    plug_in = model.reconstruction_error(x, lam).detach()
    assert ((mean - plug_in) > 10 * se).all()


def test_validation_nelbo_with_samples_matches_closed_form():
    model = _model()
    x = torch.randn(400, 16)
    sampled, se = validation_nelbo(model, x, n_samples=50)
    closed, _ = validation_nelbo(model, x, exact=True)
    assert abs(sampled - closed) < 4 * se  # se over patches bounds the sampling error too
    with pytest.raises(ValueError, match="n_samples"):
        validation_nelbo(model, x, n_samples=0)


@pytest.mark.parametrize("method", ["eat-cubic", "gsm"])
def test_relaxed_losses_approach_exact_at_low_temperature(method):
    """At tau -> 0 a relaxed sample is an exact count, so the loss averages to the exact one
    (for GSM: as long as the truncation K covers the rates)."""
    model = _model()
    with torch.no_grad():
        model.encoder.weight.normal_(0, 0.2)
    x = torch.randn(4, 16)
    with torch.no_grad():
        exact = float(model.loss(x, "exact"))
        values = torch.tensor([float(model.loss(x, method, 0.02, n_samples=50)) for _ in range(40)])
    assert abs(values.mean() - exact) < 4 * values.std() / math.sqrt(40) + 0.01 * abs(exact)


def test_score_loss_value_is_monte_carlo_and_gradient_is_unbiased():
    model = _model(n_inputs=4, n_latents=3)
    x = torch.randn(2, 4)
    model.zero_grad()
    model.loss(x, "exact").backward()
    exact = model.encoder.weight.grad.clone()
    grads = []
    for _ in range(300):
        model.zero_grad()
        model.loss(x, "score", n_samples=8).backward()
        grads.append(model.encoder.weight.grad.clone())
    grads = torch.stack(grads)
    se = grads.std(0) / math.sqrt(len(grads))
    assert ((grads.mean(0) - exact).abs() < 5 * se + 1e-3).all()


def test_loss_rejects_bad_arguments():
    model = _model()
    x = torch.randn(3, 16)
    with pytest.raises(ValueError, match="method"):
        model.loss(x, "reinforce")
    with pytest.raises(ValueError, match="temperature"):
        model.loss(x, "eat-cubic")
    with pytest.raises(ValueError, match="n_samples"):
        model.loss(x, "score", n_samples=1)
    with pytest.raises(ValueError, match="n_samples"):
        model.loss(x, "exact", n_samples=0)
    with pytest.raises(ValueError, match="beta"):
        model.loss(x, "exact", beta=-1)
    with pytest.raises(ValueError, match="n_latents"):
        PoissonVAE(n_latents=0)


def test_gsm_truncation_follows_the_paper_rule_with_a_cap():
    model = PoissonVAE(n_inputs=4, n_latents=3)
    assert model.gsm_categories(torch.tensor([0.5, 4.0])) == math.floor(4 + 4 * 2 + 5)
    assert model.gsm_categories(torch.tensor([400.0])) == 32
    assert model.gsm_categories(torch.tensor([400.0]), max_categories=50) == 50


@pytest.mark.parametrize("method,temperature,n_samples", [
    ("exact", None, 1), ("eat-sigmoid", 0.5, 1), ("eat-cubic", 0.1, 1), ("gsm", 0.2, 1), ("score", None, 4)])
def test_short_training_lowers_the_loss(method, temperature, n_samples):
    torch.manual_seed(0)
    phi = torch.randn(16, 64)
    z = torch.poisson(torch.full((300, 64), 0.3))
    x = z @ phi.T + 0.1 * torch.randn(300, 16)
    x = (x - x.mean()) / x.std()
    model, history = train_pvae(x, method, temperature=temperature, n_samples=n_samples, epochs=8,
                                batch_size=50, n_latents=64, progress_bar=False)
    torch.manual_seed(0)
    before = PoissonVAE(n_inputs=16, n_latents=64)  # the same initialisation train_pvae used
    start, _ = validation_nelbo(before, x, exact=True)
    end, _ = validation_nelbo(model, x, exact=True)
    assert end < 0.8 * start, (start, end)
    assert history["loss"][-1] < history["loss"][0]


def test_checkpoint_is_reused(tmp_path):
    x = torch.randn(100, 16)
    kwargs = dict(epochs=2, batch_size=50, n_latents=8, checkpoint_dir=tmp_path, progress_bar=False)
    model, _ = train_pvae(x, "eat-cubic", temperature=0.1, **kwargs)
    files = list(tmp_path.glob("pvae-eat-cubic-tau0.1-seed0.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again, _ = train_pvae(x, "eat-cubic", temperature=0.1, **kwargs)
    assert files[0].stat().st_mtime_ns == stamp
    torch.testing.assert_close(again.decoder.weight, model.decoder.weight)
    other, _ = train_pvae(x, "eat-cubic", temperature=0.2, **kwargs)  # another run, another file
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_grid_and_experiment_rows():
    runs = pvae_runs([0.1, 0.5], [2, 8], seeds=[0, 1])
    assert len(runs) == 2 * (1 + 3 * 2 + 2)
    assert {r["method"] for r in runs} == set(VAE_METHODS)
    assert all(r["temperature"] is None for r in runs if r["method"] in ("exact", "score"))
    x = torch.randn(60, 16)
    rows = run_pvae_experiments(x, x[:20], runs[:2], epochs=1, batch_size=30, n_latents=8,
                                progress_bar=False)
    assert [r["method"] for r in rows] == ["exact", "eat-sigmoid"]
    assert all(np.isfinite(r["val_nelbo"]) and r["val_nelbo_se"] > 0 for r in rows)


def test_filter_mosaic():
    filters = torch.randn(10, 16)
    mosaic = filter_mosaic(filters, n_show=10, pad=1)
    assert mosaic.shape == (3 * 5 + 1, 4 * 5 + 1)  # 10 filters on a 3 x 4 grid of 4 x 4 tiles
    assert np.nanmax(np.abs(mosaic)) == pytest.approx(1.0)
    assert np.isnan(mosaic).sum() == mosaic.size - 10 * 16
    with pytest.raises(ValueError, match="square"):
        filter_mosaic(torch.randn(4, 15))


def test_summary_gap_is_paired_by_seed():
    rows = [
        {"method": "exact", "temperature": None, "n_samples": 1, "seed": 0, "val_nelbo": 100.0},
        {"method": "exact", "temperature": None, "n_samples": 1, "seed": 1, "val_nelbo": 110.0},
        {"method": "eat-cubic", "temperature": 0.5, "n_samples": 1, "seed": 0, "val_nelbo": 101.0},
        {"method": "eat-cubic", "temperature": 0.5, "n_samples": 1, "seed": 1, "val_nelbo": 113.0},
        {"method": "score", "temperature": None, "n_samples": 4, "seed": 0, "val_nelbo": 120.0},
    ]
    table = summarize_pvae(rows).set_index("method")
    assert table.loc["eat-cubic", "val_nelbo"] == pytest.approx(107.0)
    assert table.loc["eat-cubic", "gap"] == pytest.approx(2.0)          # (1 + 3) / 2, not 107 - 105
    assert table.loc["eat-cubic", "gap_se"] == pytest.approx(math.sqrt(2) / math.sqrt(2))
    assert table.loc["eat-cubic", "gap_pct"] == pytest.approx(100 * 2 / 105)
    assert table.loc["exact", "gap"] == 0 and table.loc["score", "n_seeds"] == 1
    with pytest.raises(ValueError, match="exact"):
        summarize_pvae(rows[2:])


@pytest.mark.parametrize("method, n", [("score", 2), ("score", 4), ("eat-cubic", 1), ("eat-sigmoid", 3), ("gsm", 2)])
def test_loss_is_the_formula_with_the_same_draws(method, n):
    """Through hitchhiker.surrogate_loss, consuming the generator as the stored results were made."""
    from hitchhiker import pathwise_distribution, poisson_log_prob, score_function_surrogate

    torch.manual_seed(0)
    model = PoissonVAE(n_inputs=16, n_latents=24)
    x = torch.randn(6, 16)
    params = list(model.parameters())
    torch.manual_seed(3)
    loss = model.loss(x, method, 0.3, n_samples=n, beta=0.5)
    grads = torch.autograd.grad(loss, params)
    torch.manual_seed(3)
    r, dr, lam = model.rates(x)
    kl = poisson_kl(r, dr).sum(-1)
    if method == "score":
        with torch.no_grad():
            z = torch.poisson(lam.detach().expand((n,) + lam.shape))
        recon = score_function_surrogate(model.reconstruction_error(x, z), poisson_log_prob(z, lam).sum(-1))
    else:
        kwargs = {"n_categories": model.gsm_categories(lam)} if method == "gsm" else {}
        z = pathwise_distribution(method, lam, 0.3, validate_args=False, **kwargs).rsample((n,))
        recon = model.reconstruction_error(x, z).mean(0)
    reference = (recon + 0.5 * kl).mean()
    assert torch.equal(loss, reference)
    assert all(torch.equal(g, e) for g, e in zip(grads, torch.autograd.grad(reference, params)))
