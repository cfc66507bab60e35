"""The library's edges (issue 26): a rate of 0, rates too large to draw, float16 overflow, the public
log-pmf's checks, GSM's memory warning, and errors that name the argument instead of torch's own."""
import math
import warnings

import pytest
import torch

import hitchhiker._eat as eat
from hitchhiker import (
    GumbelSoftmaxPoisson,
    RelaxedPoisson,
    compare_estimators,
    moment_ratios,
    poisson_log_prob,
    relaxed_sample,
    surrogate_loss,
    wasserstein1,
)
from hitchhiker.distributions import GSM_MEMORY_WARNING

# ----------------------------------------------------------------------------- a rate of exactly 0


def test_the_score_of_zero_at_rate_zero_is_minus_one():
    """Before: xlogy's backward gave 0/0 = NaN at z = rate = 0."""
    rate = torch.tensor([0.0, 2.0], dtype=torch.float64, requires_grad=True)
    lp = poisson_log_prob(torch.zeros(2, dtype=torch.float64), rate)
    assert lp.tolist() == [0.0, -2.0]
    (grad,) = torch.autograd.grad(lp.sum(), rate)
    assert grad.tolist() == [-1.0, -1.0]
    # and z > 0 keeps the usual score z / rate - 1
    (grad,) = torch.autograd.grad(poisson_log_prob(torch.tensor([3.0], dtype=torch.float64), rate[1:]).sum(),
                                  rate)
    assert grad.tolist() == [0.0, 0.5]


@pytest.mark.parametrize("baseline", [True, False])
def test_score_function_gradients_at_rate_zero_are_finite_and_use_minus_one(baseline):
    rate = torch.tensor([0.0, 3.0], requires_grad=True)
    seen = {}

    def loss(z):
        seen["z"] = z
        return (z**2).sum(-1)

    torch.manual_seed(0)
    out = surrogate_loss("score", rate, loss, n_samples=64, baseline=baseline)
    (grad,) = torch.autograd.grad(out, rate)
    assert torch.isfinite(grad).all()
    z = seen["z"]
    assert (z[:, 0] == 0).all()
    losses = (z**2).sum(-1)
    weight = (losses - losses.mean()) * 64 / 63 if baseline else losses
    torch.testing.assert_close(grad[0], -weight.mean())        # (L - b) * score, score = -1


def test_a_rate_underflowed_from_exp_gives_finite_gradients_to_the_log_rate():
    log_rate = torch.tensor([-200.0, 1.0], requires_grad=True)
    out = surrogate_loss("score", log_rate.exp(), lambda z: z.sum(-1), n_samples=16)
    (grad,) = torch.autograd.grad(out, log_rate)
    assert torch.isfinite(grad).all() and grad[0] == 0


@pytest.mark.parametrize("method", ["eat-cubic", "eat-sigmoid", "st-cubic", "gsm"])
def test_pathwise_samplers_at_rate_zero_give_zero_and_a_zero_gradient(method):
    """Documented behaviour: no arrival can fall before the horizon, so sample and gradient are 0."""
    rate = torch.zeros(50, requires_grad=True)
    z = relaxed_sample(method, rate, 0.5, (20,))
    (grad,) = torch.autograd.grad(z.sum(), rate)
    assert torch.equal(z.detach(), torch.zeros(20, 50)) and torch.equal(grad, torch.zeros(50))


# ----------------------------------------------------------------------------- rates too large to draw

@pytest.mark.parametrize("rate", [9.3e18, 2.0**63, 1e19, 1e30])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rates_at_or_above_int64_are_refused_naming_rate(rate, dtype):
    """Before: torch.poisson's int64 overflowed to counts of -9.2e18 (or an internal error)."""
    big = torch.tensor([1.0, rate], dtype=dtype)
    for make in (lambda: RelaxedPoisson(big, 0.1), lambda: GumbelSoftmaxPoisson(big, 0.1, n_categories=5),
                 lambda: surrogate_loss("score", big, lambda z: z.sum(-1), n_samples=2)):
        with pytest.raises(ValueError, match="rate must be below 9.2e\\+18.*int64"):
            make()


def test_rates_just_below_the_limit_draw_right_counts():
    rate = torch.full((64,), 9.0e18, dtype=torch.float64)
    counts = RelaxedPoisson(rate, 0.1).sample()
    assert (counts > 0).all() and ((counts - rate).abs() < 10 * math.sqrt(9e18)).all()


def test_eat_refuses_a_window_too_large_to_simulate_instead_of_running_for_ever():
    """Before: rate 1e13 at tau 0.5 meant ~1e13 arrivals to simulate (hours to days); a rate times
    window above 2**63 overflowed torch.poisson. Both now stop at once with a ValueError."""
    with pytest.raises(ValueError, match="too large for EAT"):
        RelaxedPoisson(torch.tensor([1e13]), 0.5).rsample()
    with pytest.raises(ValueError, match="more than 2\\*\\*63"):
        RelaxedPoisson(torch.tensor([9e18], dtype=torch.float64), 100.0).rsample()


def test_the_window_limit_is_a_setting(monkeypatch):
    monkeypatch.setattr(eat, "MAX_WINDOW_ARRIVALS", 100)
    with pytest.raises(ValueError, match="too large for EAT"):
        RelaxedPoisson(torch.full((10,), 50.0), 0.5).rsample()
    RelaxedPoisson(torch.full((10,), 1.0), 0.5).rsample()


@pytest.mark.parametrize("cls", [RelaxedPoisson, GumbelSoftmaxPoisson])
def test_float16_rates_whose_samples_would_overflow_are_refused(cls):
    """Before: GSM gave NaN and EAT inf near float16's largest value (65504)."""
    with pytest.raises(ValueError, match="float16"):
        cls(torch.tensor([1.0, 64000.0], dtype=torch.float16), 0.1)
    rate = torch.tensor([3.0, 60000.0], dtype=torch.float16, requires_grad=True)
    z = cls(rate, 0.1).rsample((4,))
    (grad,) = torch.autograd.grad(z.float().sum(), rate)
    assert z.dtype == torch.float16 and torch.isfinite(z).all() and torch.isfinite(grad).all()
    assert (z[:, 1].float() - 60000).abs().max() < 2000


# ----------------------------------------------------------------------------- the public log-pmf

def test_poisson_log_prob_refuses_what_the_distributions_refuse():
    """Before: a negative rate gave NaN (+1 for z = 1 at rate -1 in the issue's probe) and a negative
    count a finite value or -inf, silently."""
    with pytest.raises(ValueError, match="rate must be finite and >= 0"):
        poisson_log_prob(torch.tensor([1.0]), torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="rate"):
        poisson_log_prob(torch.tensor([1.0]), torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="value must be finite and >= 0"):
        poisson_log_prob(torch.tensor([-0.5]), torch.tensor([2.0]))
    with pytest.raises(ValueError, match="value must be an integer"):
        poisson_log_prob(torch.tensor([0.5]), torch.tensor([2.0]), integer=True)
    with pytest.raises(TypeError, match="value"):
        poisson_log_prob("a", torch.tensor([2.0]))
    # relaxed counts are scored by default (the ELBO of a relaxed sample needs it), integers always
    assert torch.isfinite(poisson_log_prob(torch.tensor([0.5]), torch.tensor([2.0])))
    assert torch.isfinite(poisson_log_prob(torch.tensor([3]), torch.tensor([2.0]), integer=True))
    # validate_args=False: the old unchecked formula
    assert torch.isnan(poisson_log_prob(torch.tensor([1.0]), torch.tensor([-1.0]), validate_args=False))


# ----------------------------------------------------------------------------- GSM memory

def test_gsm_warns_before_allocating_more_than_the_set_amount():
    """One rate of 2e5 in a batch sets K ~ 2e5 for every element: 2000 draws of 2 elements would
    allocate 1.6 GB per tensor. The warning comes before the allocation (as an error here, the draw
    never starts)."""
    d = GumbelSoftmaxPoisson(torch.tensor([1.0, 2e5]), 0.1)
    assert d.n_categories > 200_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="GiB.*n_categories=20"):
            d.rsample((2000,))
        d.rsample((10,))                      # 16 MB per tensor: below GSM_MEMORY_WARNING, silent
    assert 10 * 2 * d.n_categories * 4 < GSM_MEMORY_WARNING < 2000 * 2 * d.n_categories * 4


# ----------------------------------------------------------------------------- errors naming the argument

@pytest.mark.parametrize("call", [
    lambda: RelaxedPoisson(torch.ones(2), 0.1).rsample(3),
    lambda: RelaxedPoisson(torch.ones(2), 0.1).sample(3),
    lambda: GumbelSoftmaxPoisson(torch.ones(2), 0.1).rsample(3),
    lambda: GumbelSoftmaxPoisson(torch.ones(2), 0.1).rsample_onehot(3),
    lambda: relaxed_sample("eat-cubic", torch.ones(2), 0.1, 3),
])
def test_an_int_sample_shape_is_refused_naming_it(call):
    """Before: TypeError: 'int' object is not iterable."""
    with pytest.raises(TypeError, match=r"sample_shape must be a torch.Size.* \(pass \(3,\)\)"):
        call()


def test_other_messages_name_the_argument():
    rate = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="batch_shape"):                 # before: torch's RuntimeError
        RelaxedPoisson(torch.ones(2), 0.1).expand((3,))
    with pytest.raises(TypeError, match="batch_shape"):                  # before: 'int' not iterable
        RelaxedPoisson(torch.ones(2), 0.1).expand(3)
    with pytest.raises(TypeError, match="methods must be a sequence"):   # before: 'int' not iterable
        compare_estimators(lambda z: z.sum(-1), rate, methods=5)
    with pytest.raises(TypeError, match="methods must be a sequence"):   # before: method='g' unknown
        compare_estimators(lambda z: z.sum(-1), rate, methods="gsm")
    with pytest.raises(TypeError, match="exact_gradient"):               # before: new(): invalid data type
        compare_estimators(lambda z: z.sum(-1), rate, exact_gradient=[1.0, "a"])
    with pytest.raises(ValueError, match="rate must be finite"):          # before: torch's RuntimeError
        surrogate_loss("score", torch.tensor([-1.0]), lambda z: z.sum(-1), n_samples=2)
    with pytest.raises(IndexError, match="dim=3 is out of range for x"):  # before: tuple index out of range
        wasserstein1(torch.ones(4), torch.ones(4), dim=3)
    with pytest.raises(IndexError, match="dim=5 is out of range for samples"):
        moment_ratios(torch.ones(3, 2), 1.0, dim=5)
    with pytest.raises(TypeError, match="samples"):                       # before: new(): invalid data type
        moment_ratios(["a", "b"], 1.0)
    with pytest.raises(TypeError, match="value"):
        RelaxedPoisson(torch.ones(2), 0.1).log_prob("a")
    with pytest.raises(ValueError, match="sample_shape must not hold negative sizes"):  # before: torch's
        RelaxedPoisson(torch.ones(2), 0.1).rsample((-1,))
    with pytest.raises(TypeError, match="seed"):                          # before: int() ValueError
        compare_estimators(lambda z: z.sum(-1), rate, seed="a")


def test_the_count_families_name_their_arguments_too():
    from hitchhiker.counts import ConwayMaxwellPoisson, gumbel_softmax_counts

    com = ConwayMaxwellPoisson(torch.tensor([3.0]), torch.tensor([0.5]))
    for call in (lambda: com.sample(3), lambda: gumbel_softmax_counts(com.logits(), 0.1, 3)):
        with pytest.raises(TypeError, match="sample_shape"):             # before: 'int' not iterable
            call()
    with pytest.raises(TypeError, match="batch_shape"):
        com.expand(3)
    with pytest.raises(TypeError, match="value"):                         # before: new(): invalid data type
        com.log_prob("a")
