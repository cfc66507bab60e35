"""benchmarks/gpu_check.py: its CPU rehearsal writes the documented rows, and it never writes GPU
numbers that were not measured on a GPU."""
import csv
import pathlib
import subprocess
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
pytestmark = pytest.mark.slow  # each test runs the script in a subprocess


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cpu_rehearsal_writes_every_section(tmp_path):
    out = tmp_path / "gpu.csv"
    done = _run("--device", "cpu", "--quick", "--out", str(out), "--sections", "timing,exactness,pvae")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(open(out)))
    assert [r["name"] for r in rows[:3]] == ["device", "torch", "cuda"]
    assert {r["section"] for r in rows} == {"machine", "timing", "exactness", "pvae"}
    assert all(r["status"] in ("ok", "skipped") for r in rows), [r for r in rows if r["status"] != "ok"]
    ratios = {r["method"]: float(r["value"]) for r in rows if r["name"] == "vs torch.poisson"}
    assert ratios["torch.poisson"] == 1.0 and ratios["eat-cubic"] > 0
    (exact,) = [r for r in rows if r["name"] == "eat-cubic variance/lambda"]
    assert abs(float(exact["value"]) - (1 - 9 * 0.5 / 35)) < 0.02
    assert any(r["name"].startswith("projected grid time") for r in rows)


def test_refuses_to_write_the_book_file_from_a_cpu():
    done = _run("--device", "cpu", "--quick", "--sections", "exactness")
    assert done.returncode != 0 and "must not write" in (done.stderr + done.stdout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_refuses_cuda_without_a_device(tmp_path):
    done = _run("--out", str(tmp_path / "gpu.csv"))
    assert done.returncode != 0 and "no CUDA device" in (done.stderr + done.stdout)
    assert not (tmp_path / "gpu.csv").exists()
