"""benchmarks/sampler.py still runs: one tiny configuration, every method, ratios against baselines."""
import importlib.util
import math
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sampler.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_sampler", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_configuration_times_every_method_against_the_baselines():
    bench = _load()
    device = torch.device("cpu")
    rows = bench.bench_config(2000, 10.0, 0.1, (bench.POISSON, bench.FIXED_CAP) + bench.METHODS,
                              device, repeats=1, max_bytes=2**30, max_work=1e9,
                              memory=bench.PeakMemory(device))
    by_method = {row["method"]: row for row in rows}
    assert set(by_method) == {bench.POISSON, bench.FIXED_CAP, *bench.METHODS}
    for row in rows:
        assert row["status"] == "ok" and row["time_ms"] > 0 and row["repeats"] == 1
    assert by_method[bench.POISSON]["vs_poisson"] == 1.0
    assert by_method[bench.FIXED_CAP]["speedup_vs_fixed_cap"] == 1.0
    assert all(math.isfinite(row["vs_poisson"]) for row in rows)


def test_configurations_beyond_the_budget_are_skipped_not_run():
    bench = _load()
    device = torch.device("cpu")
    rows = bench.bench_config(10, 1000.0, 0.1, (bench.POISSON, bench.FIXED_CAP), device,
                              repeats=1, max_bytes=1000, max_work=1e9,
                              memory=bench.PeakMemory(device))
    capped = next(row for row in rows if row["method"] == bench.FIXED_CAP)
    assert capped["status"].startswith("skipped") and math.isnan(capped["time_ms"])


def test_compile_benchmark_runs_and_reports_ratios_and_graph_breaks():
    from torch.distributions import Distribution

    validate = Distribution._validate_args  # torch.compile turns the default off process-wide
    spec = importlib.util.spec_from_file_location(
        "bench_compile", SCRIPT.parent / "compile.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.bench("eat-cubic", 200, 5.0, 0.1, torch.device("cpu"), repeats=1, warmup=1)
    assert row["graph_breaks"] <= 1  # only backward() itself
    assert row["eager_ms"] > 0 and row["compiled_ms"] > 0 and math.isfinite(row["ratio"])
    Distribution.set_default_validate_args(validate)
