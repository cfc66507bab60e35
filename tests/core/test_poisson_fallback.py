"""Exact draws where ``torch.poisson`` is unavailable (issue 24: Apple's MPS has no kernel for it).

There is no MPS device here, so the test makes ``torch.poisson`` raise ``NotImplementedError`` the
way PyTorch does for an operator a backend lacks. Every call site of the library (the EAT kernel's
two counts, ``sample()`` of both distributions, the score function) must then fall back to the CPU
kernel (``hitchhiker._eat._cpu_poisson``, the function ``torch.poisson`` was at import), draw the
same counts it would have drawn, and warn exactly once. A call site that called ``torch.poisson``
directly would raise here.
"""
import warnings

import pytest
import torch

import hitchhiker._eat as eat
from hitchhiker import GumbelSoftmaxPoisson, RelaxedPoisson, surrogate_loss

RATE = torch.tensor([[0.5, 3.0], [12.0, 40.0]])


@pytest.fixture
def no_poisson_kernel(monkeypatch):
    calls = []

    def unavailable(rate, *args, **kwargs):
        calls.append(rate.shape)
        raise NotImplementedError("The operator 'aten::poisson' is not currently implemented for the MPS "
                                  "device. If you want this op to be considered for addition please ...")

    monkeypatch.setattr(torch, "poisson", unavailable)
    monkeypatch.setattr(eat, "_warned", set())
    return calls


def _draws():
    """One of each call site, from one seed."""
    torch.manual_seed(5)
    return {
        "eat": RelaxedPoisson(RATE, 0.3).rsample((3,)),
        "st": RelaxedPoisson(RATE, 0.3, hard=True).rsample((3,)),
        "sample": RelaxedPoisson(RATE, 0.3).sample((3,)),
        "gsm sample": GumbelSoftmaxPoisson(RATE, 0.3).sample((3,)),
        "score": surrogate_loss("score", RATE.requires_grad_(), lambda z: z.sum((-2, -1)), n_samples=4),
    }


def test_every_call_site_falls_back_to_the_cpu_with_the_same_draws_and_one_warning(no_poisson_kernel):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fallback = _draws()
    messages = [str(w.message) for w in caught if "torch.poisson is not available" in str(w.message)]
    assert len(messages) == 1 and "cpu" in messages[0] and "MPS" in messages[0]
    # every site tried torch.poisson first: the EAT kernel twice per rsample, once per sample/score
    assert len(no_poisson_kernel) == 2 + 2 + 1 + 1 + 1
    torch.poisson = eat._cpu_poisson  # the real kernel again (monkeypatch restores it afterwards too)
    reference = _draws()
    for name, value in fallback.items():
        assert torch.equal(value, reference[name]), name


def test_the_fallback_keeps_gradients_and_dtype(no_poisson_kernel):
    rate = torch.tensor([2.0, 30.0], dtype=torch.float64, requires_grad=True)
    with pytest.warns(UserWarning, match="draws the Poisson counts on the CPU"):
        z = RelaxedPoisson(rate, 0.1).rsample((2000,))
    (grad,) = torch.autograd.grad(z.mean(0).sum(), rate)
    assert z.dtype == torch.float64 and torch.allclose(z.mean(0), rate.detach(), rtol=0.05)
    assert torch.allclose(grad, torch.ones(2, dtype=torch.float64), atol=0.1)
