"""The smoke / default / paper switch takes effect where the package reads it."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hitchhiker.book import by_scale, current_scale, save_results

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("scale,expected", [("smoke", 1), ("default", 2), ("paper", 3), ("PAPER", 3)])
def test_by_scale_follows_the_environment(monkeypatch, scale, expected):
    monkeypatch.setenv("HITCHHIKER_SCALE", scale)
    assert by_scale(smoke=1, default=2, paper=3) == expected


def test_paper_falls_back_to_default(monkeypatch):
    monkeypatch.setenv("HITCHHIKER_SCALE", "paper")
    assert by_scale(smoke=1, default=2) == 2


def test_unset_means_default(monkeypatch):
    monkeypatch.delenv("HITCHHIKER_SCALE", raising=False)
    assert current_scale() == "default"


def test_unknown_scale_is_an_error(monkeypatch):
    monkeypatch.setenv("HITCHHIKER_SCALE", "huge")
    with pytest.raises(ValueError, match="HITCHHIKER_SCALE"):
        current_scale()


def test_results_are_not_written_at_smoke_scale(monkeypatch, tmp_path):
    monkeypatch.setenv("HITCHHIKER_SCALE", "smoke")
    assert save_results([{"a": 1}], "x", directory=tmp_path) is None
    assert not (tmp_path / "x.csv").exists()
    monkeypatch.setenv("HITCHHIKER_SCALE", "default")
    assert save_results([{"a": 1}], "x", directory=tmp_path) == tmp_path / "x.csv"
    assert (tmp_path / "x.csv").read_text().splitlines() == ["a", "1"]


def test_a_fresh_process_reads_the_switch():
    """What a notebook kernel sees: the variable set by `make notebooks` reaches a new process."""
    code = "from hitchhiker import book; print(book.current_scale(), book.by_scale(10, 20, 30))"
    env = {**os.environ, "HITCHHIKER_SCALE": "smoke"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["smoke", "10"]


def test_make_runs_notebooks_at_smoke_scale():
    makefile = (ROOT / "Makefile").read_text()
    notebook_rule = makefile.split("\nnotebooks:", 1)[1].split("\n\n", 1)[0]
    assert "HITCHHIKER_SCALE=smoke" in notebook_rule and "--nbval" in notebook_rule
