"""Per-sample gradients of every estimator: shapes, unbiasedness where expected, the exact EAT bias."""
import math

import pytest
import torch

from hitchhiker.book.gradients.sweep import (
    GRADIENT_METHODS,
    expected_eat_gradient,
    gradient_quality_sweep,
    per_sample_gradients,
)
from hitchhiker.book.gradients.objectives import (
    linear_decoder_grad_hessian,
    overcomplete_dct_dictionary,
    reconstruction_loss,
    sample_linear_poisson_patches,
)

F64 = torch.float64


def small_problem(rate=3.0, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    phi = torch.randn(3, 2, generator=gen, dtype=F64)
    x = torch.randn(batch, 3, generator=gen, dtype=F64) * 2
    log_rate = torch.full((batch, 2), math.log(rate), dtype=F64)
    log_rate[:, 1] += 0.3
    return log_rate, x, phi


def assert_mean_matches(grads, target, n_se=5.0):
    mean = grads.mean(0)
    se = grads.std(0) / math.sqrt(grads.shape[0])
    z = (mean - target) / se
    assert z.abs().max() < n_se, f"mean {mean} vs {target}, z-scores {z}"


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_shapes_dtype_and_finiteness(method):
    log_rate, x, phi = small_problem()
    grads = per_sample_gradients(method, log_rate, x, phi, 0.1, n_samples=7)
    assert grads.shape == (7, 2, 2) and grads.dtype == F64
    assert torch.isfinite(grads).all()
    single = per_sample_gradients(method, log_rate[0], x[0], phi, 0.1, n_samples=3)
    assert single.shape == (3, 2)
    assert not log_rate.requires_grad  # the caller's tensor is untouched


def test_score_function_is_unbiased_for_the_exact_gradient():
    log_rate, x, phi = small_problem()
    g_star, _ = linear_decoder_grad_hessian(log_rate, x, phi)
    grads = per_sample_gradients("score", log_rate, x, phi, n_samples=40_000)
    assert_mean_matches(grads, g_star)


def test_score_per_sample_gradients_use_the_leave_one_out_baseline_across_samples():
    log_rate, x, phi = small_problem()
    n = 6
    torch.manual_seed(7)
    grads = per_sample_gradients("score", log_rate, x, phi, n_samples=n)
    torch.manual_seed(7)
    rate = log_rate.exp().expand(n, -1, -1)
    counts = torch.poisson(rate)  # the same draws (same generator state, same shape)
    losses = reconstruction_loss(counts, x, phi)
    weight = (losses - losses.mean(0)) * n / (n - 1)
    expected = weight.unsqueeze(-1) * (counts - rate)  # d/dtheta log Poisson(z; e^theta) = z - lambda
    torch.testing.assert_close(grads, expected)


@pytest.mark.parametrize("method", ["eat-cubic", "eat-sigmoid"])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_eat_per_sample_gradients_average_to_the_exact_expected_gradient(method, tau):
    log_rate, x, phi = small_problem()
    grads = per_sample_gradients(method, log_rate, x, phi, tau, n_samples=20_000)
    assert_mean_matches(grads, expected_eat_gradient(method, log_rate, x, phi, tau))


def test_expected_cubic_gradient_has_the_closed_form_bias():
    log_rate, x, phi = small_problem()
    tau = 0.4
    g_star, _ = linear_decoder_grad_hessian(log_rate, x, phi)
    expected = expected_eat_gradient("eat-cubic", log_rate, x, phi, tau)
    closed = g_star - (9 * tau / 35) * log_rate.exp() * (phi**2).sum(0)
    torch.testing.assert_close(expected, closed)
    # the sigmoid inflates the mean, so its bias is a different vector
    sigmoid = expected_eat_gradient("eat-sigmoid", log_rate, x, phi, tau)
    assert (sigmoid - closed).abs().max() > 1e-3


def test_bad_arguments_raise_value_error():
    log_rate, x, phi = small_problem()
    with pytest.raises(ValueError, match="method"):
        per_sample_gradients("exact", log_rate, x, phi, 0.1)
    with pytest.raises(ValueError, match="temperature"):
        per_sample_gradients("eat-cubic", log_rate, x, phi)
    with pytest.raises(ValueError, match="temperature"):
        per_sample_gradients("gsm", log_rate, x, phi, -0.1)
    with pytest.raises(ValueError, match="n_samples"):
        per_sample_gradients("score", log_rate, x, phi, n_samples=1)
    with pytest.raises(ValueError, match="x must"):
        per_sample_gradients("eat-cubic", log_rate, x[:1], phi, 0.1)
    with pytest.raises(ValueError, match="method"):
        expected_eat_gradient("gsm", log_rate, x, phi, 0.1)


def test_sweep_rows_have_the_csv_columns_and_sensible_values():
    phi = overcomplete_dct_dictionary(4, 5, dtype=torch.float32)
    rows = gradient_quality_sweep(phi, [20.0], [0.05, 0.5], n_samples=50, n_items=6, seed=1)
    assert len(rows) == 2 * len(GRADIENT_METHODS)
    for row in rows:
        for key in ("method", "rate", "temperature", "cos_mean", "cos_sample", "bias_energy",
                    "noise_energy", "cos_mean_sd", "bias_energy_sd", "noise_energy_sd", "rel_bias",
                    "rel_variance", "bias_energy_floor", "bias_chi2", "indefinite_fraction"):
            assert key in row
        assert -1 <= row["cos_mean"] <= 1 and row["noise_energy"] > 0
        assert row["indefinite_fraction"] == 0.0
    by_key = {(r["method"], r["temperature"]): r for r in rows}
    assert by_key[("eat-cubic", 0.05)]["bias_energy_exact"] < 1e-3
    assert math.isnan(by_key[("gsm", 0.05)]["bias_energy_exact"])
    # the sigmoid's mean inflation at tau = 0.5 is a real, much larger bias than at tau = 0.05
    assert (by_key[("eat-sigmoid", 0.5)]["bias_energy_exact"]
            > 100 * by_key[("eat-sigmoid", 0.05)]["bias_energy_exact"])
    # same seed, same numbers
    again = gradient_quality_sweep(phi, [20.0], [0.05, 0.5], n_samples=50, n_items=6, seed=1)
    assert again[0]["cos_mean"] == rows[0]["cos_mean"]
    with pytest.raises(ValueError, match="temperature"):
        gradient_quality_sweep(phi, [1.0], [0.0])


def test_synthetic_data_seeded_by_generator():
    phi = overcomplete_dct_dictionary(4, 5)
    a, _ = sample_linear_poisson_patches(phi, 3.0, 4, generator=torch.Generator().manual_seed(0))
    b, _ = sample_linear_poisson_patches(phi, 3.0, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize("method", ["score", "eat-cubic", "st-sigmoid", "gsm"])
def test_per_sample_gradients_are_the_formula_with_the_same_draws(method):
    """Through hitchhiker.surrogate_loss (n_samples=None), consuming the generator as the stored
    gradient sweep did: bit-identical to the explicit per-slice formula."""
    from hitchhiker import pathwise_distribution, score_function_surrogate

    phi = torch.randn(5, 7, dtype=F64)
    x = torch.randn(3, 5, dtype=F64)
    log_rate = torch.randn(3, 7, dtype=F64).clamp(-1, 1)
    kwargs = {"n_categories": 10} if method == "gsm" else {}
    torch.manual_seed(4)
    grads = per_sample_gradients(method, log_rate, x, phi, 0.3, 6, **kwargs)
    torch.manual_seed(4)
    theta = log_rate.unsqueeze(0).expand(6, 3, 7).clone().requires_grad_(True)
    rate = theta.exp()
    if method == "score":
        exact = torch.distributions.Poisson(rate, validate_args=False)
        counts = exact.sample()
        surrogate = score_function_surrogate(reconstruction_loss(counts, x, phi), exact.log_prob(counts).sum(-1))
    else:
        relaxed = pathwise_distribution(method, rate, 0.3, **kwargs).rsample()
        surrogate = reconstruction_loss(relaxed, x, phi).mean(0)
    (expected,) = torch.autograd.grad(surrogate.sum(), theta)
    assert torch.equal(grads, expected * 6)


# --- the natural-patch setup, the decoder, the fixed-cap sampler ----------------------------------

from hitchhiker.book.fidelity.sweep import fixed_cap_n_arrivals  # noqa: E402
from hitchhiker.book.gradients.sweep import (  # noqa: E402
    FIXED_CAP_METHODS,
    RANDOM_ATOMS,
    main_setup_decoder,
    random_unit_atoms,
)


def test_random_unit_atoms_are_seeded_unit_columns():
    phi = random_unit_atoms(16, 40, seed=3)
    assert phi.shape == (16, 40) and phi.dtype == F64
    torch.testing.assert_close(phi.norm(dim=0), torch.ones(40, dtype=F64))
    torch.testing.assert_close(phi, random_unit_atoms(16, 40, seed=3))
    assert not torch.equal(phi, random_unit_atoms(16, 40, seed=4))
    with pytest.raises(ValueError, match="n_latents"):
        random_unit_atoms(16, 0)


def test_main_setup_decoder_prefers_the_trained_decoder_and_refuses_a_bad_file(tmp_path):
    phi, name = main_setup_decoder(tmp_path / "missing.pt", n_pixels=6, n_latents=4)
    assert name == RANDOM_ATOMS and phi.shape == (6, 4)
    weight = torch.randn(4, 6)
    path = tmp_path / "pvae_decoders.pt"
    torch.save({"exact-long-seed0": weight, "other": torch.zeros(4, 6)}, path)
    phi, name = main_setup_decoder(path, n_pixels=6, n_latents=4)
    assert name == "pvae-exact-long-seed0"
    torch.testing.assert_close(phi, weight.T.double())
    atoms, name = main_setup_decoder(path, n_pixels=6, n_latents=4, use_trained=False)
    assert name == RANDOM_ATOMS
    torch.testing.assert_close(atoms, random_unit_atoms(6, 4))
    with pytest.raises(ValueError, match="no decoder labelled 'missing'"):
        main_setup_decoder(path, label="missing", n_pixels=6, n_latents=4)
    with pytest.raises(ValueError, match="shape"):
        main_setup_decoder(path, n_pixels=5, n_latents=4)


def test_fixed_cap_gradients_with_a_generous_cap_match_the_campbell_expectation():
    """With a cap far above the window the fixed-cap sampler is the untruncated EAT, so its gradients
    average to the closed-form expected gradient; with the official cap at large lambda*tau they do not."""
    from hitchhiker.book.gradients import sweep as module

    log_rate, x, phi = small_problem(rate=3.0)
    expected = expected_eat_gradient("eat-sigmoid", log_rate, x, phi, 0.5)
    torch.manual_seed(0)
    grads = per_sample_gradients("fixed-cap-eat-sigmoid", log_rate, x, phi, 0.5, n_samples=20_000)
    assert grads.shape == (20_000,) + log_rate.shape
    # the official cap at rate 3 * e^0.3 holds ~10 arrivals; the sigmoid's window reaches far beyond
    # t = 1 + tau, so the mean of the capped gradient differs from the untruncated one
    mean, se = grads.mean(0), grads.std(0) / math.sqrt(grads.shape[0])
    assert ((mean - expected).abs() / se).max() > 6
    original = module.fixed_cap_eat

    def generous(rate, temperature, sample_shape=(), indicator="cubic", rate_max=None, tail=1e-3):
        return original(rate, temperature, sample_shape, indicator, rate_max=40 * rate_max, tail=tail)

    module.fixed_cap_eat = generous
    try:
        torch.manual_seed(1)
        wide = per_sample_gradients("fixed-cap-eat-sigmoid", log_rate, x, phi, 0.5, n_samples=20_000)
    finally:
        module.fixed_cap_eat = original
    assert_mean_matches(wide, expected)
    assert fixed_cap_n_arrivals(float(log_rate.max().exp())) < 15


def test_fixed_cap_gradients_are_sliced_without_changing_the_law(monkeypatch):
    from hitchhiker.book.gradients import sweep as module

    log_rate, x, phi = small_problem(rate=5.0)
    monkeypatch.setattr(module, "_MAX_FIXED_CAP_ELEMENTS", 64)  # forces slices of one or two samples
    torch.manual_seed(2)
    grads = per_sample_gradients("fixed-cap-eat-cubic", log_rate, x, phi, 0.1, n_samples=4_000)
    assert grads.shape == (4_000,) + log_rate.shape
    # at tau = 0.1 the cubic window ends at t = 1.1, within the cap: unbiased for the Campbell gradient
    assert_mean_matches(grads, expected_eat_gradient("eat-cubic", log_rate, x, phi, 0.1))


def test_natural_patch_sweep_uses_the_given_items_and_labels_the_rows():
    phi = random_unit_atoms(9, 12, seed=0)
    data = torch.randn(10, 9, generator=torch.Generator().manual_seed(0))
    methods = ["eat-cubic", "eat-sigmoid", "gsm"] + list(FIXED_CAP_METHODS)
    rows = gradient_quality_sweep(phi.float(), [2.0, 20.0], [0.5], methods, n_samples=30, n_items=4,
                                  seed=0, data=data, decoder="test-atoms")
    assert len(rows) == 2 * len(methods)
    assert {r["setup"] for r in rows} == {"natural-patches"} and {r["decoder"] for r in rows} == {"test-atoms"}
    by_key = {(r["method"], r["rate"]): r for r in rows}
    for rate in (2.0, 20.0):
        # the exact CosMean is the cosine of the closed-form expected gradient with g*, item by item
        x = data[:4].double()
        theta = torch.full((4, 12), math.log(rate), dtype=F64)
        phi32 = phi.float().double()  # the sweep's exact quantities use the float32 decoder it was given
        g_star, _ = linear_decoder_grad_hessian(theta, x, phi32)
        expected = expected_eat_gradient("eat-sigmoid", theta, x, phi32, 0.5)
        cos = torch.nn.functional.cosine_similarity(expected, g_star, dim=-1).mean().item()
        assert by_key[("eat-sigmoid", rate)]["cos_mean_exact"] == pytest.approx(cos, rel=1e-12)
        assert math.isnan(by_key[("fixed-cap-eat-cubic", rate)]["cos_mean_exact"])
        assert math.isnan(by_key[("gsm", rate)]["bias_energy_exact"])
    model = gradient_quality_sweep(phi.float(), [2.0], [0.5], ["eat-cubic"], n_samples=10, n_items=3)
    assert model[0]["setup"] == "model-generated" and model[0]["decoder"] == "custom"
    with pytest.raises(ValueError, match="data"):
        gradient_quality_sweep(phi, [2.0], [0.5], ["eat-cubic"], n_items=3, data=torch.zeros(3, 8))
    with pytest.raises(ValueError, match="n_items"):
        gradient_quality_sweep(phi, [2.0], [0.5], ["eat-cubic"], n_items=11, data=data)
    with pytest.raises(ValueError, match="rates"):
        gradient_quality_sweep(phi, [0.0], [0.5], ["eat-cubic"], n_items=3)


def test_expected_quality_is_the_large_sample_limit_of_the_measured_one():
    """Independent check: the exact expected-gradient metrics against a Monte Carlo with many samples."""
    from hitchhiker.book.gradients.sweep import expected_eat_quality
    from hitchhiker.metrics import gradient_quality

    log_rate, x, phi = small_problem(rate=4.0)
    g_star, hessian = linear_decoder_grad_hessian(log_rate, x, phi)
    exact = expected_eat_quality("eat-sigmoid", log_rate, x, phi, 0.5)
    assert exact == expected_eat_quality("eat-sigmoid", log_rate, x, phi, 0.5, g_star, hessian)
    torch.manual_seed(5)
    grads = per_sample_gradients("eat-sigmoid", log_rate, x, phi, 0.5, n_samples=40_000)
    measured = gradient_quality(grads, g_star, hessian)
    assert measured["CosMean"] == pytest.approx(exact["cos_mean"], abs=2e-3)
    # measured BiasEnergy = true bias energy + noise floor (to Monte Carlo error)
    assert measured["BiasEnergy"] - measured["BiasEnergyFloor"] == pytest.approx(exact["bias_energy"], rel=0.1)
    cubic = expected_eat_quality("eat-cubic", log_rate, x, phi, 0.5)
    bias = -(9 * 0.5 / 35) * log_rate.exp() * (phi**2).sum(0)   # closed-form cubic bias
    assert cubic["rel_bias"] == pytest.approx(float((bias.norm(dim=-1) / g_star.norm(dim=-1)).mean()))
