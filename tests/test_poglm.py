"""Tests for hitchhiker.book.poglm: the generator, the model's causality, the ELBO bound, training, recovery."""
import itertools
import math

import pytest
import torch

from hitchhiker.book.poglm import (
    POGLM,
    POGLM_GSM_CATEGORIES,
    POGLM_METHODS,
    connectivity_matrix,
    evaluate_poglm,
    hidden_permutations,
    match_hidden_neurons,
    negative_elbo,
    recovery_errors,
    run_poglm,
    simulate_poglm_data,
    train_poglm,
    training_trend,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These small models train fastest (and least disturbed by other jobs) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return simulate_poglm_data(seed=3, n_train=16, n_test=8, n_bins=60)


# ------------------------------------------------------------------------------------ generator
def test_generator_rates_come_from_the_reported_weights(data):
    model = data.true_model()
    assert torch.allclose(model.firing_rate(data.train), data.train_rates, atol=1e-5)
    assert torch.allclose(model.firing_rate(data.test), data.test_rates, atol=1e-5)
    # ... and not from some other weights: a perturbed model gives different rates
    with torch.no_grad():
        model.generative.weight[0, 3, 2] += 0.3
    assert not torch.allclose(model.firing_rate(data.train), data.train_rates, atol=1e-3)


def test_generator_draws_weights_at_the_documented_scale():
    big = simulate_poglm_data(seed=0, n_train=1, n_test=1, n_bins=5, n_visible=10, n_hidden=10)
    # 20*20*3 = 1200 Gaussian draws with sd 0.5 (the default layer init would have sd ~0.075)
    assert abs(float(big.weight.std()) - 0.5) < 0.04
    assert abs(float(big.bias.std()) - 0.5) < 0.2
    scaled = simulate_poglm_data(seed=0, n_train=1, n_test=1, n_bins=5, weight_scale=0.1, bias_scale=0.0)
    assert torch.equal(scaled.bias, torch.zeros(5))
    assert torch.allclose(scaled.weight, 0.2 * simulate_poglm_data(
        seed=0, n_train=1, n_test=1, n_bins=5, weight_scale=0.5).weight)


def test_generator_is_seeded_and_shaped(data):
    again = simulate_poglm_data(seed=3, n_train=16, n_test=8, n_bins=60)
    other = simulate_poglm_data(seed=4, n_train=16, n_test=8, n_bins=60)
    assert torch.equal(again.train, data.train) and torch.equal(again.weight, data.weight)
    assert not torch.equal(other.weight, data.weight)
    assert data.train.shape == (16, 5, 60) and data.test.shape == (8, 5, 60)
    assert data.weight.shape == (5, 5, 3) and data.bias.shape == (5,)
    assert float(data.train_rates.max()) <= 10.0
    assert torch.equal(data.train, data.train.round()) and float(data.train.min()) >= 0


def test_sampling_matches_rates_on_average():
    big = simulate_poglm_data(seed=1, n_train=200, n_test=1, n_bins=50)
    # E[y | rate] = rate: the mean residual is ~ N(0, mean(rate)/n) per neuron
    resid = (big.train - big.train_rates).mean((0, 2))
    se = (big.train_rates.mean((0, 2)) / (200 * 50)).sqrt()
    assert bool((resid.abs() < 5 * se).all())


# ------------------------------------------------------------------------------------ model
def test_firing_rate_is_causal():
    torch.manual_seed(0)
    model = POGLM()
    spikes = torch.poisson(torch.ones(2, 5, 20))
    base = model.firing_rate(spikes)
    changed = spikes.clone()
    changed[:, :, 10] += 3
    new = model.firing_rate(changed)
    assert torch.allclose(new[..., :11], base[..., :11])          # bins <= 10 do not see bin 10
    assert not torch.allclose(new[..., 11], base[..., 11])        # bin 11 does
    assert torch.allclose(new[..., 14:], base[..., 14:])          # bin 14 sees 11..13 only


def test_posterior_is_noncausal_with_half_width_three():
    torch.manual_seed(0)
    model = POGLM()
    visible = torch.poisson(torch.ones(1, 3, 30))
    base = model.posterior_rate(visible)
    changed = visible.clone()
    changed[..., 15] += 4
    diff = (model.posterior_rate(changed) - base).detach().abs().sum((0, 1))
    assert bool((diff[12:19] > 0).all()) and float(diff[:12].sum() + diff[19:].sum()) == 0.0
    assert base.shape == (1, 2, 30) and float(base.detach().max()) <= 10.0


def test_log_joint_broadcasts_samples(data):
    model = data.true_model()
    visible, hidden = data.test[:, :3], data.test[:, 3:]
    one = model.log_joint(visible, hidden)
    many = model.log_joint(visible, hidden.expand(4, *hidden.shape))
    assert one.shape == (8,) and many.shape == (4, 8)
    assert torch.allclose(many, one.expand(4, 8))
    rate = model.firing_rate(data.test)
    direct = (torch.distributions.Poisson(rate).log_prob(data.test)).sum((-2, -1))
    assert torch.allclose(one, direct, rtol=1e-5)


# ------------------------------------------------------------------------------------ ELBO
def _exact_log_marginal(model, visible, max_count):
    """log p(x) by summing p(x, z) over every hidden train z in {0..max_count}^T (one hidden neuron)."""
    n_bins = visible.shape[-1]
    grid = torch.tensor(list(itertools.product(range(max_count + 1), repeat=n_bins)), dtype=torch.float32)
    hidden = grid.reshape(-1, 1, 1, n_bins)                            # (M, B=1, H=1, T)
    with torch.no_grad():
        return float(torch.logsumexp(model.log_joint(visible, hidden), 0))


def test_elbo_is_a_lower_bound_of_the_log_likelihood():
    small = simulate_poglm_data(seed=2, n_visible=2, n_hidden=1, n_bins=4, n_train=1, n_test=1,
                                weight_scale=0.2, bias_scale=0.3)
    model = small.true_model()
    torch.manual_seed(1)
    with torch.no_grad():
        model.posterior.weight.normal_(0, 0.3)
        model.posterior.bias.fill_(-0.5)
    visible = small.test[:, :2]
    exact = _exact_log_marginal(model, visible, max_count=14)
    scores = evaluate_poglm(model, visible, n_samples=40_000, seed=0)
    assert scores["elbo"] < exact - 0.05                         # a strict gap: q is not the posterior
    assert scores["elbo"] <= scores["log_likelihood"] <= exact + 0.02
    assert abs(scores["log_likelihood"] - exact) < 0.05         # importance sampling converges to log p(x)


def test_pathwise_loss_tends_to_the_exact_elbo_at_low_temperature(data):
    model = data.true_model()
    visible = data.test[:4, :3]
    exact = evaluate_poglm(model, visible, n_samples=400, seed=0)["elbo"]
    torch.manual_seed(0)
    with torch.no_grad():
        relaxed = -float(negative_elbo(model, visible, "eat-cubic", temperature=1e-3, n_samples=400))
        score = -float(negative_elbo(model, visible, "score", n_samples=400))
    assert abs(relaxed - exact) < 0.01 * abs(exact)
    assert abs(score - exact) < 0.01 * abs(exact)


@pytest.mark.parametrize("method", POGLM_METHODS)
def test_loss_gives_gradients_to_both_networks(data, method):
    torch.manual_seed(0)
    model = POGLM()
    temperature = None if method == "score" else 0.2
    negative_elbo(model, data.train[:4, :3], method, temperature, n_samples=3).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and float(param.grad.abs().sum()) > 0, (method, name)


@pytest.mark.parametrize("method, temperature", [("eat-cubic", 0.1), ("eat-sigmoid", 0.1), ("gsm", 0.5),
                                                 ("score", None)])
def test_training_improves_the_test_elbo(data, method, temperature):
    torch.manual_seed(0)
    before = evaluate_poglm(POGLM(), data.test, n_samples=64)["elbo"]   # the same init train_poglm uses
    model, history = train_poglm(data, method, temperature, n_samples=2, seed=0, epochs=12)
    after = evaluate_poglm(model, data.test, n_samples=64)["elbo"]
    assert after > before + 0.2 * abs(before)
    assert history["loss"][-1] < history["loss"][0]


def test_run_poglm_reports_a_consistent_row(data):
    row, model = run_poglm(data, "gsm", 0.5, 2, seed=1, epochs=3, eval_samples=32)
    assert {"method", "temperature", "n_samples", "seed", "test_elbo", "weight_error"} <= set(row)
    assert (row["method"], row["temperature"], row["n_samples"], row["seed"]) == ("gsm", 0.5, 2, 1)
    assert row["n_categories"] == 8
    assert row["test_log_likelihood"] >= row["test_elbo"]
    assert row["test_elbo"] == evaluate_poglm(model, data.test, 32, seed=1)["elbo"]
    assert row["weight_error"] == recovery_errors(model, data.weight, data.bias)["weight_error"]
    assert math.isfinite(row["train_loss_trend"])


def test_training_trend():
    assert training_trend([5.0, 4.0, 3.0, 2.0]) == -1.0
    assert training_trend(list(range(20, 0, -1))) == -2.0      # tenths of 2 epochs: (2+1)/2 - (4+3)/2
    assert training_trend([1.0, 1.0, 1.0]) == 0.0
    assert math.isnan(training_trend([1.0]))


# ------------------------------------------------------------------------------------ recovery
def test_matching_undoes_a_hidden_permutation(data):
    model = data.true_model()
    with torch.no_grad():                                  # swap the two hidden neurons' labels
        order = [0, 1, 2, 4, 3]
        model.generative.weight.copy_(data.weight[order][:, order])
        model.generative.bias.copy_(data.bias[order])
    assert match_hidden_neurons(data.weight, model.weight, 3) == order
    errors = recovery_errors(model, data.weight, data.bias)
    assert errors["weight_error"] < 1e-6 and errors["bias_error"] < 1e-6
    unmatched = float((model.weight.detach() - data.weight).abs().mean())
    assert unmatched > 0.05                                  # without matching the error is not zero
    assert torch.allclose(errors["weight"], data.weight)


def test_hidden_permutations_keep_visible_neurons():
    assert hidden_permutations(3, 2) == [(0, 1, 2, 3, 4), (0, 1, 2, 4, 3)]
    assert len(hidden_permutations(1, 3)) == math.factorial(3)


def test_connectivity_matrix_layout(data):
    image = connectivity_matrix(data.weight)
    assert image.shape == (5, 15)
    assert float(image[1, 3 * 4 + 2]) == float(data.weight[1, 4, 2])


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kwargs, word", [
    ({"method": "exact"}, "method"),
    ({"method": "eat-cubic", "temperature": None}, "temperature"),
    ({"method": "score", "temperature": 0.1}, "temperature"),
    ({"method": "score", "n_samples": 0}, "n_samples"),
    ({"method": "eat-cubic", "temperature": -1.0}, "temperature"),
])
def test_negative_elbo_rejects_bad_arguments(data, kwargs, word):
    args = {"temperature": 0.1, "n_samples": 2, **kwargs}
    with pytest.raises(ValueError, match=word):
        negative_elbo(POGLM(), data.train[:2, :3], **args)


def test_bad_shapes_and_sizes_raise_value_errors():
    model = POGLM()
    with pytest.raises(ValueError, match="visible"):
        model.posterior_rate(torch.zeros(2, 5, 10))
    with pytest.raises(ValueError, match="spikes"):
        model.firing_rate(torch.zeros(2, 3, 10))
    with pytest.raises(ValueError, match="n_hidden"):
        POGLM(n_hidden=0)
    with pytest.raises(ValueError, match="max_rate"):
        POGLM(max_rate=float("nan"))
    with pytest.raises(ValueError, match="weight_scale"):
        simulate_poglm_data(weight_scale=-0.1)
    with pytest.raises(ValueError, match="learned_weight"):
        match_hidden_neurons(torch.zeros(5, 5, 3), torch.zeros(4, 4, 3), 3)


# ------------------------------------------------------------------------------------ figures
def test_figure_helpers_draw_what_they_promise(data):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.patches import Circle, FancyArrowPatch

    from hitchhiker.book.plotting import plot_method_sweep
    from hitchhiker.book.poglm import draw_network, plot_spike_counts

    fig, axes = plt.subplots(1, 4)
    draw_network(axes[0], data.weight, 3)
    arrows = [p for p in axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 5 * 4                              # every ordered pair, no self-loops
    assert len([p for p in axes[0].patches if isinstance(p, Circle)]) == 5
    image = plot_spike_counts(axes[1], data.train[0], 3)
    assert image.get_array().shape == (5, 60)
    table = pd.DataFrame({"method": ["score", "score", "eat-cubic", "eat-cubic"],
                          "temperature": [None, None, 0.1, 0.5], "n_samples": [2, 5, 5, 5],
                          "seed": [0, 0, 0, 0], "test_elbo": [-3.0, -2.0, -1.0, -1.5]})
    plot_method_sweep(axes[2], axes[3], table, "test_elbo", "ELBO")
    assert [t.get_text() for t in axes[3].get_xticklabels()] == ["0.1", "0.5"]
    assert [t.get_text() for t in axes[2].get_xticklabels()] == ["2", "5"]
    plt.close(fig)


# ------------------------------------------------------------ the one estimator function, unchanged
@pytest.mark.parametrize("method, tau, n", [("score", None, 1), ("score", None, 5), ("eat-cubic", 0.2, 5),
                                            ("gsm", 0.5, 2)])
def test_negative_elbo_is_the_formula_with_the_same_draws(data, method, tau, n):
    """Through hitchhiker.surrogate_loss, with the generator consumed as the stored results were made:
    the same draws, the same loss and bit-identical gradients as the explicit formula."""
    from hitchhiker import pathwise_distribution, poisson_log_prob, score_function_surrogate

    visible = data.train[:8, :3]
    torch.manual_seed(0)
    model = POGLM()
    params = list(model.parameters())
    torch.manual_seed(7)
    loss = negative_elbo(model, visible, method, tau, n)
    grads = torch.autograd.grad(loss, params)
    torch.manual_seed(7)
    rate = model.posterior_rate(visible)
    if method == "score":
        with torch.no_grad():
            hidden = torch.poisson(rate.detach().expand(n, *rate.shape))
        log_q = poisson_log_prob(hidden, rate).sum((-2, -1))
        reference = score_function_surrogate(log_q - model.log_joint(visible, hidden), log_q,
                                             baseline=n >= 2).mean()
    else:
        extra = {"n_categories": POGLM_GSM_CATEGORIES} if method == "gsm" else {}
        dist = pathwise_distribution(method, rate, tau, **extra)
        hidden = dist.rsample((n,))
        reference = (dist.log_prob(hidden).sum((-2, -1)) - model.log_joint(visible, hidden)).mean(0).mean()
    expected = torch.autograd.grad(reference, params)
    assert torch.equal(loss, reference)
    assert all(torch.equal(g, e) for g, e in zip(grads, expected))
