"""Epochs of shuffled mini-batches: the one loop SimCLR, the SCAN heads, self-labeling and refine train in.

Each epoch draws a fresh permutation of the training images from the run's generator and cuts it
into full batches (the last, partial one is dropped, so that every step sees as many images); a
resumed training starts at its checkpoint's epoch with the generator the checkpoint restored.

Loading overlaps computing (:func:`prefetched`): while a step trains on one batch, a thread reads
the next batch of the epoch from the memory-mapped image cache and copies it to the device.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")


def prefetched(items: Sequence[Item], load: Callable[[Item], Loaded]) -> Iterator[tuple[Item, Loaded]]:
    """Yield ``(item, load(item))`` for each of ``items`` in order, ``load`` of the next item running
    in a background thread while the caller works on the current one (reading from a memory map,
    decoding and copying to a GPU release the GIL). An exception in ``load`` is raised where its item
    is yielded; a caller that stops early leaves at most one load running, whose result is dropped."""
    if not items:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        upcoming: Future = pool.submit(load, items[0])
        for position, item in enumerate(items):
            current = upcoming.result()
            if position + 1 < len(items):
                upcoming = pool.submit(load, items[position + 1])
            yield item, current


@dataclass(frozen=True)
class Batches:
    """``epochs`` epochs over ``images`` training images in batches of ``batch_size`` (at most
    ``images``)."""

    images: int
    batch_size: int
    epochs: int

    def __post_init__(self) -> None:
        if self.images < 1 or self.batch_size < 1 or self.epochs < 0:
            raise ValueError(f"need at least 1 image, a batch size of at least 1 and epochs >= 0, got "
                             f"{self.images} images, batch size {self.batch_size}, {self.epochs} epochs")

    @property
    def batch(self) -> int:
        return min(self.batch_size, self.images)

    @property
    def steps_per_epoch(self) -> int:
        return self.images // self.batch

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def __call__(self, index: np.ndarray, rng: np.random.Generator, first_epoch: int = 0,
                 end_of_epoch: Callable[[int], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(step, batch)``: the step's number counted from the first epoch (1-based) and the
        images ``(batch,)`` of ``index`` ``(images,)`` it trains on, from epoch ``first_epoch`` on;
        ``end_of_epoch(epochs_done)`` is called after each epoch's last step (to save a checkpoint)."""
        for epoch, steps in self._epochs(index, rng, first_epoch):
            yield from steps
            if end_of_epoch:
                end_of_epoch(epoch + 1)

    def loaded(self, index: np.ndarray, rng: np.random.Generator, load: Callable[[np.ndarray], Loaded],
               first_epoch: int = 0, end_of_epoch: Callable[[int], None] | None = None
               ) -> Iterator[tuple[int, np.ndarray, Loaded]]:
        """As calling it, yielding ``(step, batch, load(batch))``, the next batch of the epoch loaded
        while the caller trains on this one (:func:`prefetched`); the same steps and batches."""
        for epoch, steps in self._epochs(index, rng, first_epoch):
            for (step, batch), data in prefetched(steps, lambda pair: load(pair[1])):
                yield step, batch, data
            if end_of_epoch:
                end_of_epoch(epoch + 1)

    def _epochs(self, index: np.ndarray, rng: np.random.Generator,
                first_epoch: int) -> Iterator[tuple[int, list[tuple[int, np.ndarray]]]]:
        """``(epoch, its steps)`` from ``first_epoch`` on; each epoch's permutation is drawn from
        ``rng`` when the caller is done with the epoch before (which may draw from it too)."""
        index = np.asarray(index)
        if len(index) != self.images:
            raise ValueError(f"index must hold the {self.images} training images, got {len(index)}")
        for epoch in range(first_epoch, self.epochs):
            order = rng.permutation(index)
            first_step = epoch * self.steps_per_epoch
            yield epoch, [(first_step + 1 + i, order[i * self.batch:(i + 1) * self.batch])
                          for i in range(self.steps_per_epoch)]
