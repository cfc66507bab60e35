"""The method registry, the score-function (REINFORCE) surrogate and the one estimator function."""
import math

import numpy as np
import pytest
import torch

from hitchhiker import (
    GumbelSoftmaxPoisson,
    RelaxedPoisson,
    check_method,
    pathwise_distribution,
    poisson_log_prob,
    relaxed_sample,
    score_function_surrogate,
    surrogate_loss,
)
from hitchhiker.estimators import PATHWISE_METHODS


def test_registry_builds_the_right_distribution():
    rate = torch.tensor([2.0, 3.0])
    assert isinstance(pathwise_distribution("gsm", rate, 0.1), GumbelSoftmaxPoisson)
    d = pathwise_distribution("eat-sigmoid", rate, 0.1)
    assert isinstance(d, RelaxedPoisson) and d.indicator.name == "sigmoid" and not d.hard
    st = pathwise_distribution("st-cubic", rate, 0.1)
    assert st.indicator.name == "cubic" and st.hard
    for m in PATHWISE_METHODS:
        assert relaxed_sample(m, rate, 0.2, (3,)).shape == (3, 2)


@pytest.mark.parametrize("name", ["eat", "cubic", "EAT-cubic", "score", "exact", ""])
def test_unknown_pathwise_method_raises(name):
    with pytest.raises(ValueError, match="method"):
        pathwise_distribution(name, torch.ones(2), 0.1)


def test_check_method():
    assert check_method("score") == "score"
    with pytest.raises(ValueError, match="method"):
        check_method("reinforce")


def _score_gradient(rate, c, n_samples, baseline):
    """One score-function estimate of d/dlambda E[(z - c)^2], z ~ Poisson(lambda)."""
    lam = torch.tensor(rate, dtype=torch.float64, requires_grad=True)
    dist = torch.distributions.Poisson(lam.expand(n_samples))
    z = dist.sample()
    surrogate = score_function_surrogate((z - c) ** 2, dist.log_prob(z), baseline=baseline)
    (g,) = torch.autograd.grad(surrogate, lam)
    return surrogate.item(), g.item()


@pytest.mark.parametrize("baseline", [True, False])
@pytest.mark.parametrize("n_samples", [2, 10])
def test_score_function_gradient_is_unbiased(baseline, n_samples):
    """E[(z - c)^2] = lambda + (lambda - c)^2, so the true gradient is 1 + 2(lambda - c)."""
    rate, c = 4.0, 1.5
    grads = torch.tensor([_score_gradient(rate, c, n_samples, baseline)[1] for _ in range(4000)])
    truth = 1 + 2 * (rate - c)
    se = grads.std().item() / math.sqrt(grads.numel())
    assert abs(grads.mean().item() - truth) < 4.5 * se


def test_baseline_reduces_variance():
    """With a large loss offset (c far below lambda) the baseline removes most of the noise."""
    with_b = torch.tensor([_score_gradient(4.0, -5.0, 10, True)[1] for _ in range(2000)])
    without = torch.tensor([_score_gradient(4.0, -5.0, 10, False)[1] for _ in range(2000)])
    assert with_b.var() < 0.5 * without.var()


def test_surrogate_value_is_the_mean_loss_and_keeps_direct_gradients():
    w = torch.tensor(2.0, requires_grad=True)
    losses = w * torch.tensor([1.0, 2.0, 3.0])
    log_probs = torch.zeros(3, requires_grad=True)
    s = score_function_surrogate(losses, log_probs)
    assert s.item() == pytest.approx(4.0)
    gw, glp = torch.autograd.grad(s, (w, log_probs))
    assert gw.item() == pytest.approx(2.0)  # d/dw mean(w * [1, 2, 3])
    # leave-one-out weights: (L_s - mean of the others) / S
    expected = torch.tensor([2 - 5, 4 - 4, 6 - 3]) / 3.0
    assert torch.allclose(glp, expected)


def test_surrogate_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same shape"):
        score_function_surrogate(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="2 samples"):
        score_function_surrogate(torch.zeros(1), torch.zeros(1))


# ------------------------------------------------------------------ score_function_surrogate inputs
def test_surrogate_accepts_sequences_like_tensors():
    from_lists = score_function_surrogate([1.0, 2.0, 4.0], [0.0, -1.0, -2.0])
    from_tensors = score_function_surrogate(torch.tensor([1.0, 2.0, 4.0]), torch.tensor([0.0, -1.0, -2.0]))
    assert torch.equal(from_lists, from_tensors)
    # integer losses (e.g. counts) are values like any other
    assert score_function_surrogate([1, 2, 6], [0.0, 0.0, 0.0]).item() == pytest.approx(3.0)


@pytest.mark.parametrize("losses, log_probs, name", [
    ("abc", [0.0, 0.0], "losses"),
    ([1.0, 2.0], object(), "log_probs"),
    (torch.tensor([1.0, 2.0], dtype=torch.complex64), torch.zeros(2), "losses"),
    (torch.zeros(2), torch.tensor([True, False]), "log_probs"),
])
def test_surrogate_refuses_non_numeric_inputs_naming_them(losses, log_probs, name):
    with pytest.raises(TypeError, match=name):
        score_function_surrogate(losses, log_probs)


def test_surrogate_baseline_must_be_a_bool():
    with pytest.raises(TypeError, match="baseline"):
        score_function_surrogate(torch.zeros(3), torch.zeros(3), baseline="no")
    with pytest.raises(ValueError, match="sample dimension"):
        score_function_surrogate(torch.tensor(1.0), torch.tensor(0.0))


# --------------------------------------------------------------------------------- surrogate_loss
def _per_draw_gradients(method, rate, loss, n_draws, **kwargs):
    """Every draw's own gradient d/drate of surrogate_loss (n_samples=None over an expanded leaf)."""
    leaf = rate.detach().expand((n_draws,) + rate.shape).clone().requires_grad_(True)
    value = surrogate_loss(method, leaf, loss, n_samples=None, **kwargs)
    (grad,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), grad * n_draws


@pytest.mark.parametrize("baseline", [None, False])
def test_score_gradient_matches_the_closed_form(baseline):
    r"""L = sum_k (z_k - c_k)^2: E = sum_k lambda_k + (lambda_k - c_k)^2, gradient 1 + 2(lambda - c)."""
    rate = torch.tensor([0.7, 4.0, 12.0], dtype=torch.float64)
    c = torch.tensor([1.5, 1.0, 14.0], dtype=torch.float64)
    value, grads = _per_draw_gradients("score", rate, lambda z: ((z - c) ** 2).sum(-1), 20_000,
                                       baseline=baseline)
    truth = 1 + 2 * (rate - c)
    se = grads.std(0) / math.sqrt(grads.shape[0])
    assert ((grads.mean(0) - truth).abs() < 4.5 * se).all(), (grads.mean(0), truth, se)
    expected_loss = (rate + (rate - c) ** 2).sum()
    assert value.item() == pytest.approx(expected_loss.item(), rel=0.03)


def test_score_gradient_with_stacked_samples_matches_the_closed_form():
    """n_samples = S draws of the whole rate: the gradient of the mean loss, unbiased over repeats."""
    rate = torch.tensor([2.0, 6.0], dtype=torch.float64, requires_grad=True)
    c = torch.tensor([0.5, 8.0], dtype=torch.float64)
    grads = []
    for _ in range(3000):
        loss = surrogate_loss("score", rate, lambda z: ((z - c) ** 2).sum(-1), n_samples=4)
        assert loss.shape == ()
        (g,) = torch.autograd.grad(loss, rate)
        grads.append(g)
    grads = torch.stack(grads)
    truth = 1 + 2 * (rate.detach() - c)
    se = grads.std(0) / math.sqrt(grads.shape[0])
    assert ((grads.mean(0) - truth).abs() < 4.5 * se).all()


@pytest.mark.parametrize("method", ["eat-cubic", "st-cubic"])
def test_pathwise_gradient_of_the_mean_count_is_one(method):
    """EAT-cubic keeps the mean (E[z] = lambda for tau <= 1), so E[d/dlambda sum z] = 1 exactly."""
    rate = torch.tensor([0.3, 2.0, 25.0], dtype=torch.float64)
    _, grads = _per_draw_gradients(method, rate, lambda z: z.sum(-1), 20_000, temperature=0.2)
    se = grads.std(0) / math.sqrt(grads.shape[0])
    assert ((grads.mean(0) - 1).abs() < 4.5 * se + 1e-12).all(), (grads.mean(0), se)


def test_value_is_the_mean_over_draws_and_keeps_the_batch_prefix():
    torch.manual_seed(0)
    rate = torch.full((4, 3), 2.0)
    for method, kwargs in (("eat-sigmoid", {"temperature": 0.1}),
                           ("gsm", {"temperature": 0.5, "n_categories": 12}), ("score", {})):
        out = surrogate_loss(method, rate, lambda z: z.sum(-1), n_samples=5, **kwargs)
        assert out.shape == (4,)
        # the loss may also keep every dimension of rate (an elementwise loss)
        assert surrogate_loss(method, rate, lambda z: z, n_samples=5, **kwargs).shape == (4, 3)
        # or none
        assert surrogate_loss(method, rate, lambda z: z.sum((-2, -1)), n_samples=5, **kwargs).shape == ()


def test_score_sum_of_log_probs_covers_exactly_the_reduced_dimensions():
    """An elementwise loss keeps every dimension: no latent is summed (and nothing is summed over all)."""
    rate = torch.tensor([1.0, 3.0], requires_grad=True)
    torch.manual_seed(3)
    out = surrogate_loss("score", rate, lambda z: z, n_samples=3)
    (g,) = torch.autograd.grad(out.sum(), rate)
    torch.manual_seed(3)
    counts = torch.poisson(rate.detach().expand(3, 2))
    lp = poisson_log_prob(counts, rate)
    reference = score_function_surrogate(counts, lp)
    (g_ref,) = torch.autograd.grad(reference.sum(), rate)
    assert torch.equal(out.detach(), reference.detach()) and torch.equal(g, g_ref)


def test_draws_consume_the_generator_like_the_distributions():
    """The stored book results depend on it: same seed, same counts and relaxed samples."""
    rate = torch.tensor([[1.0, 7.0], [0.2, 30.0]])
    seen = {}
    torch.manual_seed(11)
    surrogate_loss("score", rate, lambda z: seen.setdefault("score", z).sum(-1), n_samples=3)
    torch.manual_seed(11)
    assert torch.equal(seen["score"], torch.poisson(rate.expand(3, 2, 2)))
    torch.manual_seed(11)
    surrogate_loss("eat-cubic", rate, lambda z: seen.setdefault("eat", z).sum(-1), 0.1, n_samples=3)
    torch.manual_seed(11)
    assert torch.equal(seen["eat"], RelaxedPoisson(rate, 0.1).rsample((3,)))


def test_with_log_prob_passes_the_sampling_density():
    rate = torch.tensor([2.0, 5.0], requires_grad=True)
    got = {}

    def loss(z, log_q):
        got["z"], got["log_q"] = z, log_q
        return (z + log_q).sum(-1)

    surrogate_loss("score", rate, loss, n_samples=2, with_log_prob=True)
    assert got["log_q"].requires_grad
    torch.testing.assert_close(got["log_q"], poisson_log_prob(got["z"], rate))
    surrogate_loss("eat-cubic", rate, loss, 0.3, n_samples=2, with_log_prob=True)
    torch.testing.assert_close(got["log_q"], RelaxedPoisson(rate, 0.3).log_prob(got["z"]))
    with pytest.raises(TypeError, match="with_log_prob"):
        surrogate_loss("score", rate, loss, n_samples=2, with_log_prob="yes")


@pytest.mark.parametrize("loss, error", [
    (lambda z: z.sum(), ValueError),                     # no sample dimension
    (lambda z: z[:1].sum(-1), ValueError),               # wrong number of draws
    (lambda z: z.sum(1), ValueError),                    # (S, 3): not a prefix of rate.shape (4, 3)
    (lambda z: z.sum(-1).tolist(), TypeError),           # not a tensor
    (lambda z: (z.sum(-1) > 1), TypeError),              # not a floating tensor
])
@pytest.mark.parametrize("method", ["score", "eat-cubic"])
def test_bad_per_sample_loss_is_named(method, loss, error):
    temperature = None if method == "score" else 0.1
    with pytest.raises(error, match="per_sample_loss"):
        surrogate_loss(method, torch.full((4, 3), 2.0), loss, temperature, n_samples=3)


def test_per_sample_loss_must_be_callable():
    with pytest.raises(TypeError, match="per_sample_loss"):
        surrogate_loss("score", torch.ones(2), torch.ones(2), n_samples=2)


@pytest.mark.parametrize("method", ["exact", "reinforce", "EAT-cubic", ""])
def test_surrogate_loss_unknown_method(method):
    with pytest.raises(ValueError, match="method"):
        surrogate_loss(method, torch.ones(2), lambda z: z.sum(-1), 0.1)


def test_surrogate_loss_temperature_rules():
    rate, loss = torch.ones(2), lambda z: z.sum(-1)
    with pytest.raises(ValueError, match="temperature"):
        surrogate_loss("eat-cubic", rate, loss)                        # missing
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            surrogate_loss("eat-cubic", rate, loss, bad)
    with pytest.raises(ValueError, match="temperature"):
        surrogate_loss("eat-cubic", rate, loss, torch.tensor([0.1, -0.1]))
    with pytest.raises(TypeError, match="temperature"):
        surrogate_loss("eat-cubic", rate, loss, "0.1")
    with pytest.raises(ValueError, match="temperature"):
        surrogate_loss("score", rate, loss, 0.1, n_samples=2)          # score has none
    with pytest.raises(ValueError, match="n_categories"):
        surrogate_loss("score", rate, loss, n_samples=2, n_categories=5)


def test_surrogate_loss_baseline_options():
    rate = torch.tensor([3.0, 1.0], requires_grad=True)
    loss = lambda z: ((z - 2.0) ** 2).sum(-1)  # noqa: E731

    def grad(**kwargs):
        torch.manual_seed(5)
        (g,) = torch.autograd.grad(surrogate_loss("score", rate, loss, **kwargs), rate)
        return g

    assert torch.equal(grad(n_samples=4), grad(n_samples=4, baseline=True))   # default with S >= 2
    assert not torch.equal(grad(n_samples=4), grad(n_samples=4, baseline=False))
    assert torch.equal(grad(n_samples=1), grad(n_samples=1, baseline=False))  # default with S = 1
    with pytest.raises(ValueError, match="2 samples"):
        grad(n_samples=1, baseline=True)
    with pytest.raises(TypeError, match="baseline"):
        grad(n_samples=4, baseline="no")
    with pytest.raises(ValueError, match="baseline"):
        surrogate_loss("eat-cubic", rate, loss, 0.1, n_samples=4, baseline=True)


def test_surrogate_loss_n_samples_and_rate_checks():
    rate, loss = torch.ones(2), lambda z: z.sum(-1)
    assert surrogate_loss("score", rate, loss, n_samples=np.int64(3)).shape == ()
    for bad in (2.5, True, "3"):
        with pytest.raises(TypeError, match="n_samples"):
            surrogate_loss("score", rate, loss, n_samples=bad)
    with pytest.raises(ValueError, match="n_samples"):
        surrogate_loss("score", rate, loss, n_samples=0)
    with pytest.raises(ValueError, match="n_samples=None"):
        surrogate_loss("score", torch.tensor(2.0), loss, n_samples=None)
    with pytest.raises(TypeError, match="rate"):
        surrogate_loss("score", [1.0, 2.0], loss, n_samples=2)
    with pytest.raises(TypeError, match="rate"):
        surrogate_loss("score", torch.tensor([1, 2]), loss, n_samples=2)
