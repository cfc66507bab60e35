r"""The chapter's grid from the command line, on one machine or spread over many, and its results files.

On one machine (what the chapter's training cell does, e.g. in the background)::

    HITCHHIKER_SCALE=default python -m hitchhiker.book.pvae     (or: -m hitchhiker.book.pvae.train)

Spread over ``N`` machines (a job array): shard ``K`` trains only its whole ensembles (a
deterministic share, by cost) into its own checkpoints and its own results file; one ``merge``
writes the book's results files (``pvae.csv``, ``pvae_curves.csv``, ``pvae_decoders.pt``), the same
as one unsharded run::

    HITCHHIKER_SCALE=paper python -m hitchhiker.book.pvae --shard $K/$N
    HITCHHIKER_SCALE=paper python -m hitchhiker.book.pvae merge --shards $N
"""
from __future__ import annotations

import fcntl
import time
from pathlib import Path
from typing import Optional

import torch

from ..common.checkpoint import atomic_write, canonical, data_digest
from ..common.grid import load_shards, parse_shard, save_shard, shard_jobs
from ..common.results import save_results
from ..common.scale import current_scale, writes_results
from .config import relative_cost, run_label
from .model import PoissonVAE
from .train import pvae_jobs, run_pvae_config, save_decoders

__all__ = ["decoder_labels", "main", "merge_shards", "missing_runs", "pvae_experiment", "train_shard",
           "update_pvae_results", "write_pvae_results"]


def decoder_labels(config: dict) -> list[str]:
    """The runs whose decoders the chapter stores for the gradient chapter: every exact run, and the
    seed-0 annealed runs at tau 0.1 and 0.5."""
    return [run_label(r) for r in config["runs"] + config["long_runs"]
            if r["method"] == "exact" or (r["seed"] == 0 and r["temperature"] in (0.1, 0.5)
                                          and r["tau_schedule"] == "anneal")]


def write_pvae_results(rows, curves, models: dict, config: dict, directory: str | Path | None = None,
                       scale: Optional[str] = None):
    """The chapter's tables as DataFrames ``(results, curves)``; at default or paper scale also written
    to ``pvae.csv``, ``pvae_curves.csv`` and ``pvae_decoders.pt`` in ``directory`` (default: the
    results folder)."""
    import pandas as pd

    from ..common.runtime import results_dir

    results = pd.DataFrame(rows).assign(scale=scale or current_scale(), n_train=config["n_train"])
    curves = pd.DataFrame(curves)
    save_results(results.drop(columns="seconds"), "pvae", directory)
    save_results(curves, "pvae_curves", directory)
    if writes_results():
        folder = Path(directory) if directory is not None else results_dir()
        save_decoders(models, folder / "pvae_decoders.pt", decoder_labels(config))
    return results, curves


def update_pvae_results(rows, curves, models: dict, config: dict, directory: str | Path | None = None):
    """Merge newly trained runs into the stored results files: each run of ``rows`` replaces the
    stored row (and curve) of the same label, the others stay; rows come back in the grid's order,
    and the decoders of :func:`decoder_labels` among the new runs join ``pvae_decoders.pt``.
    Returns the merged ``(results, curves)``. For runs added to the grid after it was trained
    (``python -m hitchhiker.book.pvae update --part long``), without training it all again."""
    from ..common.runtime import results_dir

    if not writes_results():
        raise RuntimeError(f"update writes the stored results, not at scale {current_scale()!r}")
    folder = Path(directory) if directory is not None else results_dir()
    with open(folder / ".pvae-update.lock", "w") as lock:  # one update at a time (read-modify-write)
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _update_locked(rows, curves, models, config, folder)


def _update_locked(rows, curves, models, config, folder: Path):
    import pandas as pd

    from ..common.results import load_results

    new = pd.DataFrame(rows).drop(columns="seconds", errors="ignore").assign(
        scale=current_scale(), n_train=config["n_train"])
    labels = set(new.apply(lambda r: run_label(r.to_dict()), axis=1))
    order = {run_label(r): i for i, r in enumerate(config["runs"] + config["long_runs"])}
    unknown = labels - set(order)
    if unknown:
        raise ValueError(f"runs not in this scale's grid: {sorted(unknown)}")

    def merged(old, fresh):
        keep = old[~old.apply(lambda r: run_label(r.to_dict()) in labels, axis=1)]
        out = pd.concat([keep, fresh], ignore_index=True)
        rank = out.apply(lambda r: order.get(run_label(r.to_dict()), len(order)), axis=1)
        return out.iloc[rank.argsort(kind="stable")].reset_index(drop=True)

    results = merged(load_results("pvae", folder), new)
    curves = merged(load_results("pvae_curves", folder), pd.DataFrame(curves))
    save_results(results, "pvae", folder)
    save_results(curves, "pvae_curves", folder)
    path = folder / "pvae_decoders.pt"
    decoders = dict(torch.load(path, weights_only=True)) if path.exists() else {}
    wanted = [label for label in decoder_labels(config) if label in labels]
    decoders.update(save_decoders(models, folder / "pvae_decoders.new.pt", wanted))
    (folder / "pvae_decoders.new.pt").unlink()
    atomic_write(path, lambda file: torch.save(decoders, file))
    return results, curves


def _expected_runs(config: dict) -> dict:
    """``{run_label: steps}`` of every run the scale's grid and long runs hold."""
    out = {run_label(r): config["schedule"].steps for r in config["runs"]}
    if config["long_runs"]:
        out.update({run_label(r): config["long_schedule"].steps for r in config["long_runs"]})
    return out


def missing_runs(config: dict, directory: str | Path | None = None) -> list[str]:
    """The run labels of the scale's experiment that the stored results files lack, or hold under
    other settings (steps, batch size, training-set size or scale): what must train before the
    stored files describe ``config``. Every run when a file is missing."""
    from ..common.results import load_results
    from ..common.runtime import results_dir

    folder = Path(directory) if directory is not None else results_dir()
    expected = _expected_runs(config)
    if not all((folder / name).exists() for name in ("pvae.csv", "pvae_curves.csv", "pvae_decoders.pt")):
        return list(expected)
    stored = load_results("pvae", folder)
    ok = set()
    for row in stored.to_dict("records"):
        label = run_label(row)
        if (label in expected and int(row["steps"]) == expected[label]
                and int(row["batch_size"]) == config["batch_size"]
                and int(row["n_train"]) == config["n_train"] and row["scale"] == current_scale()):
            ok.add(label)
    decoders = torch.load(folder / "pvae_decoders.pt", weights_only=True)
    ok -= {label for label in decoder_labels(config) if label not in decoders}
    return [label for label in expected if label not in ok]


def pvae_experiment(config: dict, data, *, checkpoint_dir: str | Path | None = None, device=None,
                    directory: str | Path | None = None, log=None):
    """The chapter's experiment: ``(results, curves, decoders)`` for every run of ``config``.

    At smoke scale everything trains here (nothing is written). At default or paper scale the stored
    results files are read; the runs they lack (:func:`missing_runs`) train first (resuming their
    checkpoints in ``checkpoint_dir``) and are merged in (:func:`update_pvae_results`), so a fresh
    machine without the files trains the whole grid and one with them re-reads it in seconds.
    ``decoders`` maps the runs of :func:`decoder_labels` to their ``(n_latents, n_inputs)`` decoders.
    """
    from ..common.results import load_results
    from ..common.runtime import results_dir

    if not writes_results():
        rows, curves, models = run_pvae_config(config, data, checkpoint_dir=checkpoint_dir, device=device,
                                               log=log)
        import pandas as pd

        results = pd.DataFrame(rows).drop(columns="seconds").assign(scale=current_scale(),
                                                                    n_train=config["n_train"])
        decoders = {label: models[label].decoder.detach()[0].cpu() for label in decoder_labels(config)}
        return results, pd.DataFrame(curves), decoders
    folder = Path(directory) if directory is not None else results_dir()
    missing = missing_runs(config, folder)
    if missing:
        expected = _expected_runs(config)
        if len(missing) == len(expected):   # nothing usable stored: the whole experiment, written fresh
            rows, curves, models = run_pvae_config(config, data, checkpoint_dir=checkpoint_dir,
                                                   device=device, log=log)
            write_pvae_results(rows, curves, models, config, folder)
        else:
            rows, curves, models = run_pvae_config(config, data, checkpoint_dir=checkpoint_dir,
                                                   device=device, log=log, labels=missing)
            update_pvae_results(rows, curves, models, config, folder)
    left = missing_runs(config, folder)
    if left:
        raise RuntimeError(f"the stored P-VAE results still lack {left} after training them")
    decoders = dict(torch.load(folder / "pvae_decoders.pt", weights_only=True))
    return load_results("pvae", folder), load_results("pvae_curves", folder), decoders


def _grid_identity(config: dict) -> dict:
    return canonical({"scale": current_scale(), "config": config})


def _costs(jobs) -> list[float]:
    return [relative_cost(group) * schedule.steps for group, schedule in jobs]


def train_shard(config: dict, data, shard: tuple[int, int], shard_dir: str | Path, *,
                checkpoint_dir: str | Path | None = None, device=None, workers: Optional[int] = None,
                log=None) -> Path:
    """Train shard ``(K, N)`` of the grid and write its rows, curves and models to its own file in
    ``shard_dir``; returns the file."""
    jobs = pvae_jobs(config)
    mine = shard_jobs(_costs(jobs), shard)
    rows, curves, models = run_pvae_config(config, data, checkpoint_dir=checkpoint_dir, device=device,
                                           workers=workers, jobs=mine, log=log)
    results = {}
    for index in mine:
        labels = [run_label(r) for r in jobs[index][0]]
        results[index] = {"rows": [r for r in rows if run_label(r) in labels],
                          "curves": [c for c in curves if run_label(c) in labels],
                          "models": {label: models[label].state_dict() for label in labels}}
    return save_shard(shard_dir, "pvae", shard, _grid_identity(config), results,
                      data_digest({"train": data.train, "val": data.val}))


def merge_shards(config: dict, n_shards: int, shard_dir: str | Path, directory: str | Path | None = None):
    """Combine the ``n_shards`` shard files of the grid into the book's results files (as
    :func:`write_pvae_results` writes them after one unsharded run); returns ``(rows, curves, models)``
    in the unsharded order."""
    jobs = pvae_jobs(config)
    rows, curves, models = [], [], {}
    for result in load_shards(shard_dir, "pvae", n_shards, _grid_identity(config), len(jobs)):
        rows += result["rows"]
        curves += result["curves"]
        for label, state in result["models"].items():
            member = PoissonVAE(state["encoder"].shape[1], state["encoder"].shape[2], 1)
            member.load_state_dict(state)
            models[label] = member
    write_pvae_results(rows, curves, models, config, directory)
    return rows, curves, models


def main(argv=None):
    """``python -m hitchhiker.book.pvae.train [merge]``: train the chapter's grid at ``HITCHHIKER_SCALE``
    into its checkpoints (all of it, or one ``--shard K/N``), or ``merge`` the shards' files into the
    book's results files."""
    import argparse

    from ..common.runtime import default_device
    from .config import pvae_config
    from .data import natural_image_patches

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("command", nargs="?", default="train", choices=("train", "merge", "update"),
                        help="update: train the runs asked for and merge them into the stored results")
    parser.add_argument("--methods", nargs="*", help="train only these methods (not with --shard)")
    parser.add_argument("--part", nargs="*", choices=("main", "extra", "added", "long"),
                        help="train only these parts (not with --shard)")
    parser.add_argument("--runs", nargs="*", help="train only the ensembles holding these run labels")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the scale's)")
    parser.add_argument("--checkpoint-dir", default=None)
    parser.add_argument("--shard", default=None, help="K/N: train only shard K (0-based) of N")
    parser.add_argument("--shards", type=int, default=None, help="merge: the number of shards N")
    parser.add_argument("--shard-dir", default=None, help="the shards' results files")
    parser.add_argument("--results-dir", default="book/results", help="merge: where the results go")
    parser.add_argument("--device", default=None,
                        help="torch device (default: as the chapter, CUDA when available)")
    args = parser.parse_args(argv)
    shard = parse_shard(args.shard) if args.shard is not None else None
    if shard is not None and (args.methods or args.part):
        parser.error("--shard trains whole shards of the grid: drop --methods and --part")
    scale = current_scale()
    config = pvae_config()
    folder = args.checkpoint_dir or f"book/checkpoints/pvae-{scale}"
    shard_dir = args.shard_dir or f"{folder}/shards"
    if args.command == "merge":
        if not args.shards or args.shards < 1:
            parser.error("merge needs --shards N")
        rows, _, _ = merge_shards(config, args.shards, shard_dir, args.results_dir)
        print(f"merged {args.shards} shards: {len(rows)} runs into {args.results_dir}", flush=True)
        return
    device = args.device or default_device()
    data = natural_image_patches(config["n_train"], config["n_val"])
    start = time.perf_counter()
    if shard is not None:
        path = train_shard(config, data, shard, shard_dir, checkpoint_dir=folder, device=device,
                           workers=args.workers, log=print)
        print(f"shard {args.shard} in {time.perf_counter() - start:.0f} s: {path}", flush=True)
        return
    rows, curves, models = run_pvae_config(config, data, checkpoint_dir=folder, device=device,
                                           parts=args.part, methods=args.methods, workers=args.workers,
                                           log=print, labels=args.runs)
    if args.command == "update":
        update_pvae_results(rows, curves, models, config, args.results_dir)
    for row in rows:
        print(run_label(row), f"val NELBO {row['val_nelbo']:.2f}",
              f"localisation {row['localisation']:.3f}, {row['seconds']:.0f} s", flush=True)
    print(f"{len(rows)} runs in {time.perf_counter() - start:.0f} s", flush=True)


