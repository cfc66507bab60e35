"""The results files: atomic writes (a kill mid-write keeps the old file) and loads that refuse damage."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from hitchhiker.book.common.results import RENAMED_COLUMNS, REQUIRED_COLUMNS, load_results, save_results

ROOT = Path(__file__).resolve().parents[1]
STORED = ROOT / "book" / "results"


@pytest.fixture(autouse=True)
def default_scale(monkeypatch):
    monkeypatch.setenv("HITCHHIKER_SCALE", "default")


def test_round_trip_and_no_temporary_file_left(tmp_path):
    rows = [{"method": "eat-cubic", "rate": 1.5, "temperature": 0.1, "mean_ratio": 1.02, "var_ratio": 0.97}]
    path = save_results(rows, "fidelity", tmp_path)
    assert path == tmp_path / "fidelity.csv"
    pd.testing.assert_frame_equal(load_results("fidelity", tmp_path), pd.DataFrame(rows))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fidelity.csv"]


def test_an_error_during_a_rewrite_keeps_the_previous_file(tmp_path, monkeypatch):
    save_results([{"a": 1}, {"a": 2}], "x", tmp_path)
    before = (tmp_path / "x.csv").read_bytes()

    def half_then_fail(self, file, **kwargs):
        file.write("a\n3\n4")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        save_results([{"a": 3}, {"a": 4}], "x", tmp_path)
    assert (tmp_path / "x.csv").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.csv"]


KILLED_WRITER = """
import os, sys, time
import pandas as pd
from hitchhiker.book.common import results

def stall(fd):                      # the new table is on disk under its temporary name: wait to be killed
    open(sys.argv[2], "w").close()
    time.sleep(60)

os.fsync = stall
results.save_results(pd.DataFrame({"a": range(100_000)}), "x", sys.argv[1])
"""


def test_a_kill_during_a_rewrite_leaves_the_previous_file_intact(tmp_path):
    save_results([{"a": 1}, {"a": 2}], "x", tmp_path)
    before = (tmp_path / "x.csv").read_bytes()
    marker = tmp_path.parent / f"{tmp_path.name}.writing"
    env = {**os.environ, "HITCHHIKER_SCALE": "default", "OMP_NUM_THREADS": "1"}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never reached the write"
            time.sleep(0.05)
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.wait()
    assert writer.returncode == -signal.SIGKILL
    assert (tmp_path / "x.csv").read_bytes() == before
    assert list(load_results("x", tmp_path)["a"]) == [1, 2]


def test_nothing_is_written_at_smoke_scale(tmp_path, monkeypatch):
    monkeypatch.setenv("HITCHHIKER_SCALE", "smoke")
    assert save_results([{"a": 1}], "x", tmp_path) is None
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", 3])
def test_a_name_must_be_a_plain_stem(tmp_path, name):
    with pytest.raises(ValueError, match="name"):
        save_results([{"a": 1}], name, tmp_path)
    with pytest.raises(ValueError, match="name"):
        load_results(name, tmp_path)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="pvae.csv"):
        load_results("pvae", tmp_path)


@pytest.mark.parametrize("text,reason", [
    ("", "empty"),
    ("a,b\n1,2\n3,", "truncated"),                 # a write cut short mid-line
    ("a,b\n1,2\n3\n", "line 3 has 1 fields"),      # a row with too few fields
    ("a,b\n1,2,3\n", "line 2 has 3 fields"),       # ... or too many
    ("a,b\n", "no rows"),
])
def test_a_damaged_file_is_refused_with_its_name(tmp_path, text, reason):
    (tmp_path / "x.csv").write_text(text)
    with pytest.raises(ValueError, match=reason) as error:
        load_results("x", tmp_path)
    assert str(tmp_path / "x.csv") in str(error.value)


def test_a_known_table_without_its_columns_is_refused(tmp_path):
    (tmp_path / "fidelity.csv").write_text("method,rate\neat-cubic,1\n")
    with pytest.raises(ValueError, match=r"fidelity.csv lacks the columns \['temperature'"):
        load_results("fidelity", tmp_path)


def test_stored_files_load_with_current_column_names():
    for path in sorted(STORED.glob("*.csv")):
        frame = load_results(path.stem, STORED)
        assert set(REQUIRED_COLUMNS.get(path.stem, ())) <= set(frame.columns)
        assert not set(RENAMED_COLUMNS.get(path.stem, {})) & set(frame.columns)
    gradients = load_results("gradients", STORED)
    assert {"bias_ratio", "bias_ratio_sd", "bias_ratio_exact"} <= set(gradients.columns)
