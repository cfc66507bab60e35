"""The shared figure helpers: one colour per method, and the Figure 4 layout."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from hitchhiker.book.common.plotting import METHOD_COLORS, method_style, plot_method_sweep  # noqa: E402


def test_paper_colours():
    assert METHOD_COLORS["eat-sigmoid"].lower() == "#1f5fbf" and METHOD_COLORS["exact"] == "#000000"
    assert method_style("eat-cubic")["color"] == METHOD_COLORS["eat-cubic"]
    assert method_style("unknown-method")["label"] == "unknown-method"


def test_method_sweep_draws_exact_as_a_reference_on_both_panels():
    table = pd.DataFrame({
        "method": ["exact", "exact", "score", "score", "gsm", "eat-cubic"],
        "temperature": [None, None, None, None, 0.1, 0.1],
        "n_samples": [1, 1, 2, 8, 1, 1], "seed": [0, 1, 0, 0, 0, 0],
        "loss": [10.0, 12.0, 20.0, 15.0, 14.0, 11.0]})
    fig, (left, right) = plt.subplots(1, 2)
    plot_method_sweep(left, right, table, "loss", "loss")
    for ax in (left, right):
        dashed = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert len(dashed) == 1 and dashed[0].get_ydata()[0] == 11.0   # mean of the exact runs
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert "GSM" in labels and "exact" in labels and "score function" not in labels
    plt.close(fig)


def test_method_sweep_labels_a_shared_y_axis_once():
    table = pd.DataFrame({"method": ["score", "eat-cubic"], "temperature": [None, 0.1],
                          "n_samples": [2, 1], "seed": [0, 0], "loss": [2.0, 1.0]})
    fig, (left, right) = plt.subplots(1, 2, sharey=True)
    plot_method_sweep(left, right, table, "loss", "loss (nats)")
    assert left.get_ylabel() == "loss (nats)" and right.get_ylabel() == ""
    fig, (left, right) = plt.subplots(1, 2)
    plot_method_sweep(left, right, table, "loss", "loss (nats)")
    assert right.get_ylabel() == "loss (nats)"
    plt.close("all")


def test_estimator_comparison_plots_every_relaxation_and_leaves_out_the_score_function():
    from hitchhiker.book.common.plotting import plot_estimator_comparison

    def rec(method, tau, cos, var):
        return {"method": method, "temperature": tau, "cos_mean": cos, "cos_mean_se": 0.01,
                "relative_variance": var, "relative_variance_se": 0.1}

    records = [rec("eat-cubic", 0.5, 1.0, 2.0), rec("eat-cubic", 0.1, 0.99, 8.0),
               rec("gsm", 0.1, 0.98, 20.0), rec("score", None, 1.0, 3000.0)]
    fig, (top, bottom) = plt.subplots(2, 1)
    plot_estimator_comparison(top, bottom, records, title="model")
    curves = {c.get_label(): c.lines[0] for c in bottom.containers}     # one errorbar per method
    assert set(curves) == {method_style("eat-cubic")["label"], "GSM"}  # the score function left out
    cubic = curves[method_style("eat-cubic")["label"]]
    assert list(cubic.get_xdata()) == [0.1, 0.5] and list(cubic.get_ydata()) == [8.0, 2.0]
    assert bottom.get_yscale() == "log" and top.get_title() == "model"
    plt.close(fig)


def test_gradient_metrics_draw_every_method_with_its_band_and_title():
    import matplotlib.pyplot as plt
    import pandas as pd

    from hitchhiker.book.common import plotting

    rows = [{"method": m, "temperature": t, **{c: v for c, _, _ in plotting.GRADIENT_PANELS
                                                 for c, v in ((c, 0.5 + t), (c + "_sd", 0.1))}}
            for m in ("eat-cubic", "fixed-cap-eat-sigmoid") for t in (0.1, 0.5)]
    fig, axes = plotting.plot_gradient_metrics(pd.DataFrame(rows), ["eat-cubic", "fixed-cap-eat-sigmoid"],
                                               title="a title")
    assert fig._suptitle.get_text() == "a title" and len(axes) == 4
    for ax in axes:
        lines = [line for line in ax.get_lines() if line.get_marker() == "o"]
        assert len(lines) == 2 and len(ax.collections) == 2          # a line and a band per method
    # a variant takes its base method's colour
    assert axes[0].get_lines()[1].get_color() == plotting.method_color("eat-sigmoid")
    assert [ax.get_yscale() for ax in axes] == ["linear", "linear", "log", "log"]
    plt.close(fig)
