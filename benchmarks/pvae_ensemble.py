"""Does training a grid of Poisson VAE runs as one stacked model pay off?

For each method, ``E`` runs are advanced by one optimiser step (loss, backward, Adamax) in two ways,
interleaved round by round in the same process so that machine noise hits both alike:

* ``separate``: ``E`` one-member :class:`~hitchhiker.book.vae.PoissonVAE` models, one after another;
* ``stacked``: one ``E``-member model (batched matrix products, one optimiser).

It prints the median time to advance all ``E`` runs by one step each way, the steps per second of
one run trained alone and of the stack (each stack step advances ``E`` runs), and their ratio
``separate / stacked`` (above 1: stacking helps).

    python benchmarks/pvae_ensemble.py                       # CPU, E = 4, batch 250
    python benchmarks/pvae_ensemble.py --device cuda --members 16 --batch 1000
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hitchhiker.book.pvae.model import PoissonVAE  # noqa: E402

METHODS = (("exact", None, 1), ("eat-cubic", 0.1, 1), ("eat-sigmoid", 0.1, 1), ("gsm", 0.1, 1),
           ("score", None, 2))


def make_step(models, method, tau, n_samples, x):
    optimizers = [torch.optim.Adamax(m.parameters(), lr=5e-3) for m in models]

    def step():
        for model, opt, xb in zip(models, optimizers, x):
            temperature = None if tau is None else torch.full((model.n_members,), tau, device=xb.device)
            loss = model.loss(xb, method, temperature, n_samples=n_samples).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return step


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--methods", nargs="*", default=[m for m, _, _ in METHODS])
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    E = args.members
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, E = {E} runs, "
          f"batch {args.batch}, 512 latents, 256 pixels; median over {args.rounds} rounds")
    print(f"{'method':12s} {'separate s':>11s} {'stacked s':>10s} {'one run steps/s':>16s} "
          f"{'stack steps/s':>14s} {'speed-up':>9s}")
    for method, tau, n_samples in METHODS:
        if method not in args.methods:
            continue
        torch.manual_seed(0)
        x = torch.randn(E, args.batch, 256, device=device)
        separate = make_step([PoissonVAE(n_members=1, seeds=[e]).to(device) for e in range(E)],
                             method, tau, n_samples, [x[e] for e in range(E)])
        stacked = make_step([PoissonVAE(n_members=E, seeds=list(range(E))).to(device)],
                            method, tau, n_samples, [x])
        separate(), stacked()                                             # warm-up
        times = {"separate": [], "stacked": []}
        for _ in range(args.rounds):
            times["separate"].append(timed(separate, device))
            times["stacked"].append(timed(stacked, device))
        a, b = statistics.median(times["separate"]), statistics.median(times["stacked"])
        # a: E one-member steps in a row; b: one step of the E-member stack (E run-steps)
        print(f"{method:12s} {a:11.4f} {b:10.4f} {E / a:16.2f} {1 / b:14.2f} {a / b:9.2f}")


if __name__ == "__main__":
    main()
