"""The linear-decoder objective: closed-form gradient and Hessian against autograd, data helpers."""
import math

import pytest
import torch
from torch.autograd.functional import hessian as autograd_hessian

from hitchhiker.book.gradients.objectives import (
    expected_reconstruction_loss,
    linear_decoder_grad_hessian,
    linear_decoder_loss,
    overcomplete_dct_dictionary,
    reconstruction_loss,
    sample_linear_poisson_patches,
)

F64 = torch.float64


def random_problem(batch=3, m=5, k=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    phi = torch.randn(m, k, generator=gen, dtype=F64)
    x = torch.randn(batch, m, generator=gen, dtype=F64)
    log_rate = torch.randn(batch, k, generator=gen, dtype=F64)
    return log_rate, x, phi


def test_loss_equals_monte_carlo_expectation_over_poisson_counts():
    log_rate, x, phi = random_problem(batch=2, m=3, k=2)
    rate = log_rate.exp()
    z = torch.poisson(rate.expand(100_000, -1, -1))
    losses = reconstruction_loss(z, x, phi)
    mc, se = losses.mean(0), losses.std(0) / math.sqrt(z.shape[0])
    exact = linear_decoder_loss(log_rate, x, phi)
    assert ((mc - exact).abs() < 5 * se).all()


def test_loss_matches_definition():
    log_rate, x, phi = random_problem()
    rate = log_rate.exp()
    direct = ((x - rate @ phi.T) ** 2).sum(-1) + (rate * (phi**2).sum(0)).sum(-1)
    torch.testing.assert_close(linear_decoder_loss(log_rate, x, phi), direct)
    torch.testing.assert_close(expected_reconstruction_loss(rate, rate, x, phi), direct)


def test_gradient_and_hessian_match_autograd_batched():
    log_rate, x, phi = random_problem(batch=4, m=6, k=5)
    g_star, hess = linear_decoder_grad_hessian(log_rate, x, phi)
    assert g_star.shape == (4, 5) and hess.shape == (4, 5, 5)
    theta = log_rate.clone().requires_grad_(True)
    (auto_grad,) = torch.autograd.grad(linear_decoder_loss(theta, x, phi).sum(), theta)
    torch.testing.assert_close(g_star, auto_grad, rtol=1e-10, atol=1e-10)
    for b in range(4):
        auto_h = autograd_hessian(lambda t: linear_decoder_loss(t, x[b], phi), log_rate[b])
        torch.testing.assert_close(hess[b], auto_h, rtol=1e-10, atol=1e-10)


def test_full_batch_hessian_is_block_diagonal_with_our_blocks():
    log_rate, x, phi = random_problem(batch=2, m=3, k=3)
    _, hess = linear_decoder_grad_hessian(log_rate, x, phi)
    full = autograd_hessian(lambda t: linear_decoder_loss(t, x, phi).sum(), log_rate)  # (2,3,2,3)
    torch.testing.assert_close(full[0, :, 0, :], hess[0])
    torch.testing.assert_close(full[1, :, 1, :], hess[1])
    assert full[0, :, 1, :].abs().max() == 0


def test_unbatched_inputs_give_unbatched_outputs():
    log_rate, x, phi = random_problem(batch=1)
    g_star, hess = linear_decoder_grad_hessian(log_rate[0], x[0], phi)
    assert g_star.shape == (4,) and hess.shape == (4, 4)
    assert linear_decoder_loss(log_rate[0], x[0], phi).shape == ()
    g_batched, _ = linear_decoder_grad_hessian(log_rate, x, phi)
    torch.testing.assert_close(g_star, g_batched[0])


def test_bad_shapes_and_values_raise_value_error_naming_the_argument():
    log_rate, x, phi = random_problem()
    with pytest.raises(ValueError, match="phi"):
        linear_decoder_loss(log_rate, x, phi[0])
    with pytest.raises(ValueError, match="log_rate"):
        linear_decoder_loss(log_rate[:, :2], x, phi)
    with pytest.raises(ValueError, match="x must"):
        linear_decoder_grad_hessian(log_rate, x[:2], phi)
    with pytest.raises(ValueError, match="log_rate"):
        linear_decoder_loss(torch.full_like(log_rate, float("nan")), x, phi)
    with pytest.raises(ValueError, match="x"):
        linear_decoder_loss(log_rate, x.long(), phi)


def test_dct_dictionary_unit_atoms_zero_mean_and_full_rank():
    phi = overcomplete_dct_dictionary(6, 8)
    assert phi.shape == (36, 64)
    torch.testing.assert_close(phi.norm(dim=0), torch.ones(64, dtype=F64))
    means = phi.mean(0)
    assert means[0] > 0.1 and means[1:].abs().max() < 1e-12  # only the constant atom has a DC part
    assert torch.linalg.matrix_rank(phi) == 36  # spans every 6x6 patch
    with pytest.raises(ValueError, match="atoms_per_axis"):
        overcomplete_dct_dictionary(6, 5)
    with pytest.raises(ValueError, match="patch_size"):
        overcomplete_dct_dictionary(1, 5)


def test_synthetic_patches_come_from_the_model():
    phi = overcomplete_dct_dictionary(4, 5)
    gen = torch.Generator().manual_seed(3)
    x, z = sample_linear_poisson_patches(phi, 2.0, 5000, generator=gen)
    assert x.shape == (5000, 16) and z.shape == (5000, 25)
    torch.testing.assert_close(x, z @ phi.T)
    assert abs(z.mean().item() - 2.0) < 5 * math.sqrt(2.0 / z.numel())
    assert torch.equal(z, z.round()) and (z >= 0).all()
    with pytest.raises(ValueError, match="rate"):
        sample_linear_poisson_patches(phi, -1.0, 3)
    with pytest.raises(ValueError, match="n_items"):
        sample_linear_poisson_patches(phi, 1.0, 0)
