"""Per-sample gradients of every estimator: shapes, unbiasedness where expected, the exact EAT bias."""
import math

import pytest
import torch

from hitchhiker.book.gradients.objectives import (
    linear_decoder_grad_hessian,
    overcomplete_dct_dictionary,
    reconstruction_loss,
    sample_linear_poisson_patches,
)
from hitchhiker.book.gradients.sweep import (
    GRADIENT_METHODS,
    expected_eat_gradient,
    gradient_quality_sweep,
    per_sample_gradients,
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
                    "noise_energy", "cos_mean_sd", "bias_energy_sd", "noise_energy_sd", "bias_ratio",
                    "rel_variance", "bias_energy_floor", "bias_chi2", "negative_eigenvalue_fraction",
                    "nonpositive_signal_fraction", "cross_term", "cross_term_sd", "cross_term_exact",
                    "effective_temperature"):
            assert key in row
        assert "indefinite_fraction" not in row
        assert -1 <= row["cos_mean"] <= 1 and row["noise_energy"] > 0 and row["bias_energy"] >= 0
        assert row["weighting"] == "abs-hessian"
        assert 0 <= row["negative_eigenvalue_fraction"] < 1
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
        log_prob = exact.log_prob(counts).sum(-1)
        surrogate = score_function_surrogate(reconstruction_loss(counts, x, phi), log_prob)
    else:
        relaxed = pathwise_distribution(method, rate, 0.3, **kwargs).rsample()
        surrogate = reconstruction_loss(relaxed, x, phi).mean(0)
    (expected,) = torch.autograd.grad(surrogate.sum(), theta)
    assert torch.equal(grads, expected * 6)


# --- the natural-patch setup, the decoder, the fixed-cap sampler ----------------------------------

from hitchhiker.book.fidelity.official import fixed_cap_n_arrivals  # noqa: E402
from hitchhiker.book.gradients.decoders import (  # noqa: E402
    RANDOM_ATOMS,
    main_setup_decoder,
    random_unit_atoms,
)
from hitchhiker.book.gradients.sweep import FIXED_CAP_METHODS  # noqa: E402


def test_random_unit_atoms_are_seeded_unit_columns():
    phi = random_unit_atoms(16, 40, seed=3)
    assert phi.shape == (16, 40) and phi.dtype == F64
    torch.testing.assert_close(phi.norm(dim=0), torch.ones(40, dtype=F64))
    torch.testing.assert_close(phi, random_unit_atoms(16, 40, seed=3))
    assert not torch.equal(phi, random_unit_atoms(16, 40, seed=4))
    with pytest.raises(ValueError, match="n_latents"):
        random_unit_atoms(16, 0)


def test_main_setup_decoder_reads_the_trained_decoder_and_refuses_a_missing_or_bad_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        main_setup_decoder(tmp_path / "missing.pt", n_pixels=6, n_latents=4)
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
    assert {r["setup"] for r in rows} == {"natural-patches"}
    assert {r["decoder"] for r in rows} == {"test-atoms"}
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
    from hitchhiker.book.gradients.curvature import absolute_hessian

    g_star, hessian = linear_decoder_grad_hessian(log_rate, x, phi)
    weight = absolute_hessian(hessian)                 # the default weighting
    exact = expected_eat_quality("eat-sigmoid", log_rate, x, phi, 0.5)
    given = expected_eat_quality("eat-sigmoid", log_rate, x, phi, 0.5, g_star, weight)
    assert exact == pytest.approx(given, rel=1e-12)
    torch.manual_seed(5)
    grads = per_sample_gradients("eat-sigmoid", log_rate, x, phi, 0.5, n_samples=40_000)
    measured = gradient_quality(grads, g_star, weight)
    assert measured["CosMean"] == pytest.approx(exact["cos_mean"], abs=2e-3)
    # measured BiasEnergy = true bias energy + noise floor (to Monte Carlo error)
    beyond_floor = measured["BiasEnergy"] - measured["BiasEnergyFloor"]
    assert beyond_floor == pytest.approx(exact["bias_energy"], rel=0.1)
    cubic = expected_eat_quality("eat-cubic", log_rate, x, phi, 0.5)
    bias = -(9 * 0.5 / 35) * log_rate.exp() * (phi**2).sum(0)   # closed-form cubic bias
    assert cubic["bias_ratio"] == pytest.approx(float((bias.norm(dim=-1) / g_star.norm(dim=-1)).mean()))


def test_decoder_path_is_found_from_the_package_not_the_working_directory(tmp_path, monkeypatch):
    from hitchhiker.book.gradients.decoders import MAIN_DECODER, decoder_path

    monkeypatch.delenv("HITCHHIKER_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)                      # no results/ here
    path = decoder_path()
    assert path.is_absolute() and path.parts[-3:] == ("book", "results", "pvae_decoders.pt")
    if path.is_file():                               # a checkout with the stored decoders
        phi, name = main_setup_decoder()
        assert name == MAIN_DECODER and phi.shape == (256, 512)
    monkeypatch.setenv("HITCHHIKER_RESULTS", str(tmp_path))
    assert decoder_path() == tmp_path / "pvae_decoders.pt"
    with pytest.raises(FileNotFoundError):
        main_setup_decoder()
    assert decoder_path(tmp_path / "x.pt") == tmp_path / "x.pt"


# --- indefinite curvature, the cross term, the rate-adaptive remedy --------------------------------

from hitchhiker.book.gradients.curvature import (  # noqa: E402
    absolute_hessian,
    first_order_cross_term,
    gauss_newton_hessian,
    negative_eigenvalue_fraction,
)
from hitchhiker.book.gradients.remedy import rate_adaptive_temperature, window_arrivals  # noqa: E402
from hitchhiker.book.gradients.sweep import ADAPTIVE_METHODS, exact_quality_cases  # noqa: E402


def test_absolute_hessian_is_psd_and_equal_to_a_psd_hessian():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(3, 5, 5, generator=gen, dtype=F64)
    sym = a + a.transpose(-1, -2)                    # indefinite
    absolute = absolute_hessian(sym)
    assert (torch.linalg.eigvalsh(absolute) > -1e-10).all()
    assert (torch.linalg.eigvalsh(sym) < 0).any()
    torch.testing.assert_close(torch.linalg.eigvalsh(absolute).sort(-1).values,
                               torch.linalg.eigvalsh(sym).abs().sort(-1).values)
    psd = a @ a.transpose(-1, -2)
    torch.testing.assert_close(absolute_hessian(psd), psd)
    with pytest.raises(ValueError, match="shape"):
        absolute_hessian(torch.ones(2, 3, dtype=F64))


def test_negative_eigenvalue_fraction_counts_eigenvalues_not_the_signal_sign():
    h = torch.diag(torch.tensor([3.0, -1.0, 2.0, -0.5], dtype=F64))
    assert float(negative_eigenvalue_fraction(h)) == 0.5
    g = torch.tensor([1.0, 0.1, 1.0, 0.1], dtype=F64)
    assert float(g @ h @ g) > 0                      # positive signal energy, yet half negative
    assert float(negative_eigenvalue_fraction(torch.eye(3, dtype=F64))) == 0.0


def test_linear_decoder_hessian_is_indefinite_where_the_gradient_has_negative_coordinates():
    log_rate, x, phi = small_problem(rate=0.5)
    x = x * 10                                        # data far above the rates: g* < 0 somewhere
    g_star, hessian = linear_decoder_grad_hessian(log_rate, x, phi)
    assert (g_star < 0).any()
    assert (negative_eigenvalue_fraction(hessian) > 0).any()
    gn = gauss_newton_hessian(log_rate, phi)
    torch.testing.assert_close(hessian - torch.diag_embed(g_star), gn)
    assert (torch.linalg.eigvalsh(gn) > -1e-10).all()


def test_first_order_cross_term_and_its_closed_form_for_eat_cubic():
    g = torch.tensor([[2.0, 0.0], [1.0, 1.0]], dtype=F64)
    b = torch.tensor([[-0.2, 5.0], [0.1, 0.1]], dtype=F64)
    torch.testing.assert_close(first_order_cross_term(b, g), torch.tensor([-0.1, 0.1], dtype=F64))
    with pytest.raises(ValueError, match="non-zero"):
        first_order_cross_term(b, torch.zeros_like(g))
    # EAT-cubic (tau <= 1): bias = -(9 tau / 35) lambda * d, so the cross term is known in closed form
    _, x, phi = small_problem(rate=3.0)
    log_rate = torch.full((2, 2), math.log(3.0), dtype=F64)    # one rate, as exact_quality_cases uses
    g_star, hessian = linear_decoder_grad_hessian(log_rate, x, phi)
    tau = 0.4
    closed = -(9 * tau / 35) * log_rate.exp() * (phi * phi).sum(0)
    expected = expected_eat_gradient("eat-cubic", log_rate, x, phi, tau)
    torch.testing.assert_close(expected - g_star, closed)
    rows = exact_quality_cases([("a", x, phi)], 3.0, [tau], methods=("eat-cubic",))
    cross = float(first_order_cross_term(closed, g_star).mean())
    assert rows[0]["cross_term"] == pytest.approx(cross, rel=1e-6)
    energy = (torch.einsum("bi,bij,bj->b", closed, absolute_hessian(hessian), closed)
              / torch.einsum("bi,bij,bj->b", g_star, absolute_hessian(hessian), g_star)).mean()
    assert rows[0]["bias_energy"] == pytest.approx(float(energy), rel=1e-6)


def test_exact_quality_cases_refuses_colliding_names():
    log_rate, x, phi = small_problem()
    rows = exact_quality_cases([("a", x, phi), ("b", x * 2, phi)], 3.0, [0.1, 0.5])
    assert {(r["case"], r["method"], r["temperature"]) for r in rows} == {
        (c, m, t) for c in "ab" for m in ("eat-sigmoid", "eat-cubic") for t in (0.1, 0.5)}
    with pytest.raises(ValueError, match="repeated.*'a'"):
        exact_quality_cases([("a", x, phi), ("a", x * 2, phi)], 3.0, [0.1])


def test_rate_adaptive_temperature():
    rate = torch.tensor([0.1, 0.5, 1.0, 25.0, 100.0], dtype=F64)
    tau = rate_adaptive_temperature(rate, 0.05)
    torch.testing.assert_close(tau, torch.tensor([1.0, 1.0, 0.5, 0.05, 0.05], dtype=F64))
    assert (window_arrivals(rate, tau)[2:4] >= 1 - 1e-12).all()     # at least A = 1 expected arrival
    torch.testing.assert_close(rate_adaptive_temperature(rate, 0.05, arrivals=0.1),
                               torch.tensor([0.5, 0.1, 0.05, 0.05, 0.05], dtype=F64))
    assert window_arrivals(0.1, 0.02) == pytest.approx(0.004)
    for bad in ({"temperature": 0.0}, {"temperature": 1.5}, {"arrivals": -1.0}, {"max_temperature": 2.0}):
        kwargs = {"temperature": 0.1, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            rate_adaptive_temperature(rate, **kwargs)
    with pytest.raises(ValueError, match="rate"):
        rate_adaptive_temperature(torch.tensor([0.0, 1.0]), 0.1)


def test_adaptive_method_is_eat_cubic_at_the_adaptive_temperature_and_keeps_the_mean_exact():
    log_rate, x, phi = small_problem(rate=0.2)
    tau = rate_adaptive_temperature(log_rate.exp(), 0.02)
    assert (tau == 1.0).all()
    torch.manual_seed(3)
    adaptive = per_sample_gradients("adaptive-eat-cubic", log_rate, x, phi, 0.02, n_samples=5)
    torch.manual_seed(3)
    plain = per_sample_gradients("eat-cubic", log_rate, x, phi, 1.0, n_samples=5)
    assert torch.equal(adaptive, plain)
    torch.testing.assert_close(expected_eat_gradient("adaptive-eat-cubic", log_rate, x, phi, 0.02),
                               expected_eat_gradient("eat-cubic", log_rate, x, phi, 1.0))
    grads = per_sample_gradients("adaptive-eat-cubic", log_rate, x, phi, 0.02, n_samples=40_000)
    assert_mean_matches(grads, expected_eat_gradient("adaptive-eat-cubic", log_rate, x, phi, 0.02))
    with pytest.raises(ValueError, match="<= 1"):
        per_sample_gradients("adaptive-eat-cubic", log_rate, x, phi, 1.5, n_samples=2)


def test_adaptive_method_cuts_the_low_rate_noise_of_cold_eat_cubic():
    phi = overcomplete_dct_dictionary(4, 5, dtype=torch.float32)
    rows = gradient_quality_sweep(phi, [0.1], [0.02], ["eat-cubic", ADAPTIVE_METHODS[0]], n_samples=200,
                                  n_items=4, seed=0)
    cubic, adaptive = rows
    assert adaptive["effective_temperature"] == 1.0 and cubic["effective_temperature"] == 0.02
    assert adaptive["noise_energy"] < cubic["noise_energy"] / 5
    assert adaptive["bias_energy_exact"] > cubic["bias_energy_exact"]          # the price: 9 tau / 35


def test_sweep_cells_are_seeded_by_the_cell_alone():
    phi = overcomplete_dct_dictionary(4, 5, dtype=torch.float32)
    both = gradient_quality_sweep(phi, [1.0, 3.0], [0.1], ["eat-cubic"], n_samples=20, n_items=3, seed=5)
    alone = gradient_quality_sweep(phi, [3.0], [0.1], ["eat-cubic"], n_samples=20, n_items=3, seed=5)
    assert both[1]["noise_energy"] == alone[0]["noise_energy"]


# --- the stored grid: cell-by-cell checkpoint, resume, refusal of another configuration ----------

def _tiny_setups(n_items=2):
    from hitchhiker.book.gradients.grid import GridSetup

    phi = overcomplete_dct_dictionary(4, 5)
    data = torch.randn(3, 16, generator=torch.Generator().manual_seed(0), dtype=F64)
    return [GridSetup("patches", phi, "dct-16x25", data, n_items, ("eat-cubic", "score"), 0),
            GridSetup("generated", phi, "dct-16x25", None, n_items, ("eat-cubic",), 1)]


def test_run_grid_checkpoints_resumes_and_writes_the_table(tmp_path, monkeypatch):
    from hitchhiker.book.gradients.grid import PARTIAL_NAME, grid_cells, run_grid

    monkeypatch.setenv("HITCHHIKER_SCALE", "default")
    setups = _tiny_setups()
    partial = tmp_path / f"{PARTIAL_NAME}.csv"
    stopped = run_grid(tmp_path, setups, rates=(1.0, 3.0), temperatures=(0.1,), n_samples=10,
                       deadline=0.0, log=lambda line: None)          # deadline passed: nothing computed
    assert stopped.empty and not (tmp_path / "gradients.csv").exists()
    lines = []
    calls = []
    from hitchhiker.book.gradients import grid as module
    original = module.gradient_quality_sweep

    def counting(*args, **kwargs):
        calls.append(args[1:3])
        if len(calls) == 3:
            raise KeyboardInterrupt                                   # killed during the third cell
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "gradient_quality_sweep", counting)
    with pytest.raises(KeyboardInterrupt):
        run_grid(tmp_path, setups, rates=(1.0, 3.0), temperatures=(0.1,), n_samples=10, log=lines.append)
    assert partial.is_file() and len(lines) == 2
    monkeypatch.setattr(module, "gradient_quality_sweep", original)
    table = run_grid(tmp_path, setups, rates=(1.0, 3.0), temperatures=(0.1,), n_samples=10, log=lines.append)
    assert len(lines) == 4                                            # only the two missing cells
    cells = {(g, r, t) for g, r, t in table[["grid_setup", "rate", "temperature"]].itertuples(index=False)}
    assert cells == set(grid_cells(setups, (1.0, 3.0), (0.1,)))
    assert len(table) == 2 * 2 + 2 * 1 and (table["seconds"] >= 0).all()
    assert (tmp_path / "gradients.csv").is_file() and not partial.exists()
    # the resumed numbers are those of an uninterrupted run
    fresh = tmp_path / "fresh"
    again = run_grid(fresh, setups, rates=(1.0, 3.0), temperatures=(0.1,), n_samples=10,
                     log=lambda line: None)
    key = ["grid_setup", "method", "rate"]
    pd_testing = pytest.importorskip("pandas").testing
    pd_testing.assert_series_equal(table.sort_values(key)["noise_energy"].reset_index(drop=True),
                                   again.sort_values(key)["noise_energy"].reset_index(drop=True))


def test_run_grid_refuses_a_checkpoint_of_another_configuration(tmp_path, monkeypatch):
    from hitchhiker.book.gradients.grid import run_grid

    monkeypatch.setenv("HITCHHIKER_SCALE", "smoke")
    setups = _tiny_setups()
    table = run_grid(tmp_path, setups, rates=(1.0,), temperatures=(0.1,), n_samples=10, log=lambda line: None)
    assert not (tmp_path / "gradients.csv").exists() and len(table) == 3    # smoke writes no results
    with pytest.raises(ValueError, match="another configuration"):
        run_grid(tmp_path, _tiny_setups(n_items=3), rates=(1.0,), temperatures=(0.1,), n_samples=10)
    with pytest.raises(ValueError, match="distinct"):
        run_grid(tmp_path / "x", setups + setups[:1], rates=(1.0,), temperatures=(0.1,))


def test_stored_grid_reads_a_complete_table_and_completes_an_incomplete_one(tmp_path, monkeypatch):
    from hitchhiker.book.gradients import grid as module

    setups = _tiny_setups()
    monkeypatch.setattr(module, "grid_setups", lambda: setups)
    monkeypatch.setenv("HITCHHIKER_SCALE", "default")
    lines = []
    table = module.stored_grid(tmp_path, log=lines.append)
    assert len(lines) == len(module.grid_cells(setups))              # every cell computed
    assert (tmp_path / "gradients.csv").is_file()
    lines.clear()
    again = module.stored_grid(tmp_path, log=lines.append)
    assert lines == [] and len(again) == len(table)                   # read, not recomputed
    # a table of another size is not the current grid: recomputed, never silently used
    monkeypatch.setattr(module, "grid_setups", lambda: _tiny_setups(n_items=3))
    module.stored_grid(tmp_path, log=lines.append)
    assert "not the current grid" in lines[0]
    monkeypatch.setenv("HITCHHIKER_SCALE", "smoke")
    small = module.stored_grid(tmp_path / "smoke", log=lambda line: None)
    assert set(small["rate"]) == set(module.SMOKE_RATES) and not (tmp_path / "smoke").exists()


import pandas as pd  # noqa: E402

import hitchhiker as hh  # noqa: E402
from hitchhiker.book.gradients.matched import (  # noqa: E402
    matched_sweep,
    matched_temperature,
    variance_ratio_axis,
)


def _fidelity_table():
    """A small chapter-04-like table: GSM's measured variance ratio falls with tau at two rates."""
    rows = []
    for rate in (1.0, 20.0):
        for tau, ratio in ((0.02, 0.98), (0.1, 0.90), (0.2, 0.80)):
            rows.append({"method": "gsm", "rate": rate, "temperature": tau, "var_ratio": ratio,
                         "var_ratio_theory": float("nan")})
    return pd.DataFrame(rows)


def test_variance_ratio_axis_is_campbell_for_eat_measured_for_gsm_and_nan_otherwise():
    frame = pd.DataFrame({
        "method": ["eat-cubic", "eat-sigmoid", "adaptive-eat-cubic", "gsm", "gsm", "score", "st-cubic"],
        "rate": [20.0, 20.0, 0.1, 20.0, 3.0, 20.0, 20.0],
        "temperature": [0.5, 0.1, 0.02, 0.1, 0.1, 0.1, 0.1],
        "effective_temperature": [0.5, 0.1, 1.0, 0.1, 0.1, float("nan"), 0.1]})
    axis = variance_ratio_axis(frame, _fidelity_table())
    assert axis.iloc[0] == pytest.approx(1 - 9 * 0.5 / 35, abs=1e-12)
    assert axis.iloc[1] == pytest.approx(float(hh.variance_ratio("eat-sigmoid", 0.1, 20.0)), abs=1e-6)
    assert axis.iloc[2] == pytest.approx(1 - 9 / 35, abs=1e-12)      # the adaptive tau_k = 1, not the nominal
    assert axis.iloc[3] == 0.90                                       # measured, from the table
    assert axis.iloc[4:].isna().all()                                 # no GSM cell at rate 3; score; ST
    assert variance_ratio_axis(frame).iloc[3:].isna().all()           # GSM without a table: NaN, not a guess
    with pytest.raises(ValueError, match="temperature"):
        variance_ratio_axis(frame.drop(columns="temperature"))


def test_matched_temperature_round_trips_through_campbell_and_refuses_what_it_cannot_match():
    target = 1 - 9 * 0.5 / 35
    tau = matched_temperature("eat-sigmoid", target, 20.0)
    assert float(hh.variance_ratio("eat-sigmoid", torch.tensor(tau, dtype=torch.float64), 20.0)) == (
        pytest.approx(target, abs=1e-12))
    assert matched_temperature("eat-cubic", target, 2.0) == pytest.approx(0.5, abs=1e-12)
    # GSM: linear in the measured ratio between the bracketing temperatures, 0.85 -> halfway 0.1 .. 0.2
    assert matched_temperature("gsm", 0.85, 20.0, _fidelity_table()) == pytest.approx(0.15)
    with pytest.raises(ValueError, match="fidelity"):
        matched_temperature("gsm", 0.85, 20.0)
    with pytest.raises(ValueError, match="outside"):
        matched_temperature("gsm", 0.99, 20.0, _fidelity_table())
    with pytest.raises(ValueError, match="score"):
        matched_temperature("score", 0.9, 20.0)
    with pytest.raises(ValueError):                                   # the cubic above tau = 1: mean > lambda
        matched_temperature("eat-cubic", 0.65, 20.0)


def test_matched_sweep_measures_every_method_at_the_reference_variance_ratio():
    phi = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    out = matched_sweep(phi, [1.0, 20.0], [0.05, 0.5], fidelity=_fidelity_table(), n_samples=20,
                        n_items=2, seed=1)
    for (_, _), part in out.groupby(["rate", "reference_temperature"]):
        assert part.variance_ratio.nunique() == 1
        assert part.method.iloc[0] == "eat-cubic"
    # sigmoid everywhere; GSM only where the table reaches the target (0.871 yes, 0.987 no)
    assert set(out[out.method == "eat-sigmoid"].reference_temperature) == {0.05, 0.5}
    assert set(out[out.method == "gsm"].reference_temperature) == {0.5}
    sig = out[(out.method == "eat-sigmoid") & (out.reference_temperature == 0.5)]
    assert sig.temperature.iloc[0] == pytest.approx(matched_temperature("eat-sigmoid", 1 - 9 / 70, 1.0))
    assert out.noise_energy.notna().all() and (out.noise_energy > 0).all()
