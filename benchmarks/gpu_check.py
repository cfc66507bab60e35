"""The book on a GPU: one prepared check, run once when a session is lent an accelerator.

Writes one CSV (default ``book/results/gpu.csv``): three rows describing the machine (device name,
torch and CUDA versions), then one row per measurement, in five sections:

1. ``unit``: the library's unit tests (``tests/core``) and the CUDA-only tests, run with
   ``HITCHHIKER_DEVICE=cuda``;
2. ``timing``: ``rsample`` + ``backward`` of every method against ``torch.poisson`` on the same GPU,
   batch 10^6, lambda in {1, 10, 100, 1000}, tau in {0.1, 0.5}: synchronised wall times, medians of
   interleaved rounds, peak allocated memory, ratio to ``torch.poisson`` measured in the same run;
3. ``exactness``: variance/lambda of EAT-cubic at lambda = 100, tau = 0.5 against the closed form
   1 - 9 tau / 35 (within 3 standard errors), and one Figure-1 cell at the paper's size
   (100 trials x 50,000 samples) for EAT-cubic and EAT-sigmoid;
4. ``pvae``: training steps per second of the Poisson VAE (paper batch 1000) per method, and the
   projected time of the paper-scale grid (the book's ``paper`` scale and the official 240,000 steps);
5. ``nbval``: one chapter under nbval at smoke scale with the GPU selected (skipped, and said so,
   where nbval is not installed).

Every row has ``section, name, method, rate, temperature, batch, value, unit, status, detail``.

    python benchmarks/gpu_check.py                     # on the GPU machine (make gpu-check)
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu.csv   # rehearsal on a CPU

A CUDA run refuses to start without a CUDA device, and a CPU rehearsal refuses to write the book's
``gpu.csv``: no number in that file was measured anywhere but on a GPU.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hitchhiker as hh  # noqa: E402

BOOK_CSV = ROOT / "book" / "results" / "gpu.csv"
FIELDS = ("section", "name", "method", "rate", "temperature", "batch", "value", "unit", "status",
          "detail")
POISSON = "torch.poisson"
TIMED_METHODS = (POISSON, "eat-cubic", "eat-sigmoid", "st-cubic", "gsm")
#: Paper-scale P-VAE grid of the book (06_poisson_vae, ``paper``): 3 seeds x (exact, 3 relaxations x
#: 5 temperatures, score at 4 sample counts), 300 epochs of 80 batches; the official code runs 3,000.
PVAE_PAPER_RUNS = {"exact": 3, "eat-sigmoid": 15, "eat-cubic": 15, "gsm": 15, "score": 12}
PVAE_BOOK_STEPS, PVAE_OFFICIAL_STEPS = 300 * 80, 3_000 * 80


def row(section, name, value=math.nan, unit="", method="", rate="", temperature="", batch="",
        status="ok", detail=""):
    return dict(section=section, name=name, method=method, rate=rate, temperature=temperature,
                batch=batch, value=value, unit=unit, status=status, detail=detail)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(call, device, repeats):
    """Median synchronised wall time of ``call`` (seconds) after one warm-up call."""
    call()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------ 0. meta
def machine_rows(device):
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return [row("machine", "device", detail=name or platform.machine()),
            row("machine", "torch", detail=torch.__version__),
            row("machine", "cuda", detail=str(torch.version.cuda))]


# ------------------------------------------------------------------------------------- 1. unit tests
def pytest_rows(section, name, args, env, timeout):
    """Run pytest in a subprocess; one row with the number passed and the summary line."""
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                              cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return [row(section, name, status="timeout", detail=f"over {timeout} s")]
    lines = [ln for ln in done.stdout.strip().splitlines() if ln.strip()]
    summary = lines[-1] if lines else done.stderr.strip()[-200:]
    passed = re.search(r"(\d+) passed", summary)
    status = "ok" if done.returncode == 0 else f"failed (exit {done.returncode})"
    return [row(section, name, int(passed.group(1)) if passed else 0, "tests passed", status=status,
                detail=f"{summary} in {time.perf_counter() - start:.0f} s")]


def unit_rows(device, quick):
    env = {"HITCHHIKER_DEVICE": device.type, "HITCHHIKER_SCALE": "smoke"}
    marker = ["-m", "not slow"] if quick else []
    return (pytest_rows("unit", "tests/core", ["tests/core", *marker], env, 240)
            + pytest_rows("unit", "cuda-only tests", ["tests", "-k", "cuda", "--ignore=tests/browser"],
                          env, 120))


# ---------------------------------------------------------------------------------------- 2. timing
def gsm_bytes(batch, rate):
    k = math.floor(rate + 4 * math.sqrt(rate) + 5)
    return 48 * batch * k  # float64 logits, Gumbel noise, softmax and what backward keeps


def timing_rows(device, batch, rates, temperatures, repeats, max_gib):
    rows = []
    for rate in rates:
        for tau in temperatures:
            lam = torch.full((batch,), rate, device=device, requires_grad=True)
            calls = {}
            for method in TIMED_METHODS:
                if method == POISSON:
                    target = lam.detach()
                    calls[method] = lambda target=target: torch.poisson(target)
                elif method == "gsm" and gsm_bytes(batch, rate) > max_gib * 2**30:
                    rows.append(row("timing", "rsample+backward", method=method, rate=rate,
                                    temperature=tau, batch=batch, status="skipped",
                                    detail=f"needs ~{gsm_bytes(batch, rate) / 2**30:.0f} GiB"))
                else:
                    def call(method=method):
                        lam.grad = None
                        hh.relaxed_sample(method, lam, tau).sum().backward()
                    calls[method] = call
            results = {}
            for method, call in calls.items():  # warm-up and peak memory, one call each
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
                call()
                synchronize(device)
                peak = (torch.cuda.max_memory_allocated(device) - base) if device.type == "cuda" else math.nan
                results[method] = {"times": [], "peak": peak}
            for _ in range(repeats):  # interleaved rounds: noise hits every method alike
                for method, call in calls.items():
                    results[method]["times"].append(median_time(call, device, 1))
            floor = statistics.median(results[POISSON]["times"])
            for method, res in results.items():
                t = statistics.median(res["times"])
                rows.append(row("timing", "rsample+backward", 1e3 * t, "ms", method, rate, tau, batch,
                                detail=f"{t / floor:.2f}x torch.poisson; peak "
                                       f"{res['peak'] / 2**20:.1f} MiB"))
                rows.append(row("timing", "vs torch.poisson", t / floor, "ratio", method, rate, tau,
                                batch))
                rows.append(row("timing", "peak memory", res["peak"] / 2**20, "MiB", method, rate, tau,
                                batch))
    return rows


# ------------------------------------------------------------------------------------ 3. exactness
def exactness_rows(device, n_samples, trials, per_trial):
    from hitchhiker.book.fidelity import measure_fidelity

    rate, tau = 100.0, 0.5
    z = torch.cat([hh.relaxed_sample("eat-cubic", torch.full((n_samples // 10,), rate, device=device,
                                                             dtype=torch.float64), tau)
                   for _ in range(10)])
    centred = z - z.mean()
    var = float(centred.pow(2).mean())
    m4 = float(centred.pow(4).mean())
    se = math.sqrt(max(m4 - var**2, 0.0) / z.numel()) / rate  # SE of the sample variance, / lambda
    target = 1 - 9 * tau / 35
    ratio = var / rate
    z_score = (ratio - target) / se
    rows = [row("exactness", "eat-cubic variance/lambda", ratio, "ratio", "eat-cubic", rate, tau,
                z.numel(), "ok" if abs(z_score) < 3 else "FAILED",
                f"closed form {target:.6f}; {z_score:+.2f} SE (SE {se:.2e})")]
    w1 = {}
    for method in ("eat-cubic", "eat-sigmoid"):
        synchronize(device)
        start = time.perf_counter()
        cell = measure_fidelity(method, rate, tau, n_samples=per_trial, n_trials=trials, device=device)
        synchronize(device)
        seconds = time.perf_counter() - start
        w1[method] = cell["w1"]
        rows.append(row("exactness", "figure-1 cell W1", cell["w1"], "counts", method, rate, tau,
                        trials * per_trial, detail=f"{trials} trials x {per_trial} samples in "
                                                   f"{seconds:.2f} s"))
    rows.append(row("exactness", "figure-1 W1 sigmoid/cubic", w1["eat-sigmoid"] / w1["eat-cubic"],
                    "ratio", "", rate, tau, trials * per_trial))
    return rows


# ----------------------------------------------------------------------------------------- 4. P-VAE
def pvae_rows(device, batch, steps):
    from hitchhiker.book.pvae.model import PoissonVAE

    torch.manual_seed(0)
    x = torch.randn(batch, 256, device=device)
    per_step = {}
    rows = []
    for method, tau, n_samples in (("exact", None, 1), ("eat-cubic", 0.1, 1), ("eat-sigmoid", 0.1, 1),
                                   ("gsm", 0.1, 1), ("score", None, 8)):
        model = PoissonVAE(n_inputs=256, n_latents=512).to(device)
        optimizer = torch.optim.Adamax(model.parameters(), lr=5e-3)

        def step():
            optimizer.zero_grad(set_to_none=True)
            model.loss(x, method, tau, n_samples=n_samples, beta=1.0).sum().backward()
            optimizer.step()

        seconds = median_time(lambda: [step() for _ in range(steps)], device, 3) / steps
        per_step[method] = seconds
        rows.append(row("pvae", "training steps per second", 1 / seconds, "steps/s", method, "",
                        "" if tau is None else tau, batch,
                        detail=f"S = {n_samples}" if method == "score" else ""))
    # One step of a 16-run stack (what hitchhiker.book.run_pvae_grid trains) against 16 single runs.
    members = 16
    for method, tau in (("exact", None), ("eat-cubic", 0.1)):
        stack = PoissonVAE(n_inputs=256, n_latents=512, n_members=members).to(device)
        optimizer = torch.optim.Adamax(stack.parameters(), lr=5e-3)
        xs = torch.randn(members, batch, 256, device=device)
        temperature = None if tau is None else torch.full((members,), tau, device=device)

        def stacked_step():
            optimizer.zero_grad(set_to_none=True)
            stack.loss(xs, method, temperature, beta=1.0).sum().backward()
            optimizer.step()

        seconds = median_time(lambda: [stacked_step() for _ in range(steps)], device, 3) / steps
        rows.append(row("pvae", "stacked-run speed-up", members * per_step[method] / seconds, "x", method,
                        "", "" if tau is None else tau, batch,
                        detail=f"{members} runs in one stack against one run at a time"))
    for label, steps_per_run in (("book paper scale", PVAE_BOOK_STEPS),
                                 ("official 3000 epochs", PVAE_OFFICIAL_STEPS)):
        hours = sum(n * steps_per_run * per_step[m] for m, n in PVAE_PAPER_RUNS.items()) / 3600
        rows.append(row("pvae", f"projected grid time ({label})", hours, "GPU-hours", "", "", "", batch,
                        detail=f"{sum(PVAE_PAPER_RUNS.values())} runs x {steps_per_run} steps, "
                               "one run at a time (score timed at S = 8)"))
    return rows


# ----------------------------------------------------------------------------------------- 5. nbval
def nbval_rows(device, notebook):
    if importlib.util.find_spec("nbval") is None or importlib.util.find_spec("ipykernel") is None:
        return [row("nbval", notebook, status="skipped", detail="nbval or ipykernel not installed")]
    env = {"HITCHHIKER_DEVICE": device.type, "HITCHHIKER_SCALE": "smoke", "HITCHHIKER_PROGRESS": "0"}
    return pytest_rows("nbval", notebook, ["--nbval-lax", notebook], env, 240)


def write(rows, out: Path):
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=BOOK_CSV)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a rehearsal of the script)")
    parser.add_argument("--sections", default="unit,timing,exactness,pvae,nbval")
    parser.add_argument("--max-gib", type=float, default=40.0, help="skip GSM cells needing more")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here; refusing to write GPU numbers")
    if device.type != "cuda" and args.out.resolve() == BOOK_CSV.resolve():
        sys.exit(f"gpu_check: a {device.type} rehearsal must not write {BOOK_CSV}; pass --out")
    sections = args.sections.split(",")
    if args.quick:
        sizes = dict(batch=10_000, rates=(1.0, 100.0), temperatures=(0.1,), repeats=2,
                     exact_n=200_000, trials=4, per_trial=5_000, vae_batch=100, vae_steps=2)
    else:
        sizes = dict(batch=1_000_000, rates=(1.0, 10.0, 100.0, 1000.0), temperatures=(0.1, 0.5),
                     repeats=5, exact_n=10_000_000, trials=100, per_trial=50_000, vae_batch=1_000,
                     vae_steps=20)
    torch.manual_seed(0)
    rows = machine_rows(device)
    steps = {
        "unit": lambda: unit_rows(device, args.quick),
        "timing": lambda: timing_rows(device, sizes["batch"], sizes["rates"], sizes["temperatures"],
                                      sizes["repeats"], args.max_gib),
        "exactness": lambda: exactness_rows(device, sizes["exact_n"], sizes["trials"],
                                            sizes["per_trial"]),
        "pvae": lambda: pvae_rows(device, sizes["vae_batch"], sizes["vae_steps"]),
        "nbval": lambda: nbval_rows(device, "book/01_eat_relaxation.ipynb"),
    }
    for name in sections:
        start = time.perf_counter()
        try:
            new = steps[name]()
        except Exception as err:  # one broken section must not lose the others' numbers
            new = [row(name, "section", status="error", detail=f"{type(err).__name__}: {err}"[:300])]
        rows += new
        write(rows, args.out)  # after every section, so a timeout keeps what was measured
        for r in new:
            value = r["value"] if isinstance(r["value"], str) else f"{r['value']:.4g}"
            print(f"[{name} {time.perf_counter() - start:6.1f} s] {r['name']:<32} {r['method']:<14} "
                  f"{r['rate']!s:>6} {r['temperature']!s:>5} {value:>10} {r['unit']:<12} "
                  f"{r['status']} {r['detail']}", flush=True)
    print(f"# wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
