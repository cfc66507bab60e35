"""The API page's "Coming from the official code" example runs as written (book/api.md)."""
import pathlib
import re

import torch

PAGE = (pathlib.Path(__file__).resolve().parents[2] / "book" / "api.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = PAGE.index(f"## {title}")
    end = PAGE.find("\n## ", start + 1)
    return PAGE[start:end if end > 0 else None]


def test_coming_from_the_official_code_example_runs():
    section = _section("Coming from the official code")
    (example,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    torch.manual_seed(0)
    namespace: dict = {}
    exec(compile(example, "book/api.md", "exec"), namespace)  # noqa: S102 - the page is ours
    log_rate = namespace["log_rate"]
    assert log_rate.grad is not None and float(log_rate.grad.abs().sum()) > 0


def test_the_table_names_every_official_argument():
    section = _section("Coming from the official code")
    for name in ("log_rate", "temp", "indicator_approx", "n_exp", "n_exp_p", "clamp", "upperbound_method",
                 "upperbound_param", "aggregate_samples"):
        assert f"`{name}" in section or f"{name}=" in section, name
