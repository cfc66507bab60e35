"""Tests for hitchhiker.book.poglm: the generator, the model's causality, the ELBO bound, its members,
training, recovery."""
import itertools
import math

import pytest
import torch

from hitchhiker.book.poglm.figures import connectivity_matrix
from hitchhiker.book.poglm.model import (
    POGLM,
    POGLM_GSM_CATEGORIES,
    POGLM_METHODS,
    evaluate,
    negative_elbo,
    negative_log_joint,
    simulate_poglm_data,
)
from hitchhiker.book.poglm.recovery import hidden_permutations, match_hidden_neurons, recovery_errors


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
    assert model.n_members == 1
    assert torch.allclose(model.firing_rate(data.train)[0], data.train_rates, atol=1e-5)
    assert torch.allclose(model.firing_rate(data.test)[0], data.test_rates, atol=1e-5)
    # ... and not from some other weights: a perturbed model gives different rates
    with torch.no_grad():
        model.gen_weight[0, 0, 3, 2] += 0.3
    assert not torch.allclose(model.firing_rate(data.train)[0], data.train_rates, atol=1e-3)


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
    diff = (model.posterior_rate(changed) - base).detach().abs().sum((0, 1, 2))
    assert bool((diff[12:19] > 0).all()) and float(diff[:12].sum() + diff[19:].sum()) == 0.0
    assert base.shape == (1, 1, 2, 30) and float(base.detach().max()) <= 10.0


def test_log_joint_broadcasts_samples(data):
    model = data.true_model()
    visible, hidden = data.test[:, :3], data.test[:, 3:]
    one = model.log_joint(visible, hidden)                             # (B, H, T) goes to every member
    many = model.log_joint(visible, hidden.expand(4, 1, *hidden.shape))  # (S, M, B, H, T)
    assert one.shape == (1, 8) and many.shape == (4, 1, 8)
    assert torch.allclose(many, one.expand(4, 1, 8))
    rate = model.firing_rate(data.test)
    direct = (torch.distributions.Poisson(rate).log_prob(data.test)).sum((-2, -1))
    assert torch.allclose(one, direct, rtol=1e-5)


# ------------------------------------------------------------------------------------ ELBO
def _exact_log_marginal(model, visible, max_count):
    """log p(x) by summing p(x, z) over every hidden train z in {0..max_count}^T (one hidden neuron)."""
    n_bins = visible.shape[-1]
    grid = torch.tensor(list(itertools.product(range(max_count + 1), repeat=n_bins)), dtype=torch.float32)
    hidden = grid.reshape(-1, 1, 1, 1, n_bins)                         # (K, members=1, B=1, H=1, T)
    with torch.no_grad():
        return float(torch.logsumexp(model.log_joint(visible, hidden), 0))


def test_elbo_is_a_lower_bound_of_the_log_likelihood():
    small = simulate_poglm_data(seed=2, n_visible=2, n_hidden=1, n_bins=4, n_train=1, n_test=1,
                                weight_scale=0.2, bias_scale=0.3, regime="stress")
    model = small.true_model()
    torch.manual_seed(1)
    with torch.no_grad():
        model.post_weight.normal_(0, 0.3)
        model.post_bias.fill_(-0.5)
    visible = small.test[:, :2]
    exact = _exact_log_marginal(model, visible, max_count=14)
    scores = evaluate(model, visible, n_samples=40_000, seed=0, chunk=10_000)
    elbo, log_likelihood = float(scores["elbo"][0]), float(scores["log_likelihood"][0])
    assert elbo < exact - 0.05                                  # a strict gap: q is not the posterior
    assert elbo <= log_likelihood <= exact + 0.02
    assert abs(log_likelihood - exact) < 0.05                   # importance sampling converges to log p(x)


def test_pathwise_loss_tends_to_the_exact_elbo_at_low_temperature(data):
    model = data.true_model()
    visible = data.test[:4, :3]
    exact = float(evaluate(model, visible, n_samples=400, seed=0)["elbo"][0])
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
    negative_elbo(model, data.train[:4, :3], method, temperature, n_samples=3).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and float(param.grad.abs().sum()) > 0, (method, name)


@pytest.mark.parametrize("method, temperature", [("eat-cubic", 0.1), ("eat-sigmoid", 0.1), ("gsm", 0.5),
                                                 ("score", None)])
def test_training_improves_the_test_elbo(data, method, temperature):
    from hitchhiker.book.poglm.grid import run_poglm_grid

    torch.manual_seed(0)
    before = float(evaluate(POGLM(), data.test, n_samples=64)["elbo"][0])   # the init of seed 0
    run = {"regime": "stress", "method": method, "temperature": temperature, "n_samples": 2, "seed": 0}
    grid = run_poglm_grid({"stress": data}, [run], epochs=12, eval_every=4, curve_samples=16, eval_samples=64)
    assert grid.rows[0]["test_elbo"] > before + 0.2 * abs(before)
    curve = [c["test_elbo"] for c in grid.curves]
    assert len(curve) == 4 and curve[-1] > curve[0]


# ------------------------------------------------------------------------------------ recovery
def test_matching_undoes_a_hidden_permutation(data):
    model = data.true_model()
    with torch.no_grad():                                  # swap the two hidden neurons' labels
        order = [0, 1, 2, 4, 3]
        model.gen_weight[0].copy_(data.weight[order][:, order])
        model.gen_bias[0].copy_(data.bias[order])
    assert match_hidden_neurons(data.weight, model.weight[0], 3) == order
    errors = recovery_errors(model, data.weight, data.bias)
    assert errors["weight_error"] < 1e-6 and errors["bias_error"] < 1e-6
    unmatched = float((model.weight[0].detach() - data.weight).abs().mean())
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
    with pytest.raises(ValueError, match="n_members"):
        POGLM(n_members=0)
    with pytest.raises(ValueError, match="seeds"):
        POGLM(n_members=2, seeds=[0])
    with pytest.raises(ValueError, match="one-member"):
        recovery_errors(POGLM(n_members=2), torch.zeros(5, 5, 3), torch.zeros(5))
    with pytest.raises(IndexError, match="member 2"):
        POGLM(n_members=2).member(2)
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
    from hitchhiker.book.poglm.figures import draw_network, plot_spike_counts

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
    grads = torch.autograd.grad(loss.sum(), params)
    torch.manual_seed(7)
    rate = model.posterior_rate(visible)                               # (members, B, H, T)
    if method == "score":
        with torch.no_grad():
            hidden = torch.poisson(rate.detach().expand(n, *rate.shape))
        log_q = poisson_log_prob(hidden, rate).sum((-2, -1))
        reference = score_function_surrogate(log_q - model.log_joint(visible, hidden), log_q,
                                             baseline=n >= 2).mean(-1)
    else:
        extra = {"n_categories": POGLM_GSM_CATEGORIES} if method == "gsm" else {}
        dist = pathwise_distribution(method, rate, tau, **extra)
        hidden = dist.rsample((n,))
        reference = (dist.log_prob(hidden).sum((-2, -1)) - model.log_joint(visible, hidden)).mean(0).mean(-1)
    expected = torch.autograd.grad(reference.sum(), params)
    assert torch.equal(loss, reference)
    assert all(torch.equal(g, e) for g, e in zip(grads, expected))


# ------------------------------------------------------------------------ blocks and references
def test_block_errors_split_the_matrix_and_match_the_hidden_labels(data):
    from hitchhiker.book.poglm.recovery import POGLM_BLOCKS, block_errors

    assert block_errors(data.weight, data.weight, 3) == {b: 0.0 for b in POGLM_BLOCKS}
    swapped = data.weight[[0, 1, 2, 4, 3]][:, [0, 1, 2, 4, 3]]
    assert block_errors(data.weight, swapped, 3)["all"] == 0.0          # relabelled, not penalised
    null = block_errors(data.weight, torch.zeros_like(data.weight), 3)
    w = data.weight.abs()
    assert math.isclose(null["vis<-hid"], float(w[:3, 3:].mean()), rel_tol=1e-6)
    assert math.isclose(null["hid<-vis"], float(w[3:, :3].mean()), rel_tol=1e-6)
    assert math.isclose(null["hid<-hid"], float(w[3:, 3:].mean()), rel_tol=1e-6)
    # "all" is the tap-weighted mean of the four blocks (9, 6, 6 and 4 neuron pairs)
    weighted = (9 * null["vis<-vis"] + 6 * null["vis<-hid"] + 6 * null["hid<-vis"]
                + 4 * null["hid<-hid"]) / 25
    assert math.isclose(null["all"], weighted, rel_tol=1e-6)
    off = data.weight.clone()
    off[3:, 3:] += 0.1                                                  # only the hidden<-hidden block
    errors = block_errors(data.weight, off, 3)
    assert errors["vis<-vis"] == 0.0 and math.isclose(errors["hid<-hid"], 0.1, rel_tol=1e-5)


# ------------------------------------------------------------------------------------ members
from hitchhiker.book.common.training import FLAT_GAIN, last_quarter_gain  # noqa: E402
from hitchhiker.book.poglm.grid import (  # noqa: E402
    fit_members,
    fit_oracle,
    fit_posterior_only,
    poglm_grid_runs,
    run_poglm_grid,
)
from hitchhiker.book.poglm.recovery import recovery_table  # noqa: E402


def test_each_member_starts_from_its_seed_and_computes_what_it_would_alone(data):
    stack = POGLM(n_members=2, seeds=[4, 7])
    torch.manual_seed(7)
    alone = POGLM()
    assert torch.equal(stack.member(1).gen_weight, alone.gen_weight)
    assert torch.equal(stack.member(-1).post_weight, alone.post_weight)
    spikes = torch.stack([data.train[:3], data.test[:3]])               # member m sees its own data
    rates = stack.firing_rate(spikes)
    posterior = stack.posterior_rate(spikes[:, :, :3])
    for m in range(2):
        single = stack.member(m)
        assert torch.allclose(rates[m], single.firing_rate(spikes[m])[0], atol=1e-6)
        assert torch.allclose(posterior[m], single.posterior_rate(spikes[m, :, :3])[0], atol=1e-6)
    hidden = torch.poisson(torch.ones(4, 2, 3, 2, 60))
    joint = stack.log_joint(spikes[:, :, :3], hidden)
    assert joint.shape == (4, 2, 3)
    assert torch.allclose(joint[:, 1:], stack.member(1).log_joint(spikes[1, :, :3], hidden[:, 1:]), rtol=1e-5)
    # a (B, N, T) batch goes to every member
    shared = stack.firing_rate(data.train[:3])
    assert torch.equal(shared, stack.firing_rate(torch.stack([data.train[:3]] * 2)))
    with pytest.raises(ValueError, match="spikes"):
        stack.firing_rate(torch.zeros(3, 3, 5, 60))                     # three members for a stack of two


def test_from_members_keeps_every_member_in_order():
    a, b = POGLM(n_members=2, seeds=[0, 1]), POGLM(seeds=[5])
    both = POGLM.from_members([a, b])
    assert both.n_members == 3
    for k, source in enumerate([a.member(0), a.member(1), b]):
        assert all(torch.equal(x, y) for x, y in zip(both.member(k).parameters(), source.parameters()))
    with pytest.raises(ValueError, match="same sizes"):
        POGLM.from_members([a, POGLM(n_hidden=3)])


def test_each_member_gets_only_its_own_gradient(data):
    stack = POGLM(n_members=2, seeds=[0, 1])
    spikes = torch.stack([data.train[:4], data.train[4:8]])
    negative_log_joint(stack, spikes).sum().backward()
    first = stack.gen_weight.grad[0].clone()
    stack.zero_grad()
    spikes[1] = torch.poisson(3 * torch.ones_like(spikes[1]))          # change the other member's data
    negative_log_joint(stack, spikes).sum().backward()
    assert torch.equal(stack.gen_weight.grad[0], first)
    single = stack.member(0)
    negative_log_joint(single, spikes[0]).sum().backward()
    assert torch.allclose(single.gen_weight.grad[0], first, rtol=1e-4, atol=1e-4)


def test_per_member_temperatures_are_used_and_checked(data):
    stack = POGLM(n_members=2, seeds=[0, 0])            # two copies of one model
    visible = data.train[:4, :3]
    torch.manual_seed(0)
    same = negative_elbo(stack, visible, "eat-sigmoid", [0.5, 0.5], 400)
    torch.manual_seed(0)
    mixed = negative_elbo(stack, visible, "eat-sigmoid", [0.02, 0.5], 400)
    # the sigmoid's relaxed counts are inflated at tau = 0.5, so the two members' losses must differ
    assert abs(float(same[0] - same[1])) < 0.02 * abs(float(same[0]))
    assert abs(float(mixed[0] - mixed[1])) > 3 * abs(float(same[0] - same[1]))
    with pytest.raises(ValueError, match="one value per member"):
        negative_elbo(stack, visible, "eat-cubic", [0.1, 0.2, 0.3], 2)


def test_evaluation_per_member_with_shared_or_own_data(data):
    stack = POGLM(n_members=2, seeds=[2, 3])
    shared = evaluate(stack, data.test, n_samples=48, seed=5)
    own = evaluate(stack, torch.stack([data.test, data.test]), n_samples=48, seed=5)
    assert all(torch.equal(shared[k], own[k]) for k in shared)
    assert shared["elbo"].shape == (2,) and shared["log_weights"].shape == (48, 2, 8)
    assert bool((shared["log_likelihood"] >= shared["elbo"]).all())
    chunked = evaluate(stack, data.test, n_samples=48, seed=5, chunk=7)
    assert chunked["log_weights"].shape == (48, 2, 8)
    assert bool((chunked["log_likelihood"] >= chunked["elbo"]).all())
    with pytest.raises(ValueError, match="n_samples"):
        evaluate(stack, data.test, n_samples=0)


def test_last_quarter_gain():
    # five points: the last quarter starts at the fourth (index 3)
    assert last_quarter_gain([-200.0, -110.0, -105.0, -101.0, -100.0]) == pytest.approx(1 / 101)
    assert last_quarter_gain([-100.0, -100.0, -100.0]) == 0.0
    assert last_quarter_gain([-100.0, -99.0]) == pytest.approx(0.01)
    assert math.isnan(last_quarter_gain([-1.0]))
    assert FLAT_GAIN == 0.005


def test_fit_members_trains_every_member_follows_the_schedule_and_reloads(data, tmp_path):
    stack = POGLM(n_members=2, seeds=[0, 1])
    spikes = torch.stack([data.train, data.train])
    evaluate_fn = lambda net: -negative_log_joint(net, spikes).detach()          # noqa: E731
    kwargs = dict(epochs=15, batch_size=4, lr=0.05, final_lr=1e-3, eval_fn=evaluate_fn, eval_every=5,
                  checkpoint=tmp_path / "stack", identity={"test": "reload"})
    history = fit_members(stack, negative_log_joint, spikes, **kwargs)
    assert history["eval_epoch"] == [0, 5, 10, 15]
    assert all(last[r] > first[r] for first, last in [(history["eval"][0], history["eval"][-1])]
               for r in range(2))
    assert all(history["loss"][-1][r] < history["loss"][0][r] for r in range(2))
    files = list(tmp_path.glob("stack-*-60steps.pt"))                  # 15 epochs of 4 steps
    assert len(files) == 1
    again = POGLM(n_members=2, seeds=[0, 1])
    reloaded = fit_members(again, negative_log_joint, spikes, **kwargs)
    assert {k: reloaded[k] for k in ("loss", "eval", "eval_epoch")} == \
        {k: history[k] for k in ("loss", "eval", "eval_epoch")}
    assert torch.equal(again.gen_weight, stack.gen_weight)
    with pytest.raises(ValueError, match="one slice per member"):
        fit_members(POGLM(), negative_log_joint, spikes, epochs=1)


def test_fit_members_checkpoints_during_training_and_resumes_bit_identically(data, tmp_path):
    """A run stopped in epoch 8 resumes from its checkpoint of epoch 6 and ends where an uninterrupted
    run ends; other data never reload it: they train anew into another file."""
    visible = torch.stack([data.train[:, :3]] * 2)
    loss = lambda net, batch: negative_elbo(net, batch, "eat-cubic", [0.1, 0.5], 2)   # noqa: E731
    kwargs = dict(epochs=10, batch_size=4, identity={"test": "resume"}, checkpoint_every=3)
    whole = POGLM(n_members=2, seeds=[0, 1])
    expected = fit_members(whole, loss, visible, checkpoint=tmp_path / "whole", **kwargs)
    calls = {"n": 0}

    def stops_in_epoch_eight(net, batch):
        calls["n"] += 1
        if calls["n"] > 7 * 4:
            raise KeyboardInterrupt
        return loss(net, batch)

    stopped = POGLM(n_members=2, seeds=[0, 1])
    with pytest.raises(KeyboardInterrupt):
        fit_members(stopped, stops_in_epoch_eight, visible, checkpoint=tmp_path / "cut", **kwargs)
    assert len(list(tmp_path.glob("cut-*.pt"))) == 1                    # saved at epoch 6
    resumed = POGLM(n_members=2, seeds=[0, 1])
    history = fit_members(resumed, loss, visible, checkpoint=tmp_path / "cut", **kwargs)
    assert history["loss"] == expected["loss"]
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), whole.parameters()))
    other = visible.clone()
    other[1, -1, 0, 0] += 1                                              # one count of the last sequence
    changed = POGLM(n_members=2, seeds=[0, 1])
    fit_members(changed, loss, other, checkpoint=tmp_path / "whole", **kwargs)
    assert len(list(tmp_path.glob("whole-*.pt"))) == 2                   # a file of its own; the old one kept
    assert not torch.equal(changed.post_weight[1], whole.post_weight[1])


def test_grid_runs():
    runs = poglm_grid_runs(["paper", "stress"], [0.1, 0.5], [1, 5], seeds=[0, 1])
    assert len(runs) == 2 * 2 * (2 + 3 * 2)
    assert {r["method"] for r in runs} == {"score", "eat-sigmoid", "eat-cubic", "gsm"}
    assert all(r["temperature"] is None for r in runs if r["method"] == "score")


def test_grid_checkpoints_name_each_stack_and_every_setting(tmp_path):
    datasets = {"paper": simulate_poglm_data(seed=0, n_train=8, n_test=4, n_bins=20)}
    runs = [{"regime": "paper", "method": "gsm", "temperature": t, "n_samples": 2, "seed": 0}
            for t in (0.1, 0.5)]
    kwargs = dict(epochs=2, eval_every=1, curve_samples=4, eval_samples=4, checkpoint_dir=tmp_path)
    first = run_poglm_grid(datasets, runs, **kwargs)
    names = [p.name for p in tmp_path.glob("poglm-elbo-*")]
    assert len(names) == 1 and names[0].startswith("poglm-elbo-gsm-S2-2members-")
    assert names[0].endswith("-2steps.pt")                                  # 2 epochs of one batch
    assert len(list(tmp_path.glob("poglm-evaluation-*.pt"))) == 1           # its final evaluation
    assert run_poglm_grid(datasets, runs, **kwargs).rows == first.rows      # reloaded
    run_poglm_grid(datasets, runs, **{**kwargs, "curve_samples": 5})       # another setting: another file
    assert len(list(tmp_path.glob("poglm-elbo-*"))) == 2


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
    from hitchhiker.book.poglm.recovery import POGLM_BLOCKS, block_errors

    datasets, runs, grid, oracles = small_grid
    table = recovery_table(grid.rows, grid.models, datasets, oracles)
    assert len(table) == len(runs) * len(POGLM_BLOCKS)
    row = next(r for r in table if r["regime"] == "stress" and r["block"] == "hid<-vis")
    data = datasets["stress"]
    assert row["null_error"] == block_errors(data.weight, torch.zeros_like(data.weight), 3)["hid<-vis"]
    assert row["oracle_error"] == block_errors(data.weight, oracles["stress", 0][0].weight[0], 3)["hid<-vis"]
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
    fresh = POGLM(n_members=2, seeds=[0, 1])
    assert not torch.equal(stack.post_weight, fresh.post_weight)


def test_regime_summary_states_the_gsm_tail_against_scipy():
    from scipy.stats import poisson

    from hitchhiker.book.poglm.model import regime_summary

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

    from hitchhiker.book.poglm.recovery import posterior_rate_summary

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
    from hitchhiker.book.poglm.recovery import log_likelihood_se

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
    from hitchhiker.book.poglm.recovery import compare_likelihoods

    truth = data.true_model()
    rows = compare_likelihoods(data, {"truth": truth, "fresh": POGLM()}, n_samples=64)
    assert [(r["model"], r["split"]) for r in rows] == [("truth", "train"), ("fresh", "train"),
                                                         ("truth", "test"), ("fresh", "test")]
    assert all(r["log_likelihood"] >= r["elbo"] and r["log_likelihood_se"] > 0 for r in rows)
    by = {(r["model"], r["split"]): r["log_likelihood"] for r in rows}
    assert by["truth", "test"] > by["fresh", "test"]                  # the truth explains the spikes
    # one network alone draws exactly what evaluate draws
    single = compare_likelihoods(data, {"truth": truth}, n_samples=64)
    alone = evaluate(truth, data.test, n_samples=64, seed=0)
    assert single[1]["log_likelihood"] == float(alone["log_likelihood"][0])
    assert single[1]["elbo"] == float(alone["elbo"][0])


def test_recovery_attempts_report_every_block_per_attempt():
    from hitchhiker.book.poglm.grid import run_recovery_attempts
    from hitchhiker.book.poglm.recovery import POGLM_BLOCKS

    attempts = {"wide": {"posterior_half_width": 5}, "more": {"n_train": 48, "batch_size": 16,
                                                             "epochs_factor": 0.5}}
    recovery, rows = run_recovery_attempts(["paper"], [0], epochs=2, attempts=attempts, eval_every=1,
                                           curve_samples=4, eval_samples=8)
    assert [r["attempt"] for r in rows] == ["wide", "more"]
    assert len(recovery) == 2 * len(POGLM_BLOCKS)
    assert rows[1]["epochs"] == 1
    with pytest.raises(ValueError, match="unknown settings"):
        run_recovery_attempts(["paper"], [0], epochs=1, attempts={"bad": {"width": 3}})


# ------------------------------------------------------------------------------------ held-out and controls
def test_mixture_likelihood_converges_to_the_exact_marginal_and_one_component_is_evaluate():
    from hitchhiker.book.poglm.heldout import mixture_log_likelihood

    small = simulate_poglm_data(seed=2, n_visible=2, n_hidden=1, n_bins=4, n_train=1, n_test=1,
                                weight_scale=0.2, bias_scale=0.3, regime="stress")
    truth = small.true_model()
    poor, good = POGLM(2, 1, 3, seeds=[5]), POGLM(2, 1, 3, seeds=[6])
    with torch.no_grad():
        poor.post_bias.fill_(-2.0)                       # far too few hidden spikes: a poor proposal
        good.post_bias.fill_(0.0)
    visible = small.test[:, :2]
    exact = _exact_log_marginal(truth, visible, max_count=14)
    mixture = mixture_log_likelihood(truth, POGLM.from_members([poor, good]), small.test, 40_000, seed=0,
                                     chunk=5_000)
    assert mixture["n_draws"] == 40_000
    se = float(mixture["log_likelihood_se"][0])
    assert abs(float(mixture["log_likelihood"][0]) - exact) < 3 * se + 0.01
    # the same networks scored on the same draws: a second network gets its own number
    both = mixture_log_likelihood(POGLM.from_members([truth, poor]), POGLM.from_members([poor, good]),
                                  small.test, 2_000, seed=1)
    assert both["log_likelihood"].shape == (2,) and both["log_likelihood_se"].shape == (2,)
    # one component: exactly what evaluate estimates with the same generator
    one = mixture_log_likelihood(truth, good, small.test, 512, seed=3, chunk=64)
    same_draws = POGLM.from_members([good])
    with torch.no_grad():
        same_draws.gen_weight.copy_(truth.gen_weight)
        same_draws.gen_bias.copy_(truth.gen_bias)
    alone = evaluate(same_draws, small.test, 512, seed=3)
    assert math.isclose(float(one["log_likelihood"][0]), float(alone["log_likelihood"][0]), rel_tol=1e-8)
    with pytest.raises(ValueError, match="same sizes"):
        mixture_log_likelihood(truth, POGLM(3, 2), small.test)
    with pytest.raises(ValueError, match="n_samples"):
        mixture_log_likelihood(truth, good, small.test, 0)


def test_stratified_standard_error_matches_the_spread_over_repeats():
    from hitchhiker.book.poglm.heldout import stratified_log_likelihood

    torch.manual_seed(0)
    # two components with different weight distributions, 200 draws each, 300 repeats
    def draw():
        return torch.stack([torch.randn(200, 1, 1, dtype=torch.float64) * 0.8,
                            torch.randn(200, 1, 1, dtype=torch.float64) * 0.3 - 0.5])
    estimates = torch.stack([stratified_log_likelihood(draw())[0] for _ in range(300)])
    predicted = float(stratified_log_likelihood(draw())[1][0])
    assert 0.8 < float(estimates.std()) / predicted < 1.25
    log_w = draw()
    mean = log_w.exp().mean(1).mean(0)
    assert math.isclose(float(stratified_log_likelihood(log_w)[0][0]), float(mean.log()[0]), rel_tol=1e-12)
    with pytest.raises(ValueError, match="2 draws"):
        stratified_log_likelihood(torch.zeros(2, 1, 1, 1))


def test_wilks_expectation_counts_the_generative_parameters():
    from hitchhiker.book.poglm.heldout import generative_parameter_count, wilks_expectation

    model = POGLM(n_visible=3, n_hidden=2, history=3, n_members=2)
    d = 5 * 5 * 3 + 5
    assert generative_parameter_count(model) == d == sum(p[0].numel() for p in (model.gen_weight,
                                                                                  model.gen_bias))
    w = wilks_expectation(model, 40)
    assert w["free_parameters"] == d and w["train_gap_total"] == d / 2
    assert w["train_gap_per_sequence"] == d / 80 == -w["heldout_gap_per_sequence"]
    assert math.isclose(w["train_gap_sd_per_sequence"], math.sqrt(d / 2) / 40)
    assert wilks_expectation(POGLM(2, 1, 2), 10)["free_parameters"] == 3 * 3 * 2 + 3
    with pytest.raises(ValueError, match="n_sequences"):
        wilks_expectation(model, 0)


def test_wilks_gap_is_what_maximum_likelihood_gains_over_the_truth_on_training_data():
    """The chi-square / 2 of Wilks in a model whose MLE is exact: Poisson rates of d independent
    counts (observed d times each): the log-likelihood gain of the MLE over the truth averages d/2."""
    torch.manual_seed(0)
    d, n, repeats = 8, 50, 400
    rate = torch.full((d,), 3.0, dtype=torch.float64)
    y = torch.poisson(rate.expand(repeats, n, d))
    mle = y.mean(1, keepdim=True)
    from hitchhiker.distributions import poisson_log_prob

    gain = (poisson_log_prob(y, mle) - poisson_log_prob(y, rate)).sum((1, 2))
    assert abs(float(gain.mean()) - d / 2) < 3 * math.sqrt(d / 2) / math.sqrt(repeats)


def test_score_without_baseline_is_the_plain_score_function(data):
    visible = data.train[:4, :3]
    model = POGLM(seeds=[0])
    for baseline in (False, True, None):
        torch.manual_seed(7)
        loss = negative_elbo(model, visible, "score", n_samples=3, baseline=baseline)
        model.zero_grad()
        loss.sum().backward()
        grads = model.post_bias.grad.clone()
        if baseline is False:
            plain = grads
        elif baseline is True:
            loo = grads
        else:
            default = grads
    assert torch.equal(loo, default) and not torch.allclose(plain, loo)
    with pytest.raises(ValueError, match="baseline"):
        negative_elbo(model, visible, "eat-cubic", 0.1, n_samples=2, baseline=False)
    with pytest.raises(ValueError, match="baseline"):
        negative_elbo(model, visible, "score", n_samples=1, baseline=True)


def test_grid_runs_without_baseline_and_from_a_given_start_in_their_own_stacks(tmp_path):
    from hitchhiker.book.poglm.controls import from_truth_runs, truth_starts

    datasets = {"paper": simulate_poglm_data(seed=1, n_train=8, n_test=4, n_bins=30)}
    runs = [{"regime": "paper", "method": "score", "temperature": None, "n_samples": 2, "seed": 0},
            {"regime": "paper", "method": "score", "temperature": None, "n_samples": 2, "seed": 0,
             "baseline": False}]
    grid = run_poglm_grid(datasets, runs, epochs=2, eval_every=1, curve_samples=4, eval_samples=8,
                          heldout_samples=32)
    assert set(grid.seconds) == {("score", 2), ("score", 2, False)}
    for row in grid.rows:
        assert row["heldout_samples"] == 32 and row["heldout_elbo_se"] > 0
        assert row["heldout_log_likelihood"] >= row["heldout_elbo"] and row["heldout_log_likelihood_se"] > 0
        assert row["initial_weight_error"] > 0
    assert grid.rows[1]["baseline"] is False
    with pytest.raises(ValueError, match="baseline"):
        run_poglm_grid(datasets, [{**runs[0], "method": "eat-cubic", "temperature": 0.1, "baseline": False}],
                       epochs=1)
    # initialised at the truth: the start is the truth, the posterior the given one
    data = datasets["paper"]
    posterior = POGLM(n_members=1, seeds=[9])
    truth_runs = from_truth_runs(["paper"], [0], settings=(("eat-cubic", 0.1, 2),))
    starts = truth_starts(truth_runs, datasets, {"paper": posterior}, [0])
    assert torch.equal(starts[0].gen_weight[0], data.weight) and torch.equal(starts[0].post_weight,
                                                                             posterior.post_weight)
    ckpt = tmp_path / "ck"
    first = run_poglm_grid(datasets, truth_runs, init=starts, epochs=1, eval_every=1, curve_samples=4,
                           eval_samples=8, checkpoint_dir=ckpt)
    assert first.rows[0]["initial_weight_error"] == 0.0 and first.rows[0]["weight_error"] > 0
    # another start is another run: a new checkpoint, never the old one reloaded
    other = truth_starts(truth_runs, datasets, {"paper": POGLM(n_members=1, seeds=[10])}, [0])
    run_poglm_grid(datasets, truth_runs, init=other, epochs=1, eval_every=1, curve_samples=4,
                   eval_samples=8, checkpoint_dir=ckpt)
    assert len(list(ckpt.glob("poglm-elbo-*.pt"))) == 2
    with pytest.raises(ValueError, match="one model per run"):
        run_poglm_grid(datasets, truth_runs, init=[], epochs=1)


def test_control_runs_change_one_thing_each():
    from hitchhiker.book.poglm.config import poglm_config
    from hitchhiker.book.poglm.controls import (
        FROM_TRUTH_SETTINGS,
        OFFICIAL_RECIPE,
        from_truth_runs,
        score_control_runs,
        wide_temperature_runs,
    )

    assert OFFICIAL_RECIPE == {"epochs": 100, "batch_size": 8, "lr": 1e-3, "final_lr": 1e-3}
    plan = score_control_runs(["paper"], [1, 2, 5], [0, 1])
    assert all(r["baseline"] is False and r["n_samples"] >= 2 for r in plan["book recipe, no baseline"])
    official = plan["official recipe"]
    assert {r["n_samples"] for r in official if r["method"] == "score"} == {1, 2, 5}
    assert all(r["baseline"] is False for r in official if r["method"] == "score")
    assert {r["method"] for r in official} == {"score", "eat-sigmoid", "eat-cubic", "gsm"}
    assert all(r["baseline"] is True for r in plan["official recipe, leave-one-out"])
    wide = wide_temperature_runs(["paper", "stress"], [1.0, 2.0], [0])
    assert {(r["method"], r["temperature"]) for r in wide} == {("eat-cubic", 1.0), ("eat-cubic", 2.0)}
    assert len(from_truth_runs(["paper"], [0, 1, 2])) == 3 * len(FROM_TRUTH_SETTINGS)
    for scale in ("smoke", "default"):
        config = poglm_config(scale)
        assert config["wide_temperatures"] == [1.0, 2.0]
        official = config["official_schedule"]
        assert official["lr"] == official["final_lr"] == 1e-3 and official["batch_size"] == 8
        assert official["epochs"] * 4 == config["schedule"]["epochs"]
    assert poglm_config("default")["likelihood_samples"] >= 4096


def test_cubic_above_tau_one_overshoots_the_mean_by_campbell():
    import hitchhiker as hh

    assert float(hh.RelaxedPoisson(1.0, 1.0, indicator="cubic").mean) == pytest.approx(1.0, abs=1e-6)
    assert float(hh.RelaxedPoisson(1.0, 2.0, indicator="cubic").mean) == pytest.approx(1.0546875, abs=1e-6)


def test_deficit_table_pairs_seeds_and_splits_the_elbo_deficit():
    from hitchhiker.book.poglm.heldout import deficit_table

    def row(method, tau, n, seed, elbo, ll):
        return {"regime": "paper", "method": method, "temperature": tau, "n_samples": n, "seed": seed,
                "heldout_elbo": elbo, "heldout_elbo_se": 0.3, "heldout_log_likelihood": ll,
                "heldout_log_likelihood_se": 0.4}
    rows = [row("eat-cubic", 0.02, 5, 0, -270.0, -269.0), row("eat-cubic", 0.02, 5, 1, -272.0, -271.0),
            row("eat-sigmoid", 0.5, 5, 0, -280.0, -273.0), row("eat-sigmoid", 0.5, 5, 1, -280.0, -273.0),
            row("score", None, 1, 1, -275.0, -271.5)]
    table = deficit_table(rows).set_index(["method"])
    sig = table.loc["eat-sigmoid"]
    assert sig["seeds"] == 2 and sig["elbo_deficit"] == 9.0 and sig["likelihood_deficit"] == 3.0
    assert math.isclose(sig["elbo_deficit_se"], math.sqrt(2 * (0.09 + 0.09)) / 2)
    assert math.isclose(sig["log_likelihood_se"], math.sqrt(2 * 0.16) / 2)
    score = table.loc["score"]                                   # only seed 1 is shared with the reference
    assert score["seeds"] == 1 and score["elbo_deficit"] == 3.0 and score["likelihood_deficit"] == 0.5
    assert table.loc["eat-cubic", "elbo_deficit"] == 0.0
    with pytest.raises(ValueError, match="reference"):
        deficit_table(rows, reference=("gsm", 0.1, 5))


def test_grid_evaluations_are_stored_once_and_keyed_by_the_trained_weights(tmp_path):
    from hitchhiker.book.poglm.grid import cached_evaluation

    datasets = {"paper": simulate_poglm_data(seed=1, n_train=8, n_test=4, n_bins=30)}
    runs = [{"regime": "paper", "method": "eat-cubic", "temperature": 0.1, "n_samples": 2, "seed": 0}]
    kwargs = dict(epochs=1, eval_every=1, curve_samples=4, eval_samples=8, heldout_samples=16)
    first = run_poglm_grid(datasets, runs, checkpoint_dir=tmp_path, **kwargs)
    stored = sorted(p.name for p in tmp_path.iterdir() if "evaluation" in p.name)
    assert len(stored) == 1
    again = run_poglm_grid(datasets, runs, checkpoint_dir=tmp_path, **kwargs)
    assert again.rows == first.rows and len(list(tmp_path.iterdir())) == 2
    plain = run_poglm_grid(datasets, runs, **kwargs)                     # no folder: computed afresh
    assert plain.rows[0]["heldout_elbo"] == first.rows[0]["heldout_elbo"]
    # other weights, other file; a damaged file is an error, never recomputed over
    model = POGLM(seeds=[0])
    calls = []
    compute = lambda: calls.append(1) or {"x": torch.ones(2)}          # noqa: E731
    cached_evaluation(tmp_path, model, datasets["paper"].test, {"n": 1}, compute)
    cached_evaluation(tmp_path, model, datasets["paper"].test, {"n": 1}, compute)
    assert calls == [1]
    with torch.no_grad():
        model.gen_bias.add_(1.0)
    cached_evaluation(tmp_path, model, datasets["paper"].test, {"n": 1}, compute)
    assert calls == [1, 1]
    path = sorted(tmp_path.glob("poglm-evaluation-*.pt"), key=lambda p: p.stat().st_mtime)[-1]
    path.write_bytes(path.read_bytes()[:-5])
    from hitchhiker.book.common.checkpoint import CheckpointError

    with pytest.raises(CheckpointError):
        cached_evaluation(tmp_path, model, datasets["paper"].test, {"n": 1}, compute)


def test_likelihood_comparisons_read_back_what_they_stored(data, tmp_path):
    from hitchhiker.book.poglm.heldout import heldout_comparison
    from hitchhiker.book.poglm.recovery import compare_likelihoods

    models = {"truth": data.true_model(), "fresh": POGLM(seeds=[4])}
    proposals = POGLM.from_members([POGLM(seeds=[5]), POGLM(seeds=[6])])
    for call in (lambda d: heldout_comparison(data, models, proposals, 64, cache_dir=d),
                 lambda d: compare_likelihoods(data, models, 64, cache_dir=d)):
        plain = call(None)
        assert call(tmp_path) == plain == call(tmp_path)
    assert len(list(tmp_path.glob("poglm-evaluation-*.pt"))) == 4          # two splits, two kinds


# ------------------------------------------------------------------------ the temperature controls
def test_rate_adaptive_temperatures_follow_the_rule_per_member_and_element():
    from hitchhiker.book.poglm.model import adaptive_temperatures

    rate = torch.tensor([[0.1, 0.4, 2.0, 30.0], [0.1, 0.4, 2.0, 30.0]]).reshape(2, 1, 1, 4)
    tau = adaptive_temperatures(rate, [0.02, 0.1])
    expected = torch.tensor([[1.0, 1.25, 0.25, 1 / 60], [1.0, 1.25, 0.25, 1 / 60]]).clamp(max=1.0)
    expected[0] = expected[0].clamp(min=0.02)
    expected[1] = expected[1].clamp(min=0.1)
    torch.testing.assert_close(tau.reshape(2, 4), expected)
    assert float(tau.max()) <= 1.0                     # the cubic's mean stays exact everywhere
    with pytest.raises(ValueError, match="one value per member"):
        adaptive_temperatures(rate, [0.1, 0.1, 0.1])


def test_the_rate_adaptive_loss_is_the_cubic_at_the_rules_temperatures(data):
    model = POGLM(n_members=2, seeds=[0, 1])
    visible = data.train[:4, :3]
    # at base tau = 1 the rule gives tau = 1 in every element: the fixed-tau loss on the same draws
    torch.manual_seed(3)
    adaptive = negative_elbo(model, visible, "eat-cubic", [1.0, 1.0], 3, temperature_rule="rate-adaptive")
    torch.manual_seed(3)
    fixed = negative_elbo(model, visible, "eat-cubic", [1.0, 1.0], 3)
    torch.testing.assert_close(adaptive, fixed)
    # at a cold base the rule widens the window where rates are low: another loss than fixed tau
    torch.manual_seed(3)
    cold = negative_elbo(model, visible, "eat-cubic", 0.02, 3, temperature_rule="rate-adaptive")
    torch.manual_seed(3)
    assert not torch.allclose(cold, negative_elbo(model, visible, "eat-cubic", 0.02, 3))
    for kwargs, word in [({"method": "eat-sigmoid", "temperature": 0.1}, "eat-cubic"),
                         ({"method": "eat-cubic", "temperature": None}, "base temperature"),
                         ({"method": "eat-cubic", "temperature": 0.1, "rule": "adaptive"},
                          "temperature_rule")]:
        with pytest.raises(ValueError, match=word):
            negative_elbo(model, visible, kwargs["method"], kwargs["temperature"], 2,
                          temperature_rule=kwargs.get("rule", "rate-adaptive"))


def test_adaptive_runs_train_in_their_own_stack_and_keep_their_rule():
    from hitchhiker.book.poglm.controls import adaptive_runs

    datasets = {"paper": simulate_poglm_data(seed=0, n_train=8, n_test=4, n_bins=20)}
    runs = adaptive_runs(["paper"], [0.02], [1]) + [
        {"regime": "paper", "method": "eat-cubic", "temperature": 0.02, "n_samples": 5, "seed": 1}]
    grid = run_poglm_grid(datasets, runs, epochs=2, eval_every=1, eval_samples=8)
    assert len(grid.seconds) == 2                       # two stacks: the rule is part of the key
    assert grid.rows[0]["temperature_rule"] == "rate-adaptive" and "temperature_rule" not in grid.rows[1]
    assert grid.rows[0]["test_elbo"] != grid.rows[1]["test_elbo"]
    with pytest.raises(ValueError, match="temperature_rule"):
        run_poglm_grid(datasets, [{**runs[1], "method": "gsm", "temperature_rule": "rate-adaptive"}],
                       epochs=1)


def test_paired_difference_pairs_by_seed_and_reports_both_spreads():
    from hitchhiker.book.poglm.controls import paired_difference

    ref = [{"regime": "paper", "temperature": 0.1, "seed": s, "heldout_elbo": -10.0 - s,
            "heldout_elbo_se": 0.3} for s in range(3)]
    new = [{"regime": "paper", "temperature": 0.1, "seed": s, "heldout_elbo": -10.0 - s + d,
            "heldout_elbo_se": 0.4} for s, d in zip(range(3), (1.0, 2.0, 3.0))]
    row = paired_difference(new, ref, metrics=("heldout_elbo",)).iloc[0]
    assert row["seeds"] == 3 and math.isclose(row["heldout_elbo_diff"], 2.0)
    assert math.isclose(row["heldout_elbo_diff_seed_se"], 1.0 / math.sqrt(3))   # sd 1 over sqrt(3)
    assert math.isclose(row["heldout_elbo_diff_mc_se"], math.sqrt(3 * 0.25) / 3)
    with pytest.raises(ValueError, match="no row"):
        paired_difference(new, [{**r, "seed": 9} for r in ref], metrics=("heldout_elbo",))


def test_inflated_mixture_components_cover_more_and_still_converge_to_the_marginal():
    from hitchhiker.book.poglm.heldout import mixture_log_likelihood

    small = simulate_poglm_data(seed=2, n_visible=2, n_hidden=1, n_bins=4, n_train=1, n_test=1,
                                weight_scale=0.2, bias_scale=0.3, regime="stress")
    truth, poor = small.true_model(), POGLM(2, 1, 3, seeds=[5])
    with torch.no_grad():
        poor.post_bias.fill_(-2.0)                       # too few hidden spikes
    exact = _exact_log_marginal(truth, small.test[:, :2], max_count=14)
    plain = mixture_log_likelihood(truth, poor, small.test, 4_000, seed=0)
    same = mixture_log_likelihood(truth, poor, small.test, 4_000, seed=0, inflations=[(1.0, 0.0)])
    assert torch.equal(plain["log_likelihood"], same["log_likelihood"])
    covered = mixture_log_likelihood(truth, poor, small.test, 40_000, seed=0, chunk=5_000,
                                     inflations=[(1.0, 0.0), (3.0, 0.5)])
    assert covered["n_draws"] == 40_000
    se = float(covered["log_likelihood_se"][0])
    assert abs(float(covered["log_likelihood"][0]) - exact) < 3 * se + 0.01
    assert se < float(plain["log_likelihood_se"][0])     # the defensive component tames the weights
    for bad in ([], [(0.0, 0.0)], [(1.0, -0.1)], [(1.0,)], [(float("nan"), 0.0)]):
        with pytest.raises(ValueError, match="inflations"):
            mixture_log_likelihood(truth, poor, small.test, 10, inflations=bad)


def test_truth_proposals_score_the_truth_under_each_named_mixture():
    from hitchhiker.book.poglm.heldout import mixture_log_likelihood, truth_proposals

    small = simulate_poglm_data(seed=2, n_visible=2, n_hidden=1, n_bins=6, n_train=2, n_test=2)
    posteriors = POGLM(2, 1, 3, n_members=2, seeds=[5, 6])
    named = {"plain": ((1.0, 0.0),), "defensive": ((1.0, 0.0), (2.0, 0.1))}
    rows = truth_proposals(small, posteriors, named, n_samples=64, seed=4)
    assert [(r["proposal"], r["split"]) for r in rows] == [
        ("plain", "train"), ("plain", "test"), ("defensive", "train"), ("defensive", "test")]
    assert [r["n_components"] for r in rows] == [2, 2, 4, 4]
    direct = mixture_log_likelihood(small.true_model(), posteriors, small.test, 64, seed=4,
                                    inflations=named["defensive"])
    assert math.isclose(rows[3]["log_likelihood"], float(direct["log_likelihood"][0]), rel_tol=1e-9)
