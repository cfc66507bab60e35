"""What each estimator costs: time and peak memory of one ``rsample`` + ``backward``.

For every rate lambda, temperature tau and batch size, times each pathwise method of the registry
(``eat-cubic``, ``eat-sigmoid``, ``gsm``, ``st-cubic``) against two baselines measured in the same
run, interleaved round by round so that machine noise hits all of them alike:

* ``torch.poisson``: exact counts, no gradient at all -- the floor;
* ``fixed-cap-eat-cubic``: the usual full-arrival EAT (every arrival up to the official cap, the
  Poisson 1 - 1e-3 quantile of the largest rate, autograd through all of them;
  :func:`hitchhiker.book.fidelity.fixed_cap_eat`).

Reported per row: the median time over repeats (CPU: process CPU time, which other jobs on a shared
machine barely disturb; CUDA: synchronised wall time), the peak extra memory of the call (CPU: peak
resident set size above the level before the call, via /proc/self/clear_refs; CUDA:
``torch.cuda.max_memory_allocated``), and the ratios ``vs_poisson`` (time / torch.poisson's time)
and ``speedup_vs_fixed_cap`` (fixed-cap time / time). Configurations whose estimated memory or work
exceeds ``--max-gib`` / ``--max-work`` are listed as skipped.

    python benchmarks/sampler.py                    # full grid, batch 1e5 and 1e6, CPU
    python benchmarks/sampler.py --quick            # small smoke run
    python benchmarks/sampler.py --device cuda --out results.csv
"""
from __future__ import annotations

import argparse
import ctypes
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hitchhiker import relaxed_sample  # noqa: E402
from hitchhiker.book.fidelity import fixed_cap_eat, fixed_cap_n_arrivals  # noqa: E402
from hitchhiker.distributions import default_n_categories  # noqa: E402
from hitchhiker.indicators import get_indicator  # noqa: E402

POISSON = "torch.poisson"
FIXED_CAP = "fixed-cap-eat-cubic"
METHODS = ("eat-cubic", "eat-sigmoid", "gsm", "st-cubic")
RATES = (1.0, 10.0, 100.0, 1000.0)
TEMPERATURES = (0.05, 0.1, 0.5)


# --------------------------------------------------------------------------------------- memory
class PeakMemory:
    """Peak extra memory of a block: CUDA allocator statistics, or the CPU resident-set high-water
    mark (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._libc = None
        if device.type == "cpu":
            try:
                self._libc = ctypes.CDLL("libc.so.6")
                self._reset_hwm()
            except OSError:
                self._libc = None

    @staticmethod
    def _status(key: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
        raise OSError(key)

    def _reset_hwm(self):
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")

    def start(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        elif self._libc is not None:
            self._libc.malloc_trim(0)  # hand freed heap pages back, so reuse does not hide a peak
            self._reset_hwm()
            self.base = self._status("VmRSS")

    def stop(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return float(torch.cuda.max_memory_allocated(self.device) - self.base)
        if self._libc is None:
            return math.nan
        return float(self._status("VmHWM") - self.base)


# --------------------------------------------------------------------------------------- methods
def make_call(method: str, rate: torch.Tensor, tau: float):
    """A zero-argument function doing one draw (and its backward) for ``method``."""
    if method == POISSON:
        target = rate.detach()
        return lambda: torch.poisson(target)

    def draw_and_backward():
        rate.grad = None
        if method == FIXED_CAP:
            z = fixed_cap_eat(rate, tau, indicator="cubic")
        else:
            z = relaxed_sample(method, rate, tau)
        z.sum().backward()
        return z

    return draw_and_backward


def estimate(method: str, batch: int, lam: float, tau: float, dtype=torch.float32):
    """(bytes, work items) one call needs, roughly: to skip what cannot fit or finish in time."""
    if method == POISSON:
        return 8 * batch, batch
    if method == FIXED_CAP:
        n = fixed_cap_n_arrivals(lam)
        return 4 * 8 * batch * n, batch * n  # gaps, cumsum, times, x, f, saved for backward
    if method == "gsm":
        k = default_n_categories(torch.tensor([lam]))
        return 4 * 12 * batch * k, batch * k  # float64 logits + Gumbel noise + softmax + saved
    indicator = get_indicator("sigmoid" if method.endswith("sigmoid") else "cubic")
    h = indicator.half_width(dtype)
    window = 1 + h * tau - max(0.0, 1 - h * tau)
    return 160 * batch, batch * (2 + lam * window)


def timed(call, device: torch.device):
    """(CPU-or-device time, wall time) of one call, in seconds."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    call()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return (wall if device.type == "cuda" else cpu), wall


def bench_config(batch, lam, tau, methods, device, repeats, max_bytes, max_work, memory):
    """Rows for one (batch, lambda, tau): every method, interleaved round by round."""
    rate = torch.full((batch,), lam, device=device, requires_grad=True)
    calls, rows = {}, {}
    for method in methods:
        nbytes, work = estimate(method, batch, lam, tau)
        row = dict(device=device.type, batch=batch, rate=lam, temperature=tau, method=method,
                   time_ms=math.nan, wall_ms=math.nan, peak_bytes=math.nan,
                   bytes_per_element=math.nan, vs_poisson=math.nan,
                   speedup_vs_fixed_cap=math.nan, repeats=0, status="ok")
        if nbytes > max_bytes:
            row["status"] = f"skipped: needs ~{nbytes / 2**30:.1f} GiB"
        elif work > max_work:
            row["status"] = f"skipped: ~{work:.1e} work items"
        else:
            calls[method] = make_call(method, rate, tau)
        rows[method] = row
    # Warm-up call (also the memory measurement) for each method.
    first = {}
    for method, call in calls.items():
        memory.start()
        first[method], _ = timed(call, device)
        rows[method]["peak_bytes"] = memory.stop()
    times = {m: [] for m in calls}
    walls = {m: [] for m in calls}
    for r in range(repeats):
        for method, call in calls.items():
            if r >= 2 and first[method] > 5.0:
                continue  # slow configurations: three timed calls are enough for a median
            t, w = timed(call, device)
            times[method].append(t)
            walls[method].append(w)
    for method in calls:
        row = rows[method]
        row["time_ms"] = 1e3 * statistics.median(times[method])
        row["wall_ms"] = 1e3 * statistics.median(walls[method])
        row["repeats"] = len(times[method])
        row["bytes_per_element"] = row["peak_bytes"] / batch
    floor = rows.get(POISSON, {}).get("time_ms", math.nan)
    capped = rows.get(FIXED_CAP, {}).get("time_ms", math.nan)
    for row in rows.values():
        row["vs_poisson"] = row["time_ms"] / floor
        row["speedup_vs_fixed_cap"] = capped / row["time_ms"]
    return list(rows.values())


def format_row(row) -> str:
    if row["status"] != "ok":
        return (f"{row['batch']:>8d} {row['rate']:>7g} {row['temperature']:>5g} "
                f"{row['method']:<20s} {row['status']}")
    return (f"{row['batch']:>8d} {row['rate']:>7g} {row['temperature']:>5g} {row['method']:<20s}"
            f"{row['time_ms']:>11.2f} {row['peak_bytes'] / 2**20:>10.1f} "
            f"{row['bytes_per_element']:>9.0f} {row['vs_poisson']:>10.1f}x "
            f"{row['speedup_vs_fixed_cap']:>9.1f}x")


HEADER = (f"{'batch':>8s} {'lambda':>7s} {'tau':>5s} {'method':<20s}{'time_ms':>11s} "
          f"{'peak_MiB':>10s} {'B/elem':>9s} {'vs_poisson':>11s} {'vs_fixcap':>10s}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1e4, lambda in {1, 10, 100}, tau = 0.1, 3 repeats")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows to this CSV file")
    parser.add_argument("--batches", default="100000,1000000",
                        help="comma-separated batch sizes (default 1e5 and 1e6)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method (median)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: times are CPU time of one core)")
    parser.add_argument("--max-gib", type=float, default=2.0,
                        help="skip a configuration whose estimated memory exceeds this")
    parser.add_argument("--max-work", type=float, default=1.2e9,
                        help="skip a configuration needing more arrivals/categories than this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    batches = [int(float(b)) for b in args.batches.split(",")]
    rates, temperatures, repeats = RATES, TEMPERATURES, args.repeats
    if args.quick:
        batches, rates, temperatures, repeats = [10_000], (1.0, 10.0, 100.0), (0.1,), 3
    methods = (POISSON, FIXED_CAP) + METHODS
    memory = PeakMemory(device)
    print(f"# torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f" ({platform.processor() or platform.machine()}, {args.threads} thread(s))"))
    print("# time_ms: median " + ("wall time (synchronised)" if device.type == "cuda"
                                  else "process CPU time") + " of rsample + backward")
    print(HEADER)
    rows = []
    for batch in batches:
        for lam in rates:
            for tau in temperatures:
                block = bench_config(batch, lam, tau, methods, device, repeats,
                                     args.max_gib * 2**30, args.max_work, memory)
                for row in block:
                    row.update(threads=args.threads, torch=torch.__version__)
                    print(format_row(row), flush=True)
                rows.extend(block)
    if args.out is not None:
        import pandas as pd

        args.out.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_csv(args.out, index=False, float_format="%.6g")
        print(f"# wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
