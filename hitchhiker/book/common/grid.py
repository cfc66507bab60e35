"""A grid of independent jobs spread over machines: ``--shard K/N`` picks a deterministic share of
whole jobs, each shard writes its own file, and a merge puts them back in the grid's order.

Jobs go to shards greedily by cost, costliest first (ties by position), each to the least-loaded
shard so far (ties to the lowest shard): the assignment depends only on the list of costs and ``N``,
so every machine of a job array computes the same one.

>>> parse_shard("1/3")
(1, 3)
>>> assign_shards([5.0, 1.0, 1.0, 3.0], 2)
[0, 1, 1, 1]
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .checkpoint import CheckpointError, atomic_save, identity_digest, load_checkpoint


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (0 <= K < N; e.g. a SLURM array's task id and count) as ``(K, N)``."""
    try:
        k, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard must be K/N with integers 0 <= K < N, got {text!r}") from None
    if not 0 <= k < n:
        raise ValueError(f"--shard must be K/N with 0 <= K < N, got {text!r}")
    return k, n


def assign_shards(costs: Sequence[float], n_shards: int) -> list[int]:
    """The shard of each job (longest processing time first, deterministic)."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    load = [0.0] * n_shards
    shard = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        shard[i] = min(range(n_shards), key=lambda k: (load[k], k))
        load[shard[i]] += float(costs[i])
    return shard


def shard_jobs(costs: Sequence[float], shard: tuple[int, int]) -> list[int]:
    """The indices of the jobs shard ``(K, N)`` runs."""
    k, n = shard
    return [i for i, s in enumerate(assign_shards(costs, n)) if s == k]


def shard_file(folder: str | Path, name: str, shard: tuple[int, int]) -> Path:
    """``{folder}/{name}-shard{K}of{N}.pt``."""
    k, n = shard
    return Path(folder) / f"{name}-shard{k}of{n}.pt"


def save_shard(folder: str | Path, name: str, shard: tuple[int, int], grid: dict, jobs: dict,
               data: dict) -> Path:
    """Write one shard's results: ``jobs`` maps each job index it ran to its results (tensors, dicts,
    lists, numbers, strings); ``grid`` identifies the whole grid (its settings) and ``data`` is the
    digest of its data (:func:`~hitchhiker.book.common.checkpoint.data_digest`), so that shards of
    different grids or data are never merged."""
    path = shard_file(folder, name, shard)
    atomic_save({"grid": identity_digest(grid), "shard": list(shard), "data": dict(data),
                 "jobs": {str(i): value for i, value in jobs.items()}}, path)
    return path


def load_shards(folder: str | Path, name: str, n_shards: int, grid: dict, n_jobs: int) -> list:
    """Every job's results from the ``n_shards`` shard files, in job order; refuses a missing shard,
    a shard of another grid or other data, and a job missing or present twice."""
    digest = identity_digest(grid)
    found: dict = {}
    data = None
    for k in range(n_shards):
        path = shard_file(folder, name, (k, n_shards))
        if not path.is_file():
            raise FileNotFoundError(f"shard {k}/{n_shards} has no results file at {path}: run it first")
        saved = load_checkpoint(path, finite=())
        if saved["grid"] != digest or saved["shard"] != [k, n_shards]:
            raise CheckpointError(f"{path} holds a shard of another grid or split (its settings differ)")
        if data is not None and saved["data"] != data:
            raise CheckpointError(f"{path} was trained on other data than shard 0 (digests differ)")
        data = saved["data"]
        for index, value in saved["jobs"].items():
            if index in found:
                raise CheckpointError(f"job {index} is in two shards ({path})")
            found[index] = value
    missing = [i for i in range(n_jobs) if str(i) not in found]
    if missing or len(found) != n_jobs:
        raise CheckpointError(f"the shards in {folder} miss the jobs {missing} of {n_jobs}")
    return [found[str(i)] for i in range(n_jobs)]
