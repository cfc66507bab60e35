"""Poisson VAE: closed forms, losses per method, stacked members, validation, filters."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Poisson, kl_divergence

from hitchhiker.book.pvae.model import (
    VAE_METHODS,
    PoissonVAE,
    dictionary_measures,
    filter_localisation,
    filter_low_frequency_share,
    filter_mosaic,
    poisson_kl,
    soft_clamp_upper,
    validation_nelbo,
)


def _model(n_inputs=16, n_latents=24, n_members=1, seeds=None):
    model = PoissonVAE(n_inputs, n_latents, n_members, seeds=seeds)
    with torch.no_grad():  # a spread of rates, some well above 1
        model.encoder.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        model.prior_log_rate.fill_(0.0)
    return model


def test_shapes_rates_and_the_official_parameterisation():
    model = PoissonVAE(n_members=2)
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {"encoder": (2, 256, 512), "decoder": (2, 512, 256), "prior_log_rate": (2, 512)}
    assert model.filters.shape == (2, 512, 256)
    lo, hi = model.prior_log_rate.detach().aminmax()
    assert -6 <= float(lo) < -5.9 and -4.1 < float(hi) <= -4  # U(-6, -4), as the official code
    x = torch.randn(5, 256)
    prior, log_rate = model.log_rates(x)
    assert prior.shape == (2, 1, 512) and log_rate.shape == (2, 5, 512)
    expected = soft_clamp_upper(prior + torch.einsum("bp,epl->ebl", x, model.encoder), 5.0)
    torch.testing.assert_close(log_rate, expected)
    torch.testing.assert_close(model.rates(x), log_rate.exp())
    with pytest.raises(ValueError, match="x must have shape"):
        model.rates(torch.randn(5, 255))
    with pytest.raises(ValueError, match="x must have shape"):
        model.rates(torch.randn(3, 5, 256))          # 3 batches for 2 members


def test_members_are_independent_of_the_stack_they_are_in():
    stack = PoissonVAE(16, 24, 3, seeds=[0, 5, 7])
    alone = PoissonVAE(16, 24, 1, seeds=[5])
    for name, p in alone.named_parameters():
        assert torch.equal(getattr(stack, name)[1:2], p)
        assert torch.equal(getattr(stack.member(1), name), p)
    x = torch.randn(10, 16)
    assert torch.equal(stack.loss(x, "exact")[1:2], alone.loss(x, "exact"))
    with pytest.raises(IndexError):
        stack.member(3)
    with pytest.raises(ValueError, match="seeds"):
        PoissonVAE(16, 24, 2, seeds=[0])


def test_soft_clamp_upper_is_bounded_smooth_and_near_identity_below():
    x = torch.linspace(-50, 50, 1001, requires_grad=True)
    y = soft_clamp_upper(x, 5.0)
    assert float(y.detach().max()) <= 5 and float(y.detach()[-1]) > 4.99
    y.sum().backward()
    assert (x.grad > 0).all() and (x.grad <= 1).all()
    assert abs(float(soft_clamp_upper(torch.tensor(-10.0), 5.0)) + 10) < 1e-6
    with pytest.raises(ValueError, match="finite"):
        soft_clamp_upper(x, math.inf)


def test_kl_matches_torch_distributions():
    model = _model(n_members=2, seeds=[0, 1])
    x = torch.randn(7, 16)
    prior, log_rate = model.log_rates(x)
    expected = kl_divergence(Poisson(log_rate.exp()), Poisson(prior.exp().expand_as(log_rate))).sum(-1)
    torch.testing.assert_close(model.kl(x), expected, rtol=1e-5, atol=1e-5)
    assert float(poisson_kl(torch.tensor(1.0), torch.tensor(1.0))) == 0.0


def test_exact_reconstruction_equals_monte_carlo_average():
    model = _model()
    x = torch.randn(6, 16)
    rate = model.rates(x).detach()
    closed = model.expected_reconstruction_error(x, rate).detach()
    n = 20_000
    errors = model.reconstruction_error(x, torch.poisson(rate.expand(n, *rate.shape))).detach()
    mean, se = errors.mean(0), errors.std(0) / math.sqrt(n)
    assert ((mean - closed).abs() < 4 * se).all(), (mean, closed, se)
    # the variance term matters: without it the closed form would be off by many standard errors
    assert ((mean - model.reconstruction_error(x, rate).detach()) > 10 * se).all()


def test_validation_nelbo_with_samples_matches_closed_form_per_member():
    model = _model(n_members=2, seeds=[0, 1])
    x = torch.randn(400, 16)
    sampled, se = validation_nelbo(model, x, n_samples=50, batch_size=150)
    closed, _ = validation_nelbo(model, x, exact=True)
    assert sampled.shape == closed.shape == (2,)
    assert (np.abs(sampled - closed) < 4 * se).all()  # se over patches bounds the sampling error too
    assert closed[0] != closed[1]
    with pytest.raises(ValueError, match="n_samples"):
        validation_nelbo(model, x, n_samples=0)


@pytest.mark.parametrize("method", ["eat-cubic", "gsm"])
def test_relaxed_losses_approach_exact_at_low_temperature(method):
    """At tau -> 0 a relaxed sample is an exact count, so the loss averages to the exact one
    (for GSM: as long as the truncation K covers the rates)."""
    model = _model()
    with torch.no_grad():
        model.encoder.mul_(0.4)
    x = torch.randn(4, 16)
    with torch.no_grad():
        exact = float(model.loss(x, "exact"))
        values = torch.tensor([float(model.loss(x, method, 0.02, n_samples=50)) for _ in range(40)])
    assert abs(values.mean() - exact) < 4 * values.std() / math.sqrt(40) + 0.01 * abs(exact)


def test_each_member_gets_its_own_temperature():
    """Two copies of one model, sigmoid at tau = 0.05 and 0.5: the sigmoid's relaxed mean is
    lambda * tau * log(1 + e^{1/tau}), so only the second member's loss moves away from exact."""
    model = _model(n_members=2, seeds=[0, 0])
    with torch.no_grad():
        model.encoder.copy_(model.encoder[:1].expand(2, -1, -1))
    x = torch.randn(8, 16)
    torch.manual_seed(0)
    with torch.no_grad():
        exact = model.loss(x, "exact")
        draws = torch.stack([model.loss(x, "eat-sigmoid", torch.tensor([0.05, 0.5]), n_samples=20)
                             for _ in range(60)])
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(len(draws))
    assert abs(float(mean[0] - exact[0])) < 4 * float(se[0]) + 0.02 * float(exact[0])
    assert abs(float(mean[1] - exact[1])) > 10 * float(se[1])
    with pytest.raises(ValueError, match="one per member"):
        model.loss(x, "eat-sigmoid", torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="temperature"):
        model.loss(x, "eat-sigmoid", torch.tensor([0.1, -0.2]))


def test_score_gradient_is_unbiased_for_the_exact_gradient():
    model = _model(n_inputs=4, n_latents=3)
    x = torch.randn(2, 4)
    exact = torch.autograd.grad(model.loss(x, "exact").sum(), model.encoder)[0]
    grads = torch.stack([torch.autograd.grad(model.loss(x, "score", n_samples=8).sum(), model.encoder)[0]
                         for _ in range(300)])
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
    with pytest.raises(ValueError, match="prior_log_rate_range"):
        PoissonVAE(prior_log_rate_range=(-4, -6))
    assert set(VAE_METHODS) == {"exact", "eat-sigmoid", "eat-cubic", "gsm", "score"}


def test_gsm_truncation_follows_the_paper_rule_with_a_cap():
    assert PoissonVAE.gsm_categories(torch.tensor([0.5, 4.0])) == math.floor(4 + 4 * 2 + 5)
    assert PoissonVAE.gsm_categories(torch.tensor([400.0])) == 32
    assert PoissonVAE.gsm_categories(torch.tensor([400.0]), max_categories=50) == 50


@pytest.mark.parametrize("method, n", [("score", 2), ("eat-cubic", 1), ("eat-sigmoid", 3), ("gsm", 2)])
def test_loss_is_the_formula_with_the_same_draws(method, n):
    """Through hitchhiker.surrogate_loss, consuming the generator draw for draw."""
    from hitchhiker import pathwise_distribution, poisson_log_prob, score_function_surrogate

    model = _model(n_members=2, seeds=[0, 1])
    x = torch.randn(6, 16)
    params = list(model.parameters())
    torch.manual_seed(3)
    loss = model.loss(x, method, 0.3, n_samples=n, beta=0.5).sum()
    grads = torch.autograd.grad(loss, params)
    torch.manual_seed(3)
    prior, log_rate = model.log_rates(x)
    rate = log_rate.exp()
    kl = poisson_kl(prior, log_rate).sum(-1)
    if method == "score":
        with torch.no_grad():
            z = torch.poisson(rate.detach().expand((n,) + rate.shape))
        recon = score_function_surrogate(model.reconstruction_error(x, z),
                                         poisson_log_prob(z, rate).sum(-1))
    else:
        kwargs = {"n_categories": model.gsm_categories(rate)} if method == "gsm" else {}
        z = pathwise_distribution(method, rate, 0.3, validate_args=False, **kwargs).rsample((n,))
        recon = model.reconstruction_error(x, z).mean(0)
    reference = (recon + 0.5 * kl).mean(-1).sum()
    assert torch.equal(loss, reference)
    assert all(torch.equal(g, e) for g, e in zip(grads, torch.autograd.grad(reference, params)))


def test_localisation_separates_random_from_localised_filters():
    torch.manual_seed(0)
    random = filter_localisation(torch.randn(512, 256))
    assert 0.38 < float(random.median()) < 0.45          # the "random: ~0.42"
    blob = torch.zeros(3, 256)
    blob[:, :20] = 1.0                                   # energy in 20 of 256 pixels
    torch.testing.assert_close(filter_localisation(blob), torch.full((3,), 1.0,
                                                                      dtype=torch.float64))
    even = torch.ones(2, 256)
    torch.testing.assert_close(filter_localisation(even), torch.full((2,), 26 / 256, dtype=torch.float64))
    with pytest.raises(ValueError, match="top_fraction"):
        filter_localisation(even, 0.0)


def test_filter_mosaic():
    filters = torch.randn(10, 16)
    mosaic = filter_mosaic(filters, n_show=10, pad=1)
    assert mosaic.shape == (3 * 5 + 1, 4 * 5 + 1)  # 10 filters on a 3 x 4 grid of 4 x 4 tiles
    assert np.nanmax(np.abs(mosaic)) == pytest.approx(1.0)
    assert np.isnan(mosaic).sum() == mosaic.size - 10 * 16
    with pytest.raises(ValueError, match="square"):
        filter_mosaic(torch.randn(4, 15))


def test_low_frequency_share_separates_noise_from_smooth_filters():
    torch.manual_seed(0)
    noise = filter_low_frequency_share(torch.randn(512, 256))
    f = torch.fft.fftfreq(16, dtype=torch.float64)
    grid_share = float(((f.view(-1, 1) ** 2 + f.view(1, -1) ** 2).sqrt() < 0.25).double().mean())
    assert abs(float(noise.mean()) - grid_share) < 0.01            # white noise: its share of the grid
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    grating = torch.cos(2 * math.pi * (x + y) / 16).reshape(1, 256)   # |f| = 0.088 cycles per pixel
    torch.testing.assert_close(filter_low_frequency_share(grating), torch.ones(1, dtype=torch.float64))
    fine = torch.cos(math.pi * x).reshape(1, 256)                      # |f| = 0.5: none below 0.25
    assert float(filter_low_frequency_share(fine)) < 1e-12
    with pytest.raises(ValueError, match="cutoff"):
        filter_low_frequency_share(grating, 0.0)
    with pytest.raises(ValueError, match="square"):
        filter_low_frequency_share(torch.randn(2, 15))


def test_dictionary_measures_are_medians_of_the_filter_measures():
    torch.manual_seed(0)
    start = torch.randn(20, 16)
    moved = start + 0.5 * torch.randn(20, 16)
    table = dictionary_measures({"start": start, "moved": moved}, start)
    assert list(table.index) == ["start", "moved"]
    assert table.loc["start", "cosine to start"] == pytest.approx(1.0)
    cosine = torch.nn.functional.cosine_similarity(moved.double(), start.double(), dim=1).median()
    assert table.loc["moved", "cosine to start"] == pytest.approx(float(cosine))
    assert table.loc["moved", "localisation"] == pytest.approx(float(filter_localisation(moved).median()))
    assert table.loc["moved", "low-frequency share"] == pytest.approx(
        float(filter_low_frequency_share(moved).median()))
