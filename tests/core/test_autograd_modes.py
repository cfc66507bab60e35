"""Every autograd mode a user reaches for, on both relaxations: correct, or refused with a clear error.

RelaxedPoisson attaches precomputed first-order pathwise derivatives, so first order must be exact in
every mode (reverse, create_graph, torch.func.grad/jacrev, forward mode, vmap, compile) and every second
order path must raise (the derivative depends on the rate; a Hessian ignoring that was 2.46 where the
truth is 4.12). GumbelSoftmaxPoisson is plain autograd through a softmax: its higher derivatives are
autograd's own.
"""
import math

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from hitchhiker import GumbelSoftmaxPoisson, RelaxedPoisson
from hitchhiker.moments import relaxed_mean

F64 = torch.float64
SECOND_ORDER = "second derivatives"


def rp(indicator="cubic", tau=0.3):
    return lambda rate: RelaxedPoisson(rate, tau, indicator).rsample()


def reverse_grad(rate, tau=0.3, indicator="cubic", seed=0, tau_grad=False):
    """(sample, d/d rate, d/d tau) by plain reverse mode for a given seed (elementwise sampler)."""
    lam = rate.detach().clone().requires_grad_(True)
    t = torch.as_tensor(tau, dtype=rate.dtype).expand_as(rate).clone().requires_grad_(tau_grad)
    torch.manual_seed(seed)
    z = RelaxedPoisson(lam, t, indicator).rsample()
    grads = torch.autograd.grad(z.sum(), [lam, t] if tau_grad else [lam])
    return z.detach(), grads[0], grads[1] if tau_grad else None


# ----------------------------------------------------------------------------- reverse mode

def test_create_graph_first_order_is_unchanged_and_usable():
    rate = torch.full((50,), 7.0, dtype=F64)
    z_ref, g_ref, _ = reverse_grad(rate)
    lam = rate.clone().requires_grad_(True)
    torch.manual_seed(0)
    z = RelaxedPoisson(lam, 0.3).rsample()
    (g,) = torch.autograd.grad(z.sum(), lam, create_graph=True)
    torch.testing.assert_close(g.detach(), g_ref)
    (g * 2).sum().detach()  # using the gradient without differentiating it is fine


@pytest.mark.parametrize("indicator", ["cubic", "sigmoid", "linear"])
def test_nested_gradient_is_refused_not_wrong(indicator):
    """Before: L = mean(z w), rate = exp(w) gave d2L/dw2 = 2.46 where the truth is (w + 2) e^w = 4.12."""
    w = torch.full((1000,), 0.5, dtype=F64, requires_grad=True)
    z = RelaxedPoisson(w.exp(), 0.3, indicator).rsample()
    (g,) = torch.autograd.grad((z * w).mean(), w, create_graph=True)
    with pytest.raises(RuntimeError, match=SECOND_ORDER):
        torch.autograd.grad(g.sum(), w)


def test_double_backward_through_a_constant_weight_is_refused():
    rate = torch.full((4,), 20.0, requires_grad=True)
    z = RelaxedPoisson(rate, 0.1).rsample()
    (g,) = torch.autograd.grad(z.sum(), rate, create_graph=True)
    with pytest.raises(RuntimeError, match=SECOND_ORDER):
        g.sum().backward()


def test_mixed_partial_that_needs_no_second_derivative_of_the_sample_works():
    """d/dv of dL/drate for L = sum(v z): exactly dz/drate, no second derivative of z involved."""
    rate = torch.full((5,), 4.0, dtype=F64, requires_grad=True)
    v = torch.ones(5, dtype=F64, requires_grad=True)
    torch.manual_seed(3)
    z = RelaxedPoisson(rate, 0.3).rsample()
    (g,) = torch.autograd.grad((v * z).sum(), rate, create_graph=True)
    (dv,) = torch.autograd.grad(g.sum(), v)
    _, g_ref, _ = reverse_grad(rate, seed=3)
    torch.testing.assert_close(dv, g_ref)


def test_functional_hessian_is_refused():
    """Before: torch.autograd.functional.hessian returned zeros."""
    f = lambda r: RelaxedPoisson(r, 0.3).rsample().sum()  # noqa: E731
    with pytest.raises(RuntimeError, match=SECOND_ORDER):
        torch.autograd.functional.hessian(f, torch.full((3,), 5.0))
    g = lambda w: (RelaxedPoisson(w.exp(), 0.3).rsample() * w).mean()  # noqa: E731
    with pytest.raises(RuntimeError, match=SECOND_ORDER):
        torch.autograd.functional.hessian(g, torch.full((3,), 0.5))


def test_func_hessian_is_refused():
    """torch.func.hessian = jacfwd(jacrev) vmaps the forward with randomness='error': vmap itself
    refuses the random draw (as for any torch distribution), before the second-order refusal."""
    with pytest.raises(RuntimeError, match="second derivatives|randomness"):
        torch.func.hessian(lambda r: rp()(r).sum())(torch.full((3,), 5.0))


@pytest.mark.parametrize("transform", ["jacfwd_jacrev", "jvp_jvp", "grad_jvp", "jacrev_jacrev"])
def test_func_second_order_is_refused(transform):
    f = rp()
    x, v = torch.full((3,), 5.0), torch.ones(3)
    calls = {
        "jacfwd_jacrev": lambda: torch.func.jacfwd(torch.func.jacrev(lambda r: f(r).sum()),
                                                   randomness="different")(x),
        "jacrev_jacrev": lambda: torch.func.jacrev(torch.func.jacrev(lambda r: f(r).sum()))(x),
        "jvp_jvp": lambda: torch.func.jvp(lambda r: torch.func.jvp(f, (r,), (v,))[1], (x,), (v,)),
        "grad_jvp": lambda: torch.func.grad(lambda r: torch.func.jvp(f, (r,), (v,))[1].sum())(x),
    }
    with pytest.raises(RuntimeError, match=SECOND_ORDER):
        calls[transform]()


# ----------------------------------------------------------------------------- torch.func first order

def test_func_grad_and_jacrev_equal_reverse_mode():
    rate = torch.tensor([0.5, 3.0, 40.0], dtype=F64)
    _, g_ref, _ = reverse_grad(rate)
    torch.manual_seed(0)
    g = torch.func.grad(lambda r: rp()(r).sum())(rate)
    torch.testing.assert_close(g, g_ref)
    torch.manual_seed(0)
    jac = torch.func.jacrev(rp())(rate)
    torch.testing.assert_close(jac, torch.diag(g_ref))


# ----------------------------------------------------------------------------- forward mode

def test_jvp_and_forward_ad_give_the_reverse_mode_tangent_of_the_same_sample():
    """Before: the tangent was 0 (torch.func.jvp) or None (forward_ad)."""
    rate = torch.tensor([0.5, 3.0, 40.0, 200.0], dtype=F64)
    tau = torch.full_like(rate, 0.3)
    v, u = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64), torch.tensor([0.3, 1.0, -1.0, 2.0], dtype=F64)
    z_ref, g_rate, g_tau = reverse_grad(rate, tau, "sigmoid", seed=5, tau_grad=True)
    f = lambda r, t: RelaxedPoisson(r, t, "sigmoid").rsample()  # noqa: E731
    torch.manual_seed(5)
    z, tangent = torch.func.jvp(f, (rate, tau), (v, u))
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(tangent, g_rate * v + g_tau * u)
    torch.manual_seed(5)
    z, tangent = torch.func.jvp(lambda r: f(r, tau), (rate,), (v,))
    torch.testing.assert_close(tangent, g_rate * v)
    torch.manual_seed(5)
    with fwAD.dual_level():
        out = f(fwAD.make_dual(rate, v), fwAD.make_dual(tau, u))
        primal, tangent = fwAD.unpack_dual(out)
    torch.testing.assert_close(primal, z_ref)
    torch.testing.assert_close(tangent, g_rate * v + g_tau * u)
    jac = torch.func.jacfwd(lambda r: f(r, tau), randomness="different")(rate)
    assert jac.shape == (4, 4) and torch.equal(jac, torch.diag(torch.diagonal(jac)))


@pytest.mark.parametrize("indicator,lam,tau,wrt", [("cubic", 3.0, 0.3, "rate"),
                                                   ("sigmoid", 2.0, 0.5, "rate"),
                                                   ("sigmoid", 2.0, 0.5, "temperature")])
def test_forward_tangent_is_unbiased_for_the_campbell_mean(indicator, lam, tau, wrt):
    """E[dz/d theta] equals the central finite difference of the closed-form E[z] (Campbell)."""
    n, h = 40_000, 1e-4
    rate, temperature = torch.full((n,), lam, dtype=F64), torch.full((n,), tau, dtype=F64)
    ones, zeros = torch.ones(n, dtype=F64), torch.zeros(n, dtype=F64)
    tangents = (ones, zeros) if wrt == "rate" else (zeros, ones)
    _, tangent = torch.func.jvp(lambda r, t: RelaxedPoisson(r, t, indicator).rsample(),
                                (rate, temperature), tangents)
    if wrt == "rate":
        fd = (relaxed_mean(lam + h, tau, indicator) - relaxed_mean(lam - h, tau, indicator)) / (2 * h)
    else:
        fd = (relaxed_mean(lam, tau + h, indicator) - relaxed_mean(lam, tau - h, indicator)) / (2 * h)
    se = float(tangent.std()) / math.sqrt(n)
    assert abs(float(tangent.mean()) - float(fd)) < 4.5 * se + 1e-6


# ----------------------------------------------------------------------------- vmap

def test_vmap_different_draws_independent_batches_with_the_right_law():
    rates = torch.tensor([[2.0, 30.0]], dtype=F64).expand(4000, 2)
    z = torch.func.vmap(rp(), randomness="different")(rates)
    assert z.shape == (4000, 2)
    se = z.std(0) / math.sqrt(4000)
    assert torch.all((z.mean(0) - rates[0]).abs() < 4.5 * se)
    # An unbatched rate inside vmap still gets one independent draw per batch element.
    z = torch.func.vmap(lambda x: RelaxedPoisson(torch.full((3,), 5.0), 0.3).rsample() + 0 * x,
                        randomness="different")(torch.zeros(6, 3))
    assert len({tuple(row.tolist()) for row in z}) == 6


def test_vmap_randomness_modes_are_refused_or_honoured_clearly():
    rates = torch.full((3, 2), 5.0)
    with pytest.raises(RuntimeError, match="randomness"):
        torch.func.vmap(rp())(rates)  # default randomness='error'
    with pytest.raises(RuntimeError, match="randomness='different'"):
        torch.func.vmap(rp(), randomness="same")(rates)
    same = torch.func.vmap(lambda x: RelaxedPoisson(torch.full((2,), 5.0), 0.3).rsample() + 0 * x,
                           randomness="same")(rates)
    assert torch.equal(same[0], same[1]) and torch.equal(same[1], same[2])


def test_vmap_composes_with_grad_and_checks_arguments():
    rates = torch.full((3, 2), 5.0)
    g = torch.func.vmap(torch.func.grad(lambda r: rp()(r).sum()), randomness="different")(rates)
    assert g.shape == (3, 2) and torch.isfinite(g).all()
    g = torch.func.grad(lambda x: torch.func.vmap(rp(), randomness="different")(x).sum())(rates)
    assert g.shape == (3, 2) and torch.isfinite(g).all()
    with pytest.raises(ValueError, match="rate"):
        torch.func.vmap(rp(), randomness="different")(-rates)


@pytest.mark.skipif(tuple(int(p) for p in torch.__version__.split(".")[:2]) < (2, 7),
                    reason="before torch 2.7, torch.distributions' argument validation fails under vmap")
def test_torch_relaxed_bernoulli_works_under_vmap_as_the_reference_behaviour():
    f = lambda p: torch.distributions.RelaxedBernoulli(0.3, probs=p).rsample()  # noqa: E731
    assert torch.func.vmap(f, randomness="different")(torch.full((3, 2), 0.5)).shape == (3, 2)


def test_gsm_under_vmap_needs_explicit_choices_and_says_so():
    rates = torch.full((3, 2), 5.0)
    with pytest.raises(RuntimeError, match="validate_args=False"):
        torch.func.vmap(lambda r: GumbelSoftmaxPoisson(r, 0.3, n_categories=30).rsample(),
                        randomness="different")(rates)
    with pytest.raises(ValueError, match="n_categories"):
        torch.func.vmap(lambda r: GumbelSoftmaxPoisson(r, 0.3, validate_args=False).rsample(),
                        randomness="different")(rates)
    z = torch.func.vmap(lambda r: GumbelSoftmaxPoisson(r, 0.3, n_categories=30,
                                                       validate_args=False).rsample(),
                        randomness="different")(rates)
    assert z.shape == (3, 2)


# ----------------------------------------------------------------------------- GSM: plain autograd

def test_gsm_higher_derivatives_are_autograds_own_and_consistent():
    rate = torch.tensor([2.0, 6.0], dtype=F64)
    f = lambda r: (GumbelSoftmaxPoisson(r, 0.5, n_categories=30).rsample() ** 2).sum()  # noqa: E731
    torch.manual_seed(2)
    h_rev = torch.autograd.functional.hessian(f, rate)
    torch.manual_seed(2)
    h_fwd = torch.func.jacfwd(torch.func.jacrev(f), randomness="same")(rate)
    torch.testing.assert_close(h_rev, h_fwd)
    torch.manual_seed(2)
    lam = rate.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(lam), lam)
    torch.manual_seed(2)
    _, tangent = torch.func.jvp(f, (rate,), (torch.tensor([1.0, 0.0], dtype=F64),))
    torch.testing.assert_close(tangent, g[0])


# ----------------------------------------------------------------------------- torch.compile

def _step(rate, weight):
    z = RelaxedPoisson(rate, 0.1).rsample()
    loss = ((z - weight) ** 2).mean()
    loss.backward()
    return loss.detach()


@pytest.fixture
def keep_default_validation():
    """torch.compile's first use turns torch.distributions' default validation off process-wide
    (torch._dynamo.eval_frame); put it back so later tests see the usual default."""
    from torch.distributions import Distribution

    before = Distribution._validate_args
    yield
    Distribution.set_default_validate_args(before)


@pytest.mark.slow
def test_compile_keeps_the_sampler_in_one_graph_with_eager_values(keep_default_validation):
    """Before: 9 graph breaks inside the sampler (11 with GSM's); now only backward() splits."""
    import torch._dynamo

    rate = torch.full((200,), 10.0, requires_grad=True)
    weight = torch.full((200,), 10.0)
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(_step)(rate, weight)
    assert explanation.graph_break_count <= 1
    compiled = torch.compile(_step)
    rate.grad = None
    torch.manual_seed(0)
    loss_c = compiled(rate, weight)
    grad_c = rate.grad.clone()
    rate.grad = None
    torch.manual_seed(0)
    loss_e = _step(rate, weight)
    torch.testing.assert_close(loss_c, loss_e)
    torch.testing.assert_close(grad_c, rate.grad)
    checked = torch.compile(lambda r: RelaxedPoisson(r, 0.1, validate_args=True).rsample())
    with pytest.raises(ValueError, match="rate"):
        checked(torch.tensor([-1.0, 2.0]))
    torch._dynamo.reset()
