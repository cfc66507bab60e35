"""What every experiment shares: the scale switch, seeds and device, the results files, the figure style and the one trainer."""
from .plotting import (  # noqa: F401
    BOOK_WIDTH,
    METHOD_COLORS,
    METHOD_LABELS,
    STYLE,
    method_color,
    method_label,
    method_style,
    plot_estimator_comparison,
    plot_learning_curves,
    plot_method_sweep,
    use_book_style,
)
from .results import (  # noqa: F401
    load_results,
    save_results,
)
from .runtime import (  # noqa: F401
    default_device,
    in_colab,
    results_dir,
    seed_everything,
    setup_chapter,
)
from .scale import (  # noqa: F401
    ENV_VAR,
    SCALES,
    by_scale,
    current_scale,
    writes_results,
)
from .training import (  # noqa: F401
    FLAT_GAIN,
    OPTIMIZERS,
    default_progress_bar,
    fit,
    geometric_anneal,
    last_quarter_gain,
    linear_warmup,
)
