"""The method registry and the score-function (REINFORCE) surrogate."""
import math

import pytest
import torch

from hitchhiker import (GumbelSoftmaxPoisson, PATHWISE_METHODS, RelaxedPoisson, check_method,
                        pathwise_distribution, relaxed_sample, score_function_surrogate)


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
