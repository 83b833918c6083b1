"""Epochs of shuffled mini-batches: the one loop SimCLR, the SCAN heads, self-labeling and refine train in.

Each epoch draws a fresh permutation of the training images from the run's generator and cuts it
into full batches (the last, partial one is dropped, so that every step sees as many images); a
resumed training starts at its checkpoint's epoch with the generator the checkpoint restored.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


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
        index = np.asarray(index)
        if len(index) != self.images:
            raise ValueError(f"index must hold the {self.images} training images, got {len(index)}")
        step = first_epoch * self.steps_per_epoch
        for epoch in range(first_epoch, self.epochs):
            order = rng.permutation(index)
            for start in range(0, self.steps_per_epoch * self.batch, self.batch):
                step += 1
                yield step, order[start:start + self.batch]
            if end_of_epoch:
                end_of_epoch(epoch + 1)
