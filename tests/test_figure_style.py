"""The style module's legibility pieces: line styles for overlapping methods, the rating colour scale,
and the smallest font size stored in each figure's PNG (read by the browser test)."""
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from PIL import Image  # noqa: E402

from hitchhiker.book.common import plotting  # noqa: E402


def test_overlapping_methods_differ_in_colour_and_line_style():
    for a, b in [("eat-cubic", "st-cubic"), ("eat-sigmoid", "st-sigmoid")]:
        style_a, style_b = plotting.method_style(a), plotting.method_style(b)
        assert style_a["color"] != style_b["color"]
        assert style_a.get("ls", "-") != style_b.get("ls", "-")
    # the paper's methods stay solid, and an explicit line style still wins
    assert "ls" not in plotting.method_style("eat-cubic")
    assert plotting.method_style("st-cubic", ls="--")["ls"] == "--"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], **plotting.method_style("st-cubic"))   # a valid line style
    plt.close(fig)


def test_rating_scale_runs_light_to_dark():
    def lightness(x):
        return sum(to_rgb(plotting.RATING_CMAP(x))) / 3

    values = [lightness(x) for x in (0.0, 0.33, 0.66, 1.0)]
    assert values == sorted(values, reverse=True) and values[0] > 0.9 and values[-1] < 0.3


def test_the_smallest_font_is_stored_in_the_png():
    plotting.use_book_style()
    fig, ax = plt.subplots(figsize=(plotting.BOOK_WIDTH, 2))
    ax.set_title("title")
    ax.legend(handles=ax.plot([0, 1], [0, 1], label="line"))
    assert plotting.smallest_font_pt(fig) == plotting.MIN_FONT_PT
    ax.text(0.5, 0.5, "small", fontsize=6)
    png = plotting._png_with_font_metadata(fig, bbox_inches="tight", base64=False)
    info = Image.open(io.BytesIO(png)).info
    assert float(info[plotting.FONT_METADATA_KEY]) == 6.0
    assert round(info["dpi"][0]) == plotting.STYLE["figure.dpi"]
    plt.close(fig)
