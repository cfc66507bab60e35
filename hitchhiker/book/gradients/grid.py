r"""The stored gradient-quality grid (``book/results/gradients.csv``), computed cell by cell with a
checkpoint, so that a long run can be stopped and resumed without losing or re-trusting work.

The grid is the paper's rates :data:`GRID_RATES` times the temperatures :data:`GRID_TEMPERATURES` for
each setup of :func:`grid_setups`:

* ``main`` -- natural patches and the trained, localised exact decoder (:data:`~.decoders.MAIN_DECODER`),
  every method including the official fixed cap and the rate-adaptive remedy;
* ``random-atoms`` -- natural patches and unit-norm random atoms (sensitivity case);
* ``model-generated`` -- data drawn from the model with the overcomplete 36x64 DCT (sensitivity case).

:func:`run_grid` appends each finished (setup, rate, temperature) cell to a partial table
``<directory>/gradients.partial.csv`` (rewritten atomically after every cell, beside a JSON file with
the grid's configuration). A later call with the same configuration computes only the missing cells;
a different configuration is refused (``ValueError`` naming the file), never silently mixed. When
every cell is done it writes ``gradients.csv`` (:func:`hitchhiker.book.save_results`, default/paper
scale only) and removes the partial files.

Run it in the background from the repository root::

    HITCHHIKER_SCALE=default nohup nice -n 10 python -m hitchhiker.book.gradients.grid book/results &
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from ..common.checkpoint import atomic_write
from ..common.results import load_results, save_results
from ..common.scale import by_scale, current_scale
from .decoders import RANDOM_ATOMS, main_setup_decoder, random_unit_atoms
from .objectives import overcomplete_dct_dictionary
from .sweep import ADAPTIVE_METHODS, FIXED_CAP_METHODS, GRADIENT_METHODS, gradient_quality_sweep

__all__ = ["GRID_RATES", "GRID_TEMPERATURES", "SMOKE_RATES", "SMOKE_TEMPERATURES", "GridSetup",
           "grid_setups", "run_grid", "grid_cells", "stored_grid", "PARTIAL_NAME"]

#: The paper's rate grid (every rate of Figure 3's appendix panels that the book stores).
GRID_RATES = (0.1, 0.3, 1.0, 3.0, 10.0, 20.0, 100.0)
#: The temperatures of the stored grid.
GRID_TEMPERATURES = (0.02, 0.05, 0.1, 0.2, 0.5)
#: The smoke-scale grid (a quick check that the code runs; its numbers are not the book's).
SMOKE_RATES = (0.1, 1.0, 20.0)
#: The smoke-scale temperatures.
SMOKE_TEMPERATURES = (0.02, 0.5)
#: Stem of the partial table and its configuration file.
PARTIAL_NAME = "gradients.partial"


@dataclasses.dataclass(frozen=True)
class GridSetup:
    """One setup of the grid: a label, the decoder ``phi`` ``(M, K)`` and its name, the data
    (``None``: drawn from the model), the number of items, the methods and the seed."""

    label: str
    phi: torch.Tensor
    decoder: str
    data: torch.Tensor | None
    n_items: int
    methods: tuple
    seed: int

    def fingerprint(self) -> dict:
        """What identifies this setup's numbers (hashes of the decoder and data, sizes, methods)."""
        def digest(t):
            if t is None:
                return None
            return hashlib.sha256(t.detach().double().cpu().numpy().tobytes()).hexdigest()
        return {"decoder": self.decoder, "phi_sha256": digest(self.phi), "data_sha256": digest(self.data),
                "n_items": self.n_items, "methods": list(self.methods), "seed": self.seed}


def grid_setups(patches: torch.Tensor | None = None, decoder_file=None) -> list:
    """The grid's setups at the current scale (see the module docstring).

    ``patches`` are the natural-patch items ``(n, 256)`` (default: the P-VAE chapter's whitened
    validation patches); ``decoder_file`` is passed to :func:`~.decoders.main_setup_decoder` (a missing
    file is an error).
    """
    if patches is None:
        from ..pvae.data import natural_image_patches
        patches = natural_image_patches(1000, 200).val
    phi_main, name = main_setup_decoder(decoder_file)
    remedy = tuple(GRADIENT_METHODS) + tuple(ADAPTIVE_METHODS)
    return [
        GridSetup("main", phi_main, name, patches, by_scale(smoke=2, default=16, paper=64),
                  remedy + tuple(FIXED_CAP_METHODS), 0),
        GridSetup("random-atoms", random_unit_atoms(), RANDOM_ATOMS, patches,
                  by_scale(smoke=2, default=8, paper=32), remedy, 1),
        GridSetup("model-generated", overcomplete_dct_dictionary(6, 8), "dct-36x64", None,
                  by_scale(smoke=4, default=32, paper=64), remedy, 2),
    ]


def grid_cells(setups, rates=GRID_RATES, temperatures=GRID_TEMPERATURES) -> list:
    """Every (setup label, rate, temperature) cell, in the order :func:`run_grid` computes them."""
    return [(s.label, float(r), float(t)) for s in setups for r in rates for t in temperatures]


def _config(setups, rates, temperatures, n_samples) -> dict:
    return {"scale": current_scale(), "rates": [float(r) for r in rates],
            "temperatures": [float(t) for t in temperatures], "n_samples": int(n_samples),
            "setups": {s.label: s.fingerprint() for s in setups}}


def _load_partial(csv_path: Path, json_path: Path, config: dict) -> pd.DataFrame | None:
    if not json_path.exists():
        if csv_path.exists():
            raise ValueError(f"the checkpoint {csv_path} has no configuration file {json_path}; remove it "
                             "to start over")
        return None
    stored = json.loads(json_path.read_text())
    if stored != config:
        raise ValueError(f"the checkpoint {csv_path} was made with another configuration "
                         f"({json_path}); remove both files to start over")
    if not csv_path.exists():          # stopped before its first cell
        return pd.DataFrame()
    frame = pd.read_csv(csv_path)
    if "grid_setup" not in frame.columns:
        raise ValueError(f"the checkpoint {csv_path} lacks the column 'grid_setup'")
    return frame


def run_grid(directory, setups=None, rates=GRID_RATES, temperatures=GRID_TEMPERATURES,
             n_samples: int = 100, deadline: float | None = None, log=print) -> pd.DataFrame:
    r"""Compute (or resume) the gradient-quality grid; return every row computed so far.

    Args:
        directory: where ``gradients.csv`` and the partial files live (usually ``book/results``).
        setups: :class:`GridSetup` list (default :func:`grid_setups`).
        deadline: a ``time.time()`` after which no new cell is started (the partial table stays
            for the next call); ``None`` for no deadline.
        log: called with one line per finished cell (its wall time).

    The returned table has a ``grid_setup`` column (the setup label). Only when every cell is done is
    ``gradients.csv`` written (at default/paper scale) and the partial files removed.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    setups = grid_setups() if setups is None else list(setups)
    labels = [s.label for s in setups]
    if len(set(labels)) != len(labels):
        raise ValueError(f"setup labels must be distinct, got {labels}")
    csv_path, json_path = directory / f"{PARTIAL_NAME}.csv", directory / f"{PARTIAL_NAME}.json"
    config = _config(setups, rates, temperatures, n_samples)
    frame = _load_partial(csv_path, json_path, config)
    if frame is None:
        atomic_write(json_path, mode="w", write=lambda f: json.dump(config, f, indent=1, sort_keys=True))
        frame = pd.DataFrame()
    done = set() if frame.empty else {(g, float(r), float(t)) for g, r, t in
                                       frame[["grid_setup", "rate", "temperature"]].itertuples(index=False)}
    parts = [frame] if not frame.empty else []
    for setup in setups:
        for rate in rates:
            for tau in temperatures:
                if (setup.label, float(rate), float(tau)) in done:
                    continue
                if deadline is not None and time.time() > deadline:
                    log(f"deadline reached: {len(done)} of {len(rates) * len(temperatures) * len(setups)} "
                        f"cells done, partial table {csv_path}")
                    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
                start = time.perf_counter()
                rows = gradient_quality_sweep(setup.phi.float(), [rate], [tau], setup.methods, n_samples,
                                              setup.n_items, seed=setup.seed, data=setup.data,
                                              decoder=setup.decoder)
                part = pd.DataFrame(rows)
                part.insert(0, "grid_setup", setup.label)
                part["seconds"] = time.perf_counter() - start
                parts.append(part)
                done.add((setup.label, float(rate), float(tau)))
                table = pd.concat(parts, ignore_index=True)
                atomic_write(csv_path, mode="w",
                             write=lambda f: table.to_csv(f, index=False, float_format="%.6g"))
                log(f"{setup.label} rate={rate:g} tau={tau:g}: {part['seconds'].iloc[0]:.1f} s "
                    f"({len(done)} cells done)")
    table = pd.concat(parts, ignore_index=True)
    if save_results(table, "gradients", directory) is not None:
        csv_path.unlink()
        json_path.unlink()
    return table


def stored_grid(directory=None, log=print) -> pd.DataFrame:
    """The grid the gradient chapter shows.

    At default/paper scale: ``<directory>/gradients.csv`` (default :func:`~hitchhiker.book.results_dir`)
    when it holds every cell of :func:`grid_setups` with the current sizes; otherwise :func:`run_grid`
    computes (or resumes) it there. At smoke scale: a small grid (:data:`SMOKE_RATES` x
    :data:`SMOKE_TEMPERATURES`, smoke sizes) in a temporary directory; nothing is written to the results.
    """
    setups = grid_setups()
    if current_scale() == "smoke":
        with tempfile.TemporaryDirectory() as scratch:
            return run_grid(scratch, setups, SMOKE_RATES, SMOKE_TEMPERATURES, log=log)
    from ..common.runtime import results_dir

    directory = Path(directory) if directory is not None else results_dir()
    path = directory / "gradients.csv"
    if path.is_file():
        table = load_results("gradients", directory)
        if "grid_setup" in table.columns:
            have = {(g, float(r), float(t)) for g, r, t in
                    table[["grid_setup", "rate", "temperature"]].itertuples(index=False)}
            sizes = table.groupby("grid_setup")["n_items"].first().to_dict()
            if (set(grid_cells(setups)) <= have
                    and all(sizes.get(s.label) == s.n_items for s in setups)):
                return table
        log(f"{path} is not the current grid: computing it (resuming any checkpoint)")
    return run_grid(directory, setups, log=log)


def main(argv=None) -> int:
    """``python -m hitchhiker.book.gradients.grid DIRECTORY [DEADLINE_UNIX_TIME]``."""
    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2:
        print(main.__doc__, file=sys.stderr)
        return 2
    deadline = float(argv[1]) if len(argv) == 2 else None
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    table = run_grid(argv[0], deadline=deadline, log=lambda line: print(line, flush=True))
    cells = 0 if table.empty else table.groupby(["grid_setup", "rate", "temperature"]).ngroups
    print(f"{cells} cells in the table; mean {table['seconds'].mean() if cells else math.nan:.1f} s per cell",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
