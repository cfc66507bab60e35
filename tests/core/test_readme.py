"""The README's usage example runs as written, and its layout section matches the tree."""
import pathlib
import re

import torch

ROOT = pathlib.Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _code_blocks(text: str, language: str) -> list:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_usage_example_runs_as_written():
    (example,) = _code_blocks(_section("Use it in your own model"), "python")
    torch.manual_seed(0)
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)  # noqa: S102 - the README is ours
    encoder = namespace["encoder"]
    # Every backward of the example reached the encoder with finite values.
    assert encoder.weight.grad is not None and torch.isfinite(encoder.weight.grad).all()
    assert float(encoder.weight.grad.abs().sum()) > 0


def test_layout_lists_every_module():
    (layout,) = _code_blocks(_section("Layout"), "")
    listed = set(re.findall(r"([A-Za-z_]\w*)\.py", layout))
    package = ROOT / "hitchhiker"
    modules = {p.stem for p in package.rglob("*.py") if p.stem != "__init__"}
    assert modules - listed == set(), f"modules missing from the README layout: {modules - listed}"
    assert listed - modules == set(), f"the README layout names modules that do not exist: {listed - modules}"
