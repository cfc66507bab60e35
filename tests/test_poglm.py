"""Tests for hitchhiker.book.poglm: the generator, the model's causality, the ELBO bound, training, recovery."""
import itertools
import math

import pytest
import torch

from hitchhiker.book.poglm.model import (
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
    return simulate_poglm_data(seed=3, n_train=16, n_test=8, n_bins=60, regime="stress")


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
    big = simulate_poglm_data(seed=0, n_train=1, n_test=1, n_bins=5, n_visible=10, n_hidden=10,
                              regime="stress")
    # 20*20*3 = 1200 Gaussian draws with sd 0.5 (the default layer init would have sd ~0.075)
    assert abs(float(big.weight.std()) - 0.5) < 0.04
    assert abs(float(big.bias.std()) - 0.5) < 0.2
    scaled = simulate_poglm_data(seed=0, n_train=1, n_test=1, n_bins=5, weight_scale=0.1, bias_scale=0.0,
                                 regime="stress")
    assert torch.equal(scaled.bias, torch.zeros(5))
    assert torch.allclose(scaled.weight, 0.2 * simulate_poglm_data(
        seed=0, n_train=1, n_test=1, n_bins=5, weight_scale=0.5, regime="stress").weight)


def test_paper_regime_is_the_layer_default_uniform():
    big = simulate_poglm_data(seed=0, n_train=1, n_test=1, n_bins=5, n_visible=10, n_hidden=10)
    bound = 1 / math.sqrt(20 * 3)                          # Conv1d's default: 1/sqrt(fan_in)
    assert big.regime == "paper" and float(big.weight.abs().max()) <= bound
    assert abs(float(big.weight.std()) - bound / math.sqrt(3)) < 0.05 * bound   # U(-a, a): sd a/sqrt(3)
    assert float(big.weight.abs().max()) > 0.98 * bound and float(big.bias.abs().max()) <= bound
    # the same bound as torch's own layer initialisation
    layer = torch.nn.Conv1d(20, 20, 3)
    assert math.isclose(float(layer.weight.abs().max()), bound, rel_tol=0.01)
    with pytest.raises(ValueError, match="regime"):
        simulate_poglm_data(regime="gaussian")


def test_the_stress_regime_saturates_and_the_paper_regime_does_not():
    paper = simulate_poglm_data(seed=0)
    stress = simulate_poglm_data(seed=0, regime="stress")
    assert paper.clamp_share() == 0.0 and float(paper.train_rates.max()) < 5
    assert stress.clamp_share() > 0.05
    # the share counts every bin of train and test at the clamp
    rates = torch.cat([stress.train_rates.flatten(), stress.test_rates.flatten()])
    assert stress.clamp_share() == float((rates == 10.0).double().mean())


def test_generator_is_seeded_and_shaped(data):
    again = simulate_poglm_data(seed=3, n_train=16, n_test=8, n_bins=60, regime="stress")
    other = simulate_poglm_data(seed=4, n_train=16, n_test=8, n_bins=60, regime="stress")
    assert torch.equal(again.train, data.train) and torch.equal(again.weight, data.weight)
    assert not torch.equal(other.weight, data.weight)
    assert data.train.shape == (16, 5, 60) and data.test.shape == (8, 5, 60)
    assert data.weight.shape == (5, 5, 3) and data.bias.shape == (5,)
    assert float(data.train_rates.max()) <= 10.0
    assert torch.equal(data.train, data.train.round()) and float(data.train.min()) >= 0


def test_sampling_matches_rates_on_average():
    big = simulate_poglm_data(seed=1, n_train=200, n_test=1, n_bins=50, regime="stress")
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
                                weight_scale=0.2, bias_scale=0.3, regime="stress")
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

    from hitchhiker.book.common.plotting import plot_method_sweep
    from hitchhiker.book.poglm.model import draw_network, plot_spike_counts

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


# ------------------------------------------------------------------------ blocks and references
def test_block_errors_split_the_matrix_and_match_the_hidden_labels(data):
    from hitchhiker.book.poglm.model import POGLM_BLOCKS, block_errors

    assert block_errors(data.weight, data.weight, 3) == {b: 0.0 for b in POGLM_BLOCKS}
    swapped = data.weight[[0, 1, 2, 4, 3]][:, [0, 1, 2, 4, 3]]
    assert block_errors(data.weight, swapped, 3)["all"] == 0.0          # relabelled, not penalised
    null = block_errors(data.weight, torch.zeros_like(data.weight), 3)
    w = data.weight.abs()
    assert math.isclose(null["vis<-hid"], float(w[:3, 3:].mean()), rel_tol=1e-6)
    assert math.isclose(null["hid<-vis"], float(w[3:, :3].mean()), rel_tol=1e-6)
    assert math.isclose(null["hid<-hid"], float(w[3:, 3:].mean()), rel_tol=1e-6)
    # "all" is the tap-weighted mean of the four blocks (9, 6, 6 and 4 neuron pairs)
    weighted = (9 * null["vis<-vis"] + 6 * null["vis<-hid"] + 6 * null["hid<-vis"] + 4 * null["hid<-hid"]) / 25
    assert math.isclose(null["all"], weighted, rel_tol=1e-6)
    off = data.weight.clone()
    off[3:, 3:] += 0.1                                                  # only the hidden<-hidden block
    errors = block_errors(data.weight, off, 3)
    assert errors["vis<-vis"] == 0.0 and math.isclose(errors["hid<-hid"], 0.1, rel_tol=1e-5)


# ------------------------------------------------------------------------------ stacked runs
from hitchhiker.book.common.training import FLAT_GAIN, last_quarter_gain  # noqa: E402
from hitchhiker.book.poglm.grid import (  # noqa: E402
    StackedPOGLM,
    evaluate_stacked,
    fit_oracle,
    fit_posterior_only,
    fit_stacked,
    poglm_checkpoint_name,
    poglm_grid_runs,
    recovery_table,
    run_poglm_grid,
    stacked_negative_elbo,
    stacked_negative_log_joint,
)


def test_stack_starts_each_run_from_its_seed_and_computes_what_each_run_would(data):
    stack = StackedPOGLM.fresh([4, 7])
    torch.manual_seed(7)
    alone = POGLM()
    assert torch.equal(stack.unstack(1).generative.weight, alone.generative.weight)
    spikes = torch.stack([data.train[:3], data.test[:3]])               # run r sees its own data
    rates = stack.firing_rate(spikes)
    posterior = stack.posterior_rate(spikes[:, :, :3])
    for r in range(2):
        single = stack.unstack(r)
        assert torch.allclose(rates[r], single.firing_rate(spikes[r]), atol=1e-6)
        assert torch.allclose(posterior[r], single.posterior_rate(spikes[r, :, :3]), atol=1e-6)
    hidden = torch.poisson(torch.ones(4, 2, 3, 2, 60))
    joint = stack.log_joint(spikes[:, :, :3], hidden)
    assert joint.shape == (4, 2, 3)
    assert torch.allclose(joint[:, 1], stack.unstack(1).log_joint(spikes[1, :, :3], hidden[:, 1]), rtol=1e-5)
    with pytest.raises(ValueError, match="spikes"):
        stack.firing_rate(data.train[:3])                               # no run dimension


def test_each_run_gets_only_its_own_gradient(data):
    stack = StackedPOGLM.fresh([0, 1])
    spikes = torch.stack([data.train[:4], data.train[4:8]])
    stacked_negative_log_joint(stack, spikes).sum().backward()
    first = stack.gen_weight.grad[0].clone()
    stack.zero_grad()
    spikes[1] = torch.poisson(3 * torch.ones_like(spikes[1]))          # change the other run's data
    stacked_negative_log_joint(stack, spikes).sum().backward()
    assert torch.equal(stack.gen_weight.grad[0], first)
    single = stack.unstack(0)
    (-single.log_joint(spikes[0, :, :3], spikes[0, :, 3:]).mean()).backward()
    assert torch.allclose(single.generative.weight.grad, first, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method, tau", [("eat-cubic", 0.2), ("score", None), ("gsm", 0.5)])
def test_stacked_loss_of_one_run_is_the_single_run_loss_with_the_same_draws(data, method, tau):
    stack = StackedPOGLM.fresh([0])
    single = stack.unstack(0)
    visible = data.train[:4, :3]
    torch.manual_seed(3)
    stacked = stacked_negative_elbo(stack, visible[None], method, None if tau is None else [tau], 3)
    torch.manual_seed(3)
    alone = negative_elbo(single, visible, method, tau, 3)
    assert stacked.shape == (1,) and torch.allclose(stacked[0], alone, rtol=1e-5)


def test_per_run_temperatures_are_used_and_checked(data):
    stack = StackedPOGLM.fresh([0, 0])                 # two copies of one model
    visible = torch.stack([data.train[:4, :3]] * 2)
    torch.manual_seed(0)
    same = stacked_negative_elbo(stack, visible, "eat-sigmoid", [0.5, 0.5], 400)
    torch.manual_seed(0)
    mixed = stacked_negative_elbo(stack, visible, "eat-sigmoid", [0.02, 0.5], 400)
    # the sigmoid's relaxed counts are inflated at tau = 0.5, so the two runs' losses must differ
    assert abs(float(same[0] - same[1])) < 0.02 * abs(float(same[0]))
    assert abs(float(mixed[0] - mixed[1])) > 3 * abs(float(same[0] - same[1]))
    with pytest.raises(ValueError, match="one value per run"):
        stacked_negative_elbo(stack, visible, "eat-cubic", [0.1, 0.2, 0.3], 2)


def test_stacked_evaluation_is_evaluate_poglm_run_by_run(data):
    stack = StackedPOGLM.fresh([2])
    single = stack.unstack(0)
    scores = evaluate_stacked(stack, data.test[None], n_samples=48, seed=5)
    alone = evaluate_poglm(single, data.test, n_samples=48, seed=5)     # the same draws
    assert math.isclose(float(scores["elbo"][0]), alone["elbo"], rel_tol=1e-5)
    assert math.isclose(float(scores["log_likelihood"][0]), alone["log_likelihood"], rel_tol=1e-5)
    chunked = evaluate_stacked(stack, data.test[None], n_samples=48, seed=5, chunk=7)
    assert chunked["log_weights"].shape == (48, 1, 8)
    assert float(chunked["log_likelihood"][0]) >= float(chunked["elbo"][0])


def test_last_quarter_gain():
    # five points: the last quarter starts at the fourth (index 3)
    assert last_quarter_gain([-200.0, -110.0, -105.0, -101.0, -100.0]) == pytest.approx(1 / 101)
    assert last_quarter_gain([-100.0, -100.0, -100.0]) == 0.0
    assert last_quarter_gain([-100.0, -99.0]) == pytest.approx(0.01)
    assert math.isnan(last_quarter_gain([-1.0]))
    assert FLAT_GAIN == 0.005


def test_fit_stacked_trains_every_run_follows_the_schedule_and_reloads(data, tmp_path):
    stack = StackedPOGLM.fresh([0, 1])
    spikes = torch.stack([data.train, data.train])
    loss = lambda net, batch: stacked_negative_log_joint(net, batch)
    path = tmp_path / "stack.pt"
    history = fit_stacked(stack, loss, spikes, epochs=15, batch_size=4, lr=0.05, final_lr=1e-3,
                          eval_fn=lambda net: -stacked_negative_log_joint(net, spikes).detach(),
                          eval_every=5, checkpoint=path)
    assert history["eval_epoch"] == [0, 5, 10, 15]
    assert all(last[r] > first[r] for first, last in [(history["eval"][0], history["eval"][-1])]
               for r in range(2))
    assert all(history["loss"][-1][r] < history["loss"][0][r] for r in range(2))
    again = StackedPOGLM.fresh([0, 1])
    reloaded = fit_stacked(again, loss, spikes, epochs=15, batch_size=4, lr=0.05, final_lr=1e-3,
                           eval_fn=lambda net: -stacked_negative_log_joint(net, spikes).detach(),
                           eval_every=5, checkpoint=path)
    assert reloaded == history and torch.equal(again.gen_weight, stack.gen_weight)
    with pytest.raises(ValueError, match="one slice per run"):
        fit_stacked(StackedPOGLM.fresh([0]), loss, spikes, epochs=1)


def test_grid_runs_and_checkpoint_names():
    runs = poglm_grid_runs(["paper", "stress"], [0.1, 0.5], [1, 5], seeds=[0, 1])
    assert len(runs) == 2 * 2 * (2 + 3 * 2)
    assert {r["method"] for r in runs} == {"score", "eat-sigmoid", "eat-cubic", "gsm"}
    assert all(r["temperature"] is None for r in runs if r["method"] == "score")
    name = poglm_checkpoint_name("gsm", 5, runs[:3], {"epochs": 10})
    assert name.startswith("poglm-elbo-gsm-S5-3runs-") and name.endswith(".pt")
    assert name != poglm_checkpoint_name("gsm", 5, runs[:3], {"epochs": 11})


@pytest.fixture(scope="module")
def small_grid():
    datasets = {r: simulate_poglm_data(seed=0, n_train=16, n_test=6, n_bins=40, regime=r)
                for r in ("paper", "stress")}
    runs = poglm_grid_runs(["paper", "stress"], [0.5], [2], seeds=[0], relaxations=("eat-cubic",))
    grid = run_poglm_grid(datasets, runs, epochs=6, eval_every=2, curve_samples=8, eval_samples=16)
    oracles = fit_oracle(datasets, [("paper", 0), ("stress", 0)], epochs=6, eval_every=3)
    return datasets, runs, grid, oracles


def test_run_poglm_grid_reports_one_row_and_one_curve_per_run(small_grid):
    datasets, runs, grid, _ = small_grid
    assert len(grid.rows) == len(runs) == len(grid.models) == 4
    for run, row, model in zip(runs, grid.rows, grid.models):
        assert {k: row[k] for k in run} == run
        assert row["test_log_likelihood"] >= row["test_elbo"]
        data = datasets[run["regime"]]
        assert row["weight_error"] == recovery_errors(model, data.weight, data.bias)["weight_error"]
        curve = [c["test_elbo"] for c in grid.curves if all(c[k] == run[k] for k in run)]
        assert len(curve) == 4 and row["last_quarter_gain"] == last_quarter_gain(curve)
    assert set(grid.seconds) == {("score", 2), ("eat-cubic", 5)}


def test_recovery_table_holds_both_references(small_grid):
    from hitchhiker.book.poglm.model import POGLM_BLOCKS, block_errors

    datasets, runs, grid, oracles = small_grid
    table = recovery_table(grid.rows, grid.models, datasets, oracles)
    assert len(table) == len(runs) * len(POGLM_BLOCKS)
    row = next(r for r in table if r["regime"] == "stress" and r["block"] == "hid<-vis")
    data = datasets["stress"]
    assert row["null_error"] == block_errors(data.weight, torch.zeros_like(data.weight), 3)["hid<-vis"]
    assert row["oracle_error"] == block_errors(data.weight, oracles["stress", 0][0].weight, 3)["hid<-vis"]
    assert [epoch for epoch, _ in oracles["paper", 0][1]] == [0, 3, 6]


def test_the_oracle_recovers_the_weights_from_enough_observed_spikes():
    data = simulate_poglm_data(seed=1, n_train=200, n_test=5, n_bins=100)
    oracle, curve = fit_oracle({"paper": data}, [("paper", 0)], epochs=12, batch_size=20, lr=0.05,
                               eval_every=4)[("paper", 0)]
    error = recovery_errors(oracle, data.weight, data.bias)["weight_error"]
    assert error < 0.3 * float(data.weight.abs().mean())
    assert curve[-1][1] > curve[0][1]


def test_posterior_only_fit_keeps_the_given_network(data):
    stack = fit_posterior_only(data, data.weight, data.bias, seeds=[0, 1], epochs=2, batch_size=8)
    assert torch.equal(stack.gen_weight[1], data.weight) and torch.equal(stack.gen_bias[0], data.bias)
    fresh = StackedPOGLM.fresh([0, 1])
    assert not torch.equal(stack.post_weight, fresh.post_weight)


def test_regime_summary_states_the_gsm_tail_against_scipy():
    from scipy.stats import poisson

    from hitchhiker.book.poglm.grid import regime_summary

    datasets = {r: simulate_poglm_data(seed=0, n_train=4, n_test=2, n_bins=50, regime=r)
                for r in ("paper", "stress")}
    rows = {row["regime"]: row for row in regime_summary(datasets)}
    stress = datasets["stress"]
    rates = torch.cat([stress.train_rates.flatten(), stress.test_rates.flatten()]).double().numpy()
    assert math.isclose(rows["stress"]["tail_mass_mean"], float(poisson.sf(7, rates).mean()), rel_tol=1e-6)
    assert math.isclose(rows["stress"]["tail_mass_at_max"], float(poisson.sf(7, rates.max())), rel_tol=1e-6)
    assert rows["stress"]["clamp_share"] == stress.clamp_share() and rows["paper"]["clamp_share"] == 0.0
    assert rows["paper"]["max_rate"] < rows["stress"]["max_rate"]


def test_posterior_rate_summary_reads_the_trained_posteriors(small_grid):
    from scipy.stats import poisson

    from hitchhiker.book.poglm.grid import posterior_rate_summary

    datasets, runs, grid, _ = small_grid
    rows = posterior_rate_summary(grid.rows, grid.models, datasets, method="eat-cubic")
    assert {r["regime"] for r in rows} == {"paper", "stress"}
    paper = next(r for r in rows if r["regime"] == "paper")
    model = next(m for r, m in zip(grid.rows, grid.models) if r["regime"] == "paper"
                 and r["method"] == "eat-cubic")
    with torch.no_grad():
        rate = model.posterior_rate(datasets["paper"].test[:, :3]).double()
    assert paper["max_posterior_rate"] == float(rate.max())
    assert math.isclose(paper["tail_mass_at_max"], float(poisson.sf(7, rate.max().item())), rel_tol=1e-5)
    assert posterior_rate_summary(grid.rows, grid.models, datasets, method="gsm") == []


def test_log_likelihood_se_matches_the_delta_method_and_shrinks_with_samples():
    from hitchhiker.book.poglm.grid import log_likelihood_se

    torch.manual_seed(0)
    log_w = torch.randn(4000, 1, 1, dtype=torch.float64) * 0.5          # lognormal weights
    w = log_w.exp()
    expected = float((w.var(0) / (4000 * w.mean(0) ** 2)).sqrt())
    assert math.isclose(float(log_likelihood_se(log_w)[0]), expected, rel_tol=1e-9)
    # the spread of log(mean w) over repeats agrees with the standard error
    repeats = torch.randn(300, 400, dtype=torch.float64).mul(0.5).exp().mean(1).log()
    predicted = float(log_likelihood_se(torch.randn(400, 1, 1, dtype=torch.float64) * 0.5)[0])
    assert 0.8 < float(repeats.std()) / predicted < 1.25
    two = torch.stack([log_w[:, 0, 0], log_w[:, 0, 0]], -1)[:, None]   # two sequences: se / sqrt(2)
    assert math.isclose(float(log_likelihood_se(two)[0]), expected / math.sqrt(2), rel_tol=1e-9)


def test_compare_likelihoods_puts_networks_on_the_same_footing(data):
    from hitchhiker.book.poglm.grid import compare_likelihoods

    truth = data.true_model()
    rows = compare_likelihoods(data, {"truth": truth, "fresh": POGLM()}, n_samples=64)
    assert [(r["model"], r["split"]) for r in rows] == [("truth", "train"), ("fresh", "train"),
                                                         ("truth", "test"), ("fresh", "test")]
    assert all(r["log_likelihood"] >= r["elbo"] and r["log_likelihood_se"] > 0 for r in rows)
    by = {(r["model"], r["split"]): r["log_likelihood"] for r in rows}
    assert by["truth", "test"] > by["fresh", "test"]                  # the truth explains the spikes
    # one network alone draws exactly what evaluate_poglm draws
    single = compare_likelihoods(data, {"truth": truth}, n_samples=64)
    alone = evaluate_poglm(truth, data.test, n_samples=64, seed=0)
    assert math.isclose(single[1]["log_likelihood"], alone["log_likelihood"], rel_tol=1e-5)
    assert math.isclose(single[1]["elbo"], alone["elbo"], rel_tol=1e-5)


def test_recovery_attempts_report_every_block_per_attempt():
    from hitchhiker.book.poglm.model import POGLM_BLOCKS
    from hitchhiker.book.poglm.grid import run_recovery_attempts

    attempts = {"wide": {"posterior_half_width": 5}, "more": {"n_train": 48, "batch_size": 16,
                                                             "epochs_factor": 0.5}}
    recovery, rows = run_recovery_attempts(["paper"], [0], epochs=2, attempts=attempts, eval_every=1,
                                           curve_samples=4, eval_samples=8)
    assert [r["attempt"] for r in rows] == ["wide", "more"]
    assert len(recovery) == 2 * len(POGLM_BLOCKS)
    assert rows[1]["epochs"] == 1
    with pytest.raises(ValueError, match="unknown settings"):
        run_recovery_attempts(["paper"], [0], epochs=1, attempts={"bad": {"width": 3}})
