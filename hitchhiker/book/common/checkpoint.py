r"""Checkpoint files that are never silently discarded, trusted or run: identity, digests, atomic writes.

A checkpoint is a plain :func:`torch.save` file holding only tensors, dicts, lists, numbers and
strings, so it loads with ``torch.load(weights_only=True)`` (a crafted file cannot run code). Its
``identity`` is the JSON of every setting that changes the run; ``data`` holds a sha256 of every
tensor the run reads (train and validation, every byte); ``digest`` is a sha256 over the whole
content, so a truncated, zero-length or bit-flipped file is refused by name, as is a file with
non-finite weights or an identity that differs from the one asked for. Every write goes to a unique
temporary file in the target's directory and is renamed into place (:func:`atomic_save`): a kill
during a write leaves the previous file whole, and two writers do not collide.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> atomic_save({"model": {"w": torch.ones(2)}, "step": 3}, folder / "run.pt")
>>> load_checkpoint(folder / "run.pt")["step"]
3
>>> data_digest({"train": torch.zeros(2, 3)}) == data_digest({"train": torch.zeros(2, 3)})
True
>>> data_digest({"train": torch.zeros(2, 3)}) == data_digest({"train": torch.zeros(3, 2)})
False
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping

import torch

#: The layout of a trainer checkpoint; a file of another format is refused, not guessed at.
FORMAT = "hitchhiker-checkpoint-2"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: damaged, non-finite, or written for another run."""


def canonical(value) -> object:
    """``value`` as the JSON a checkpoint stores and compares (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def identity_digest(identity: Mapping) -> str:
    """sha256 (hex) of the canonical JSON of ``identity``.

    >>> identity_digest({"a": 1, "b": (2, 3)}) == identity_digest({"b": [2, 3], "a": 1})
    True
    """
    return hashlib.sha256(json.dumps(canonical(identity), sort_keys=True).encode()).hexdigest()


def _update(hasher, value) -> None:
    """Feed ``value`` (nested dicts, lists, tensors, numbers, strings) to ``hasher``, unambiguously."""
    if torch.is_tensor(value):
        value = value.detach().cpu().contiguous()
        hasher.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        if value.numel():
            hasher.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        hasher.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            _update(hasher, key)
            _update(hasher, value[key])
    elif isinstance(value, (list, tuple)):
        hasher.update(f"L{len(value)}".encode())
        for item in value:
            _update(hasher, item)
    elif value is None or isinstance(value, (bool, int, float, str)):
        hasher.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"a checkpoint stores only tensors, dicts, lists, numbers and strings, "
                        f"got {type(value).__name__}")


def content_digest(value) -> str:
    """sha256 (hex) of nested tensors, dicts, lists, numbers and strings (every byte of every tensor)."""
    hasher = hashlib.sha256()
    _update(hasher, value)
    return hasher.hexdigest()


def data_digest(data: Mapping[str, torch.Tensor]) -> dict:
    """``{name: sha256}`` of every data tensor a run reads (all rows, dtype and shape included)."""
    return {str(name): content_digest(tensor) for name, tensor in data.items()}


def atomic_write(path: str | Path, write: Callable, mode: str = "wb") -> None:
    """Call ``write(file)`` on a unique temporary file next to ``path``, then rename it into place.

    The one way the book writes a file (checkpoints, results CSVs, caches, decoders): a failure (or a
    kill) during ``write`` leaves any previous ``path`` untouched, concurrent writers each write their
    own temporary file (the last rename wins), and the file gets the permissions an ordinary
    ``open(path, "w")`` would give it. ``mode`` is ``"wb"`` (bytes) or ``"w"`` (text, ``newline=""``).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would leave the file unreadable to others
        with os.fdopen(fd, mode, **({"newline": ""} if mode == "w" else {})) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(obj, path: str | Path) -> None:
    """:func:`torch.save` ``obj`` to ``path`` through :func:`atomic_write`, with a content digest
    (``obj`` must be a dict of tensors, dicts, lists, numbers and strings)."""
    if "digest" in obj:
        raise ValueError("'digest' is reserved for the content digest")
    payload = dict(obj, digest=content_digest(obj))
    atomic_write(path, lambda file: torch.save(payload, file))


def _non_finite(value, where: str = "") -> list:
    if torch.is_tensor(value):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return [where]
        return []
    if isinstance(value, Mapping):
        return [w for key, v in value.items()
                for w in _non_finite(v, f"{where}.{key}" if where else str(key))]
    if isinstance(value, (list, tuple)):
        return [w for i, v in enumerate(value) for w in _non_finite(v, f"{where}[{i}]")]
    if isinstance(value, float) and not math.isfinite(value):
        return [where]
    return []


def load_checkpoint(path: str | Path, map_location="cpu", finite: tuple = ("model", "optimizer")) -> dict:
    """Load a file written by :func:`atomic_save`, refusing (with :class:`CheckpointError` naming the
    file) anything that is not exactly what was written: unreadable, truncated or empty files, a
    content digest that does not match, non-finite values under the keys ``finite``. Loads with
    ``weights_only=True``: a file that would need to run code to unpickle is refused too."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): delete it to train anew")
    try:
        saved = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means the same: not usable
        raise CheckpointError(f"checkpoint {path} is damaged or not a plain checkpoint (loading it with "
                              f"weights_only=True failed: {type(error).__name__}: {error})") from error
    if not isinstance(saved, dict) or "digest" not in saved:
        raise CheckpointError(f"checkpoint {path} has no content digest: not written by atomic_save")
    digest = saved.pop("digest")
    try:
        actual = content_digest(saved)
    except TypeError as error:
        raise CheckpointError(f"checkpoint {path}: {error}") from error
    if digest != actual:
        raise CheckpointError(f"checkpoint {path} is damaged: its content digest does not match")
    bad = [w for key in finite if key in saved for w in _non_finite(saved[key], key)]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds non-finite values in {bad[:5]}")
    return saved


def differences(stored: Mapping, wanted: Mapping, prefix: str = "") -> list[str]:
    """The keys (dotted) at which two identities differ, e.g. ``['schedule.lr', 'data.val']``."""
    out = []
    for key in sorted(set(stored) | set(wanted)):
        name = f"{prefix}{key}"
        a, b = stored.get(key, "<missing>"), wanted.get(key, "<missing>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += differences(a, b, name + ".")
        elif a != b:
            out.append(name)
    return out
