"""Does ``torch.compile`` pay off for a function that draws relaxed Poisson samples and backpropagates?

For each method and batch size, the same function -- build the distribution, ``rsample``, a small
loss, ``backward`` -- is run eagerly and through ``torch.compile``, interleaved round by round in the
same process (so that machine noise hits both alike), and the script prints the median time of each
and their ratio ``compiled / eager`` (below 1: compiling helps; above 1: it hurts). The compiled
function is warmed up (compiled) before timing. It also prints the number of graphs and graph breaks
that ``torch._dynamo.explain`` reports for the function: the sampler is opaque to dynamo (a
``torch.library.custom_op`` on torch >= 2.4), so what remains is the ``backward()`` call itself
(and, for ``gsm-default-k``, reading the largest rate to choose ``n_categories``).

    python benchmarks/compile.py                  # CPU, batch 1e3, 1e4, 1e5
    python benchmarks/compile.py --device cuda --batches 1000,100000,1000000
"""
from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hitchhiker import pathwise_distribution  # noqa: E402
from hitchhiker.distributions import default_n_categories  # noqa: E402

METHODS = ("eat-cubic", "eat-sigmoid", "st-cubic", "gsm", "gsm-default-k")
#: ``gsm`` passes ``n_categories`` (the default for the rate, computed once outside the step), as
#: one should under compile; ``gsm-default-k`` lets every call derive it from the rate's largest
#: value, which is data-dependent (a graph break, and a recompile per new K).


def make_step(method: str, tau: float, rate: torch.Tensor):
    """One training-like step: sample, a loss that depends on the sample, backward."""
    kwargs = {}
    if method == "gsm":
        kwargs["n_categories"] = default_n_categories(rate)
    name = "gsm" if method.startswith("gsm") else method

    def step(rate: torch.Tensor, weight: torch.Tensor):
        z = pathwise_distribution(name, rate, tau, **kwargs).rsample()
        loss = ((z - weight) ** 2).mean()
        loss.backward()
        return loss.detach()

    return step


def graph_breaks(step, rate, weight) -> tuple[int, int]:
    """(graph count, graph-break count) that dynamo reports for ``step``."""
    import torch._dynamo

    torch._dynamo.reset()
    explanation = torch._dynamo.explain(step)(rate, weight)
    rate.grad = None
    return explanation.graph_count, explanation.graph_break_count


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, rate, weight, device) -> float:
    """Seconds of one call: process CPU time on CPU (robust to other jobs), synchronised wall on CUDA."""
    rate.grad = None
    _sync(device)
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    start = clock()
    fn(rate, weight)
    _sync(device)
    return clock() - start


def bench(method, batch, lam, tau, device, repeats, warmup=3):
    rate = torch.full((batch,), lam, device=device, requires_grad=True)
    weight = torch.full((batch,), lam, device=device)
    step = make_step(method, tau, rate)
    graphs, breaks = graph_breaks(step, rate, weight)
    torch._dynamo.reset()
    compiled = torch.compile(step)
    for _ in range(warmup):  # compile (and recompile for dynamic shapes) outside the timing
        timed(compiled, rate, weight, device)
        timed(step, rate, weight, device)
    eager_times, compiled_times = [], []
    for _ in range(repeats):
        eager_times.append(timed(step, rate, weight, device))
        compiled_times.append(timed(compiled, rate, weight, device))
    eager, comp = statistics.median(eager_times), statistics.median(compiled_times)
    return dict(method=method, batch=batch, rate=lam, temperature=tau, eager_ms=1e3 * eager,
                compiled_ms=1e3 * comp, ratio=comp / eager, graphs=graphs, graph_breaks=breaks)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1000,10000,100000")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=15, help="timed calls of each (median)")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"# torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f" ({platform.processor() or platform.machine()}, {args.threads} thread(s))"))
    print("# median time of (distribution, rsample, loss, backward); ratio = compiled / eager")
    print(f"{'method':<14s} {'batch':>8s} {'eager_ms':>10s} {'compiled_ms':>12s} {'ratio':>7s} "
          f"{'graphs':>7s} {'breaks':>7s}")
    rows = []
    for method in args.methods.split(","):
        for batch in (int(float(b)) for b in args.batches.split(",")):
            row = bench(method, batch, args.rate, args.temperature, device, args.repeats)
            rows.append(row)
            print(f"{method:<14s} {batch:>8d} {row['eager_ms']:>10.3f} {row['compiled_ms']:>12.3f} "
                  f"{row['ratio']:>7.2f} {row['graphs']:>7d} {row['graph_breaks']:>7d}", flush=True)
    return rows


if __name__ == "__main__":
    main()
