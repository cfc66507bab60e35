"""Minibatches in an order the experiment chooses, reproducible exactly and resumable at any step.

Three orders, one per way the book's experiments shuffle:

* :class:`RandpermOrder`: a fresh ``torch.randperm`` from the global generator at each epoch (after
  the trainer's ``seed``): the order of a plain model's ``fit``.
* :class:`GeneratorOrder`: every member shuffles its own items, all from one generator seeded once:
  ``argsort(rand(members, items))`` per epoch (the POGLM stack's).
* :class:`SeedEpochOrder`: a function of (member seed, epoch) only, so that runs of one seed see the
  same items in the same order in any stack (the P-VAE's; gaps between methods are paired).

>>> data = torch.arange(10.0)[:, None]
>>> batches = Minibatches(data, 4, SeedEpochOrder(10, seeds=[0]), whole_batches=True)
>>> batches.steps_per_epoch
2
>>> batch, n_items = batches(0)
>>> tuple(batch.shape), n_items
((1, 4, 1), 4)
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch


class RandpermOrder:
    """``torch.randperm(n)`` from the global generator, one per epoch."""

    def __init__(self, n: int, device=None):
        self.n, self.device = int(n), device

    def __call__(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.n, device=self.device)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class GeneratorOrder:
    """Each of ``n_members`` members shuffles its ``n`` items, all from one generator seeded with
    ``seed``: ``argsort(rand(n_members, n))`` per epoch, in epoch order."""

    def __init__(self, n_members: int, n: int, seed: int):
        self.n_members, self.n = int(n_members), int(n)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, epoch: int) -> torch.Tensor:
        return torch.argsort(torch.rand(self.n_members, self.n, generator=self.generator), dim=1)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class SeedEpochOrder:
    """Member ``e``'s order at an epoch is ``randperm(n)`` from a generator seeded with
    ``1_000_003 * seeds[e] + epoch``: a function of (seed, epoch) only."""

    def __init__(self, n: int, seeds: Sequence[int], device=None):
        self.n, self.seeds, self.device = int(n), [int(s) for s in seeds], device

    def __call__(self, epoch: int) -> torch.Tensor:
        orders = {s: torch.randperm(self.n, generator=torch.Generator().manual_seed(1_000_003 * s + epoch))
                  .to(self.device) for s in set(self.seeds)}
        return torch.stack([orders[s] for s in self.seeds])

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class Minibatches:
    """Step ``s``'s minibatch of ``data`` in ``order``: ``batches(s) -> (batch, n_items)``.

    Args:
        data: ``(n, ...)`` items shared by every member, or with ``per_member`` one slice per member,
            ``(E, n, ...)``.
        batch_size: items per minibatch (the last of an epoch may be smaller unless ``whole_batches``).
        order: called with the epoch, returns that epoch's order: ``(n,)`` for a plain model,
            ``(E, n)`` for one order per member; with ``state_dict``/``load_state_dict`` when it keeps
            state (a generator) that a resumed run must continue from.
        whole_batches: drop the last, incomplete minibatch of each epoch.

    A 1-D order gives ``data[order[slice]]``; a 2-D order gives ``(E, batch, ...)``, from the shared
    data or (``per_member``) each member from its own slice.
    """

    def __init__(self, data: torch.Tensor, batch_size: int, order, *, per_member: bool = False,
                 whole_batches: bool = False):
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.data, self.batch_size, self.order = data, int(batch_size), order
        self.per_member, self.whole_batches = per_member, whole_batches
        self.n = int(data.shape[1] if per_member else data.shape[0])
        if self.n < (self.batch_size if whole_batches else 1):
            raise ValueError(f"{self.n} items cannot fill a minibatch of {self.batch_size}")
        self.steps_per_epoch = self.n // self.batch_size if whole_batches else -(-self.n // self.batch_size)
        self._epoch: Optional[int] = None
        self._order: Optional[torch.Tensor] = None

    def __call__(self, step: int):
        epoch, position = divmod(int(step), self.steps_per_epoch)
        if epoch != self._epoch:
            self._order, self._epoch = self.order(epoch), epoch
        index = self._order[..., position * self.batch_size:(position + 1) * self.batch_size]
        if self.per_member:
            members = torch.arange(self.data.shape[0], device=index.device)[:, None]
            return self.data[members, index], int(index.shape[-1])
        return self.data[index], int(index.shape[-1])

    def state_dict(self) -> dict:
        """The current epoch, its order and the order's own state (what a resumed run continues from)."""
        state = {"epoch": -1 if self._epoch is None else self._epoch, "source": self.order.state_dict()}
        if self._order is not None:
            state["order"] = self._order
        return state

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state["source"])
        if state["epoch"] >= 0:
            self._epoch, self._order = int(state["epoch"]), state["order"]
