r"""Whitened natural-image patches for the Poisson VAE (the data of the paper's Figure 4, top).

The pipeline, per image: grayscale :math:`\to` whitening in the Fourier domain with the
Olshausen & Field filter :math:`\to` local contrast normalisation :math:`\to` z-scoring; then random
``16 x 16`` patches, drawn from *disjoint* image regions for training and validation.

* **Whitening** (Olshausen & Field, 1996): multiply the image's 2-D Fourier transform by

  .. math:: R(f) = f\, e^{-(f/f_0)^4}, \qquad f = \sqrt{f_x^2 + f_y^2}
            \ \text{(cycles per pixel, Nyquist = 0.5)},

  which flattens the :math:`1/f` amplitude spectrum of natural images (the factor :math:`f`) and
  rolls off the noisy corner frequencies (the quartic exponential). ``f0 = 0.5`` as in the
  Poisson VAE's code.
* **Local contrast normalisation**: :math:`x \mapsto x / \sqrt{(G_\sigma * x^2) + c}`, with a
  Gaussian window :math:`G_\sigma` and :math:`c` a small fraction of the mean local power, so that
  low- and high-contrast regions contribute patches of similar scale.
* **z-scoring**: zero mean and unit variance per image.
* **Block-wise split**: each image is tiled into ``block_size`` squares; a seeded random subset
  of the blocks (``val_fraction`` of them) is held out, and every patch lies inside one block, so
  no training patch overlaps a validation patch.

Sources: the natural photographs that scikit-image ships inside its wheel (the default; no
download), van Hateren ``.iml`` images (van Hateren & van der Schaaf, 1998) from a directory you
give, or a preprocessed patch array (``.npy``/``.npz``). :func:`download_van_hateren` fetches
``.iml`` files for users who are online (never called by the book or the tests).

Results are cached on disk (``~/.cache/hitchhiker`` unless ``cache_dir`` or the
``HITCHHIKER_CACHE`` environment variable says otherwise), so the preprocessing runs once.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch

from ..common.checkpoint import atomic_write

#: Natural photographs bundled in scikit-image's wheel (no text, logos or microscopy).
SKIMAGE_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "grass", "gravel",
                  "brick", "moon")

#: A van Hateren ``.iml`` file: raw big-endian uint16, 1024 rows x 1536 columns.
VAN_HATEREN_SHAPE = (1024, 1536)

#: Bumped whenever the preprocessing changes, so that stale caches are not reused.
PIPELINE_VERSION = 1


def default_cache_dir() -> Path:
    """``$HITCHHIKER_CACHE`` if set, else ``~/.cache/hitchhiker``."""
    env = os.environ.get("HITCHHIKER_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hitchhiker"


# ----------------------------------------------------------------------------- preprocessing
def olshausen_field_filter(shape: tuple[int, int], f0: float = 0.5) -> np.ndarray:
    r"""The whitening filter :math:`R(f) = f\,e^{-(f/f_0)^4}` on the FFT grid of ``shape``.

    Frequencies are in cycles per pixel (``numpy.fft.fftfreq``), so :math:`R(0) = 0` removes the
    mean and :math:`|f| \le \sqrt{2}/2`.
    """
    if f0 <= 0:
        raise ValueError(f"f0 must be > 0, got {f0}")
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    f = np.sqrt(fx ** 2 + fy ** 2)
    return f * np.exp(-((f / f0) ** 4))


def whiten(image: np.ndarray, f0: float = 0.5) -> np.ndarray:
    """Filter ``image`` (2-D) with :func:`olshausen_field_filter` in the Fourier domain."""
    image = _check_image(image, "image")
    spectrum = np.fft.fft2(image - image.mean())
    return np.real(np.fft.ifft2(spectrum * olshausen_field_filter(image.shape, f0)))


def local_contrast_normalize(image: np.ndarray, sigma: float = 8.0, floor: float = 0.1) -> np.ndarray:
    r""":math:`x / \sqrt{G_\sigma * x^2 + c}` with :math:`c` = ``floor`` times the mean of
    :math:`G_\sigma * x^2` (keeps flat regions from being blown up to unit contrast)."""
    from scipy.ndimage import gaussian_filter

    image = _check_image(image, "image")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    power = gaussian_filter(image ** 2, sigma=sigma, mode="reflect")
    return image / np.sqrt(power + floor * power.mean() + 1e-12)


def zscore(image: np.ndarray) -> np.ndarray:
    """Zero mean, unit standard deviation (a constant image raises ``ValueError``)."""
    std = float(image.std())
    if not np.isfinite(std) or std == 0:
        raise ValueError("cannot z-score a constant (or non-finite) image")
    return (image - image.mean()) / std


def preprocess_image(image: np.ndarray, f0: float = 0.5, lcn_sigma: float = 8.0) -> np.ndarray:
    """Whiten, contrast-normalise and z-score one grayscale image (float64 in, float64 out)."""
    return zscore(local_contrast_normalize(whiten(image, f0), sigma=lcn_sigma))


def _check_image(image, name: str) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 2:
        raise ValueError(f"{name} must be a 2-D grayscale image, got shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{name} contains NaN or inf")
    return image


# ----------------------------------------------------------------------------- image sources
def skimage_images(names: Sequence[str] = SKIMAGE_IMAGES) -> list[np.ndarray]:
    """The named ``skimage.data`` photographs as float grayscale arrays in [0, 1]."""
    try:
        import skimage.data
        from skimage.color import rgb2gray
    except ImportError as err:  # pragma: no cover - scikit-image is a declared dependency
        raise ImportError("the default image source needs scikit-image: "
                          "pip install 'poisson-hitchhiker[data]'") from err
    images = []
    for name in names:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            raise ValueError(f"names: skimage.data has no image {name!r}")
        image = np.asarray(loader())
        if image.ndim == 3:
            image = rgb2gray(image[..., :3])
        image = image.astype(np.float64)
        images.append(image / 255.0 if image.max() > 1 else image)
    return images


def read_van_hateren_iml(path: str | Path, shape: tuple[int, int] = VAN_HATEREN_SHAPE) -> np.ndarray:
    """Read one van Hateren ``.iml`` image (raw big-endian uint16) as a float64 array.

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the path when the
    file's size does not match ``shape`` (a truncated or wrong file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no van Hateren image at {path}")
    expected = shape[0] * shape[1] * 2
    size = path.stat().st_size
    if size != expected:
        raise ValueError(f"{path} is not a van Hateren .iml image: {size} bytes, expected {expected} "
                         f"(raw big-endian uint16, {shape[0]} x {shape[1]}); the file may be "
                         "truncated or corrupt")
    return np.fromfile(path, dtype=">u2").reshape(shape).astype(np.float64)


def van_hateren_images(directory: str | Path, limit: Optional[int] = None) -> list[np.ndarray]:
    """All ``*.iml`` images in ``directory`` (sorted by name; at most ``limit``), log-transformed.

    The log of the (positive) intensities, as is usual for van Hateren images, compresses the
    sky-to-shadow dynamic range before whitening.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no directory of van Hateren images at {directory}")
    files = sorted(directory.glob("*.iml"))
    if not files:
        raise FileNotFoundError(f"no *.iml files in {directory}")
    files = files[:limit] if limit else files
    return [np.log1p(read_van_hateren_iml(f)) for f in files]


def download_van_hateren(urls: str | Iterable[str], directory: str | Path,
                         timeout: float = 60.0) -> list[Path]:
    """Download van Hateren ``.iml`` files (for online users; the book never calls this).

    Args:
        urls: one URL or several, each pointing to a single ``.iml`` file (e.g. a mirror of the
            van Hateren natural image database).
        directory: where to put them; files already there with the right size are skipped.

    Every downloaded file is checked with :func:`read_van_hateren_iml`; a bad one is removed and
    raises ``ValueError`` naming the URL.
    """
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    urls = [urls] if isinstance(urls, str) else list(urls)
    paths = []
    for url in urls:
        target = directory / Path(url.split("?")[0]).name
        if target.suffix.lower() != ".iml":
            raise ValueError(f"urls: {url!r} does not name an .iml file")
        size = VAN_HATEREN_SHAPE[0] * VAN_HATEREN_SHAPE[1] * 2
        if not (target.is_file() and target.stat().st_size == size):
            partial = target.with_suffix(".part")
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            partial.replace(target)
        try:
            read_van_hateren_iml(target)
        except ValueError as err:
            target.unlink(missing_ok=True)
            raise ValueError(f"download from {url} is not a valid .iml image: {err}") from err
        paths.append(target)
    return paths


def load_patch_array(path: str | Path, patch_size: int = 16) -> np.ndarray:
    """Preprocessed patches from ``.npy`` or ``.npz`` (first array, or the one named ``patches``),
    shape ``(n, patch_size**2)`` or ``(n, patch_size, patch_size)``; returned as ``(n, patch_size**2)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no patch array at {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if not loaded.files:
                    raise ValueError("empty archive")
                array = loaded["patches"] if "patches" in loaded.files else loaded[loaded.files[0]]
        else:
            array = loaded
    except Exception as err:  # OSError, ValueError, EOFError, zipfile.BadZipFile, ...
        raise ValueError(f"could not read a patch array from {path}: {err}") from err
    array = np.asarray(array, dtype=np.float64)
    d = patch_size * patch_size
    if array.ndim == 3 and array.shape[1:] == (patch_size, patch_size):
        array = array.reshape(len(array), d)
    if array.ndim != 2 or array.shape[1] != d:
        raise ValueError(f"{path}: expected patches of shape (n, {d}) or (n, {patch_size}, "
                         f"{patch_size}), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{path}: the patch array contains NaN or inf")
    return array


# ----------------------------------------------------------------------------- patches
def _split_blocks(images, block_size: int, val_fraction: float, rng: np.random.Generator):
    """Per split, the list of (image index, top, left) of every block in it."""
    blocks = [(i, top, left) for i, image in enumerate(images)
              for top in range(0, image.shape[0] - block_size + 1, block_size)
              for left in range(0, image.shape[1] - block_size + 1, block_size)]
    if len(blocks) < 2:
        raise ValueError(f"block_size={block_size}: the images hold fewer than two blocks")
    order = rng.permutation(len(blocks))
    n_val = min(len(blocks) - 1, max(1, int(round(val_fraction * len(blocks)))))
    val = [blocks[k] for k in sorted(order[:n_val])]
    train = [blocks[k] for k in sorted(order[n_val:])]
    return train, val


def _draw_patches(images, blocks, n: int, patch_size: int, block_size: int,
                  rng: np.random.Generator) -> np.ndarray:
    out = np.empty((n, patch_size * patch_size), dtype=np.float32)
    which = rng.integers(len(blocks), size=n)
    offsets = rng.integers(block_size - patch_size + 1, size=(n, 2))
    for row, (b, (dy, dx)) in enumerate(zip(which, offsets)):
        i, top, left = blocks[b]
        out[row] = images[i][top + dy:top + dy + patch_size, left + dx:left + dx + patch_size].ravel()
    return out


def extract_patches(images: Sequence[np.ndarray], n_train: int, n_val: int, patch_size: int = 16,
                    block_size: int = 64, val_fraction: float = 0.2, seed: int = 0):
    """Random ``patch_size``-square patches from preprocessed ``images``, split block-wise.

    Returns ``(train, val, split)``: float32 arrays of shape ``(n, patch_size**2)`` and the block
    lists ``{"train": [(image, top, left), ...], "val": [...]}`` (no block is in both).
    """
    for name, value in (("n_train", n_train), ("n_val", n_val)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if block_size < patch_size:
        raise ValueError(f"block_size={block_size} must be >= patch_size={patch_size}")
    rng = np.random.default_rng(seed)
    train_blocks, val_blocks = _split_blocks(images, block_size, val_fraction, rng)
    train = _draw_patches(images, train_blocks, int(n_train), patch_size, block_size, rng)
    val = _draw_patches(images, val_blocks, int(n_val), patch_size, block_size, rng)
    return train, val, {"train": train_blocks, "val": val_blocks}


@dataclass
class PatchData:
    """Training and validation patches (float32 tensors of shape ``(n, patch_size**2)``)."""

    train: torch.Tensor
    val: torch.Tensor
    source: str
    patch_size: int

    def __repr__(self):
        return (f"PatchData(train={tuple(self.train.shape)}, val={tuple(self.val.shape)}, "
                f"source={self.source!r})")


def source_fingerprint(path: Path) -> list:
    """What the cache key knows of a source on disk: for a file, its sha256; for a directory, the
    name, size and modification time (ns) of every file in it. Images replaced in place (same
    directory, new content) give a new key; the directory's own modification time is not used."""
    if path.is_file():
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                digest.update(chunk)
        return [path.name, digest.hexdigest()]
    if path.is_dir():
        files = [f for f in sorted(path.iterdir()) if f.is_file()]
        return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    return []


def natural_image_patches(n_train: int, n_val: int, *, source: str = "skimage",
                          path: str | Path | None = None, patch_size: int = 16,
                          block_size: int = 64, val_fraction: float = 0.2, f0: float = 0.5,
                          lcn_sigma: float = 8.0, images: Sequence[str] = SKIMAGE_IMAGES,
                          seed: int = 0, cache_dir: str | Path | None = None,
                          use_cache: bool = True) -> PatchData:
    """Whitened, contrast-normalised, z-scored natural-image patches with a block-wise split.

    Args:
        source: ``"skimage"`` (photographs bundled with scikit-image, no download),
            ``"van_hateren"`` (``path`` = a directory of ``.iml`` files) or ``"array"``
            (``path`` = a ``.npy``/``.npz`` of already preprocessed patches; the last
            ``n_val`` rows are validation, the ``n_train`` rows before them training, so the two
            are disjoint contiguous blocks of the array).
        cache_dir: where the result is stored after the first call (see :func:`default_cache_dir`).

    >>> data = natural_image_patches(1000, 200)          # doctest: +SKIP
    >>> data.train.shape, data.val.shape                 # doctest: +SKIP
    (torch.Size([1000, 256]), torch.Size([200, 256]))
    """
    if source not in ("skimage", "van_hateren", "array"):
        raise ValueError(f"source={source!r} is not one of ('skimage', 'van_hateren', 'array')")
    if source != "skimage" and path is None:
        raise ValueError(f"source={source!r} needs a path")
    for name, value in (("n_train", n_train), ("n_val", n_val)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")

    key = {"version": PIPELINE_VERSION, "source": source, "n_train": int(n_train),
           "n_val": int(n_val), "patch_size": patch_size, "block_size": block_size,
           "val_fraction": val_fraction, "f0": f0, "lcn_sigma": lcn_sigma, "seed": seed}
    if source == "skimage":
        key["images"] = list(images)
    else:
        p = Path(path).expanduser().resolve()
        key["path"] = str(p)
        key["files"] = source_fingerprint(p)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache_file = Path(cache_dir or default_cache_dir()).expanduser() / f"patches-{source}-{digest}.npz"
    if use_cache and cache_file.is_file():
        try:
            with np.load(cache_file) as cached:
                return PatchData(torch.from_numpy(cached["train"]), torch.from_numpy(cached["val"]),
                                 source, patch_size)
        except Exception:  # a damaged cache file is rebuilt, not trusted
            cache_file.unlink(missing_ok=True)

    if source == "array":
        array = load_patch_array(path, patch_size)
        if len(array) < n_train + n_val:
            raise ValueError(f"{path} holds {len(array)} patches, fewer than n_train + n_val = "
                             f"{n_train + n_val}")
        val = array[len(array) - n_val:]
        train = array[len(array) - n_val - n_train:len(array) - n_val]
        train, val = train.astype(np.float32), val.astype(np.float32)
    else:
        raw = skimage_images(images) if source == "skimage" else van_hateren_images(path)
        prepared = [preprocess_image(image, f0=f0, lcn_sigma=lcn_sigma) for image in raw]
        train, val, _ = extract_patches(prepared, n_train, n_val, patch_size, block_size,
                                        val_fraction, seed)
    if use_cache:
        # a unique temporary file, renamed into place: two processes building the same cache do not
        # collide, and a kill during the write leaves no half-written cache
        atomic_write(cache_file, lambda file: np.savez(file, train=train, val=val))
    return PatchData(torch.from_numpy(train), torch.from_numpy(val), source, patch_size)
