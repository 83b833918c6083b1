"""The one training loop's batches: full shuffled batches per epoch, resumable at an epoch."""
from __future__ import annotations

import numpy as np
import pytest

from scan_core.method.batches import Batches


def test_every_epoch_covers_the_images_once_in_full_batches_and_ends_with_its_hook():
    index = np.arange(100, 110)  # 10 training images, batch 4: 2 full batches an epoch, 2 images left out
    ended, seen = [], []
    batches = Batches(10, 4, 3)
    assert (batches.steps_per_epoch, batches.total_steps) == (2, 6)
    for step, batch in batches(index, np.random.default_rng(0), end_of_epoch=lambda done: ended.append((done, len(seen)))):
        seen.append((step, batch))
    assert [step for step, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert ended == [(1, 2), (2, 4), (3, 6)]  # after each epoch's last step
    for epoch in range(3):
        together = np.concatenate([batch for _, batch in seen[2 * epoch:2 * epoch + 2]])
        assert len(together) == 8 and len(set(together)) == 8 and set(together) <= set(index)
    assert not all(np.array_equal(a, b) for (_, a), (_, b) in zip(seen[:2], seen[2:4]))  # reshuffled


def test_a_resumed_epoch_draws_what_the_uninterrupted_one_did():
    batches = Batches(10, 3, 2)
    rng = np.random.default_rng(7)
    whole = list(batches(np.arange(10), rng))
    rng = np.random.default_rng(7)
    first = batches(np.arange(10), rng)
    for _ in range(batches.steps_per_epoch):
        next(first)  # epoch 1 trained; the generator state is what a checkpoint would restore
    resumed = list(batches(np.arange(10), rng, first_epoch=1))
    assert [s for s, _ in resumed] == [4, 5, 6]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(resumed, whole[3:]))


def test_a_batch_larger_than_the_images_is_all_of_them_and_bad_sizes_are_refused():
    batches = Batches(5, 512, 1)
    assert [len(b) for _, b in batches(np.arange(5), np.random.default_rng(0))] == [5]
    with pytest.raises(ValueError, match="at least 1 image"):
        Batches(0, 4, 1)
    with pytest.raises(ValueError, match="must hold the 5 training images"):
        list(batches(np.arange(4), np.random.default_rng(0)))
