r"""The decoders of the gradient study: the trained P-VAE decoder (the main setup) and random atoms.

The main setup uses the longest-trained exact-gradient P-VAE decoder of the P-VAE chapter (whose
dictionary is localised), read from ``book/results/pvae_decoders.pt``, found from this package's
location, not the working directory; random unit atoms are a sensitivity case.

>>> phi = random_unit_atoms(16, 40, seed=3)
>>> tuple(phi.shape), round(float(phi.norm(dim=0).max()), 6)
((16, 40), 1.0)
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..common.runtime import results_dir

#: Name of the random-atom decoder of the natural-patch setup (a sensitivity case).
RANDOM_ATOMS = "random-unit-atoms"
#: Label of the main setup's decoder in :func:`main_setup_decoder`'s file.
MAIN_DECODER_LABEL = "exact-long-seed0"
#: Name of the main setup's decoder (the ``decoder`` column).
MAIN_DECODER = f"pvae-{MAIN_DECODER_LABEL}"


def random_unit_atoms(n_pixels: int = 256, n_latents: int = 512, seed: int = 0,
                      dtype=torch.float64, device=None) -> torch.Tensor:
    r"""A decoder of ``n_latents`` unit-norm random atoms: Gaussian columns divided by their norms.

    Returns ``phi`` of shape ``(n_pixels, n_latents)``, seeded by ``seed`` (drawn in float64 on the
    CPU, so the same on every machine, then moved to ``dtype`` and ``device``).
    """
    for name, value in (("n_pixels", n_pixels), ("n_latents", n_latents)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    generator = torch.Generator().manual_seed(int(seed))
    phi = torch.randn(n_pixels, n_latents, generator=generator, dtype=torch.float64)
    return (phi / phi.norm(dim=0, keepdim=True)).to(dtype=dtype, device=device)


def decoder_path(path=None) -> Path:
    r"""Where :func:`main_setup_decoder` reads the trained decoders: ``path`` when given, else
    ``pvae_decoders.pt`` in :func:`~hitchhiker.book.common.runtime.results_dir` (the checkout's
    ``book/results``, found from the package, not the working directory). The file need not exist
    (:func:`main_setup_decoder` says so).
    """
    return Path(path) if path is not None else results_dir() / "pvae_decoders.pt"


def main_setup_decoder(path=None, label: str = MAIN_DECODER_LABEL, n_pixels: int = 256,
                       n_latents: int = 512, seed: int = 0, dtype=torch.float64, device=None,
                       use_trained: bool = True):
    r"""The decoder of the natural-patch setup and its name: ``(phi, name)``, ``phi`` ``(M, K)``.

    The trained exact-gradient P-VAE decoder (by default the chapter's longest-trained exact model,
    whose dictionary is localised), read from :func:`decoder_path` (a dict label ->
    ``(n_latents, n_pixels)`` tensor, loaded with ``weights_only=True``): ``phi`` is the transpose of
    ``dict[label]`` and the name is ``"pvae-<label>"`` (:data:`MAIN_DECODER` by default). A missing
    file raises ``FileNotFoundError`` naming the path (never a silent switch to other atoms); a file
    that lacks ``label`` or holds a tensor of the wrong shape raises ``ValueError``.
    ``use_trained=False`` asks for :func:`random_unit_atoms` and the name :data:`RANDOM_ATOMS` instead.
    """
    if not use_trained:
        return random_unit_atoms(n_pixels, n_latents, seed, dtype, device), RANDOM_ATOMS
    path = decoder_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"the trained decoders file {path} does not exist: run the P-VAE chapter "
                                "(06) at default scale, pass path=..., or use_trained=False for random atoms")
    decoders = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(decoders, dict) or label not in decoders:
        found = sorted(decoders) if isinstance(decoders, dict) else type(decoders).__name__
        raise ValueError(f"{path} has no decoder labelled {label!r} (it has {found})")
    weight = torch.as_tensor(decoders[label])
    if weight.shape != (n_latents, n_pixels):
        raise ValueError(f"decoder {label!r} in {path} has shape {tuple(weight.shape)}, expected "
                         f"(n_latents, n_pixels) = {(n_latents, n_pixels)}")
    if not bool(torch.isfinite(weight).all()):
        raise ValueError(f"decoder {label!r} in {path} is not finite")
    return weight.T.contiguous().to(dtype=dtype, device=device), f"pvae-{label}"
