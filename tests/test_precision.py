"""The GPU box's two speed-ups, run on the CPU: mixed precision (bfloat16, and float16 with a loss
scale) trains and embeds as float32 does within the 16-bit float's rounding, and loading overlaps
computing (the next batch read while a step trains) without changing a single batch."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from scan_core.config import AugmentConfig, PretextConfig, ScanConfig
from scan_core.method.backbones import SmallCNN
from scan_core.method.batches import Batches, prefetched
from scan_core.method.clustering import ClusterHeads, train_scan
from scan_core.method.precision import Amp, resolve_precision
from scan_core.method.pretext import SimCLRModel, embed, train_simclr

CPU = torch.device("cpu")


@pytest.mark.parametrize("name, device, bf16, expected", [
    ("auto", "cpu", True, "float32"), ("auto", "cuda", True, "bfloat16"), ("auto", "cuda", False, "float16"),
    ("float16", "cpu", True, "float16"), ("float32", "cuda", True, "float32"), ("bfloat16", "cpu", False, "bfloat16"),
])
def test_auto_precision_is_16_bit_on_a_gpu_only(name, device, bf16, expected):
    assert resolve_precision(name, device, bf16) == expected


def test_an_unknown_precision_is_refused_by_name():
    with pytest.raises(ValueError, match="precision must be one of auto, float32, bfloat16, float16; got 'half'"):
        resolve_precision("half", "cpu")
    with pytest.raises(ValueError, match="resolved"):
        Amp("auto", CPU)


def simclr_training(precision: str, digits) -> tuple[list[float], torch.Tensor]:
    """The losses of four SimCLR steps of a small CNN from seed 0 on 128 digits, and how far they
    moved its weights (every floating-point tensor of its state, flattened into one vector)."""
    torch.manual_seed(0)
    model = SimCLRModel(SmallCNN(1, width=8), out_dim=16)
    flat = lambda: torch.cat([v.detach().flatten().clone() for v in model.state_dict().values() if v.is_floating_point()])
    start, losses = flat(), []
    train_simclr(model, digits.images[:128], PretextConfig(epochs=1, batch_size=32, lr=0.1, warmup_epochs=0),
                 AugmentConfig(flip=False), CPU, on_step=lambda step, total, loss: losses.append(loss), seed=1,
                 precision=precision)
    assert all(v.dtype == torch.float32 for v in model.parameters())  # the weights stay float32
    return losses, flat() - start


def test_simclr_in_bfloat16_follows_float32_within_its_rounding(digits):
    full, full_update = simclr_training("float32", digits)
    half, half_update = simclr_training("bfloat16", digits)
    assert len(full) == len(half) == 4
    # the first step starts from the same weights: bfloat16 keeps 8 bits of mantissa (0.4% a product)
    assert half[0] == pytest.approx(full[0], rel=0.02)
    assert np.allclose(half, full, rtol=0.05)
    assert torch.isfinite(half_update).all()
    cosine = float(half_update @ full_update / half_update.norm() / full_update.norm())
    assert cosine > 0.99, cosine   # the four steps moved the weights the same way (measured: 0.999)
    assert float(half_update.norm() / full_update.norm()) == pytest.approx(1, abs=0.1)


def test_scan_heads_in_float16_with_a_loss_scale_train_as_float32(digits):
    features = torch.as_tensor(digits.images[:300, ..., 0].reshape(300, -1) / 16.0, dtype=torch.float32)
    distances = torch.cdist(features, features)  # brute-force neighbours: 5 nearest others
    neighbors = distances.argsort(1)[:, 1:6].numpy()
    losses, weights = {}, {}
    for precision in ("float32", "float16"):
        torch.manual_seed(0)
        heads = ClusterHeads(features.shape[1], 10, num_heads=2, hidden=32)
        losses[precision] = []
        train_scan(heads, lambda index: features[index], lambda index: features[index], neighbors,
                   ScanConfig(epochs=3, batch_size=64, lr=1e-3, snapshots=1), seed=2,
                   on_step=lambda step, total, loss, out=losses[precision]: out.append(loss), precision=precision)
        weights[precision] = heads.state_dict()
    assert losses["float16"][0] == pytest.approx(losses["float32"][0], rel=0.01)  # same weights, float16 rounding
    assert losses["float16"][-1] < losses["float16"][0]  # it learns: the loss scale let every step through
    assert np.allclose(losses["float16"], losses["float32"], rtol=0.05)
    for name, weight in weights["float32"].items():
        if weight.is_floating_point():
            assert weights["float16"][name].dtype == torch.float32 and torch.isfinite(weights["float16"][name]).all()


def test_a_float16_loss_scale_skips_a_step_whose_gradients_overflow():
    layer = torch.nn.Linear(4, 1)
    before = layer.weight.detach().clone()
    amp = Amp("float16", CPU)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    with amp.autocast():
        out = layer(torch.full((2, 4), 60000.0))   # float16's largest is 65,504: the scaled gradient is inf
    amp.step(out.float().sum() * 1e30, optimizer)
    assert torch.equal(layer.weight, before)      # skipped, and the scale halved for the next step
    assert amp.scaler.get_scale() == 2.0 ** 16 / 2


def test_embedding_in_bfloat16_gives_the_float32_features_within_its_rounding(digits):
    torch.manual_seed(0)
    network = SmallCNN(1, width=8)
    full = embed(network, digits.images[:200], CPU, batch_size=64)
    half = embed(network, digits.images[:200], CPU, batch_size=64, precision="bfloat16")
    assert half.dtype == np.float32 and half.shape == full.shape == (200, 64)
    cosine = (full * half).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert cosine.min() > 0.995


def test_loaded_batches_are_the_plain_ones_with_each_batch_loaded_and_epochs_ended_alike():
    batches = Batches(images=10, batch_size=4, epochs=3)
    plain, loaded = [], []
    for events, rng in ((plain, np.random.default_rng(5)), (loaded, np.random.default_rng(5))):
        end = lambda epochs, events=events: events.append(("end", epochs))
        if events is plain:
            for step, batch in batches(np.arange(10), rng, first_epoch=1, end_of_epoch=end):
                events.append((step, batch.tolist(), int(rng.integers(100))))  # the caller draws too
        else:
            for step, batch, data in batches.loaded(np.arange(10), rng, lambda b: b * 10, first_epoch=1,
                                                    end_of_epoch=end):
                assert data.tolist() == [10 * i for i in batch]
                events.append((step, batch.tolist(), int(rng.integers(100))))
    assert loaded == plain
    assert [event for event in plain if event[0] == "end"] == [("end", 2), ("end", 3)]
    assert [event[0] for event in plain if event[0] != "end"] == [3, 4, 5, 6]  # two steps an epoch, from epoch 1


def test_the_next_item_loads_while_the_caller_works_on_this_one():
    started = [threading.Event() for _ in range(3)]

    def load(item: int) -> int:
        started[item].set()
        return item * item

    seen = []
    for item, value in prefetched([0, 1, 2], load):
        if item + 1 < 3:  # the caller is still busy with this item while the next one loads
            assert started[item + 1].wait(timeout=10), f"item {item + 1} did not load during item {item}"
        seen.append((item, value))
    assert seen == [(0, 0), (1, 1), (2, 4)]


def test_a_failed_load_is_raised_at_its_item_and_an_early_stop_leaves_no_thread():
    def load(item: int) -> int:
        if item == 2:
            raise OSError(f"cannot read batch {item}")
        return item

    seen = []
    with pytest.raises(OSError, match="cannot read batch 2"):
        for item, _ in prefetched([0, 1, 2, 3], load):
            seen.append(item)
    assert seen == [0, 1]
    for _ in prefetched(list(range(100)), load=lambda item: item):
        break
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("prefetch")]


def test_a_cpu_is_planned_as_the_reference_cpu_and_the_resnet_pass_is_timed_per_image():
    from scan_core.config import REFERENCE_CPU
    from scan_core.engine.device import measured_hardware, reference_pass_seconds
    assert measured_hardware(CPU) is REFERENCE_CPU  # a CPU's timing swings with its load: not measured
    # per image: a batch of 8 takes 0.25-2 times as long an image as a batch of 2 (larger batches run
    # more efficiently); seconds per batch would be 4 times as long
    small, large = reference_pass_seconds(CPU, batch=2, repeats=2), reference_pass_seconds(CPU, batch=8, repeats=2)
    assert small > 0 and 0.25 < large / small < 2, (small, large)
