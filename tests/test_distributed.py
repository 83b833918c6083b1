"""Data-parallel training computes the objective of one process at the same global batch: one
process with batch 2B against two gloo ranks with B rows each, from the same initialisation, with
augmentations seeded by the step; after 5 steps the parameters agree within 1e-5."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scan_core.config import AugmentConfig, PretextConfig, ScanConfig
from scan_core.method.backbones import SmallCNN
from scan_core.method.clustering import ClusterHeads, train_scan
from scan_core.method.distributed import gather, local_rows, per_rank, world
from scan_core.method.pretext import SimCLRModel, nt_xent_loss, train_simclr

GLOBAL_BATCH = 8
STEPS = 5


def images(n=GLOBAL_BATCH * STEPS, side=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 1), dtype=np.uint8)


def simclr_parameters() -> dict:
    """Five SimCLR steps (one epoch of five global batches) of a small CNN from seed 0."""
    torch.manual_seed(0)
    model = SimCLRModel(SmallCNN(1, width=4), out_dim=16)
    config = PretextConfig(epochs=1, batch_size=GLOBAL_BATCH, lr=0.02, warmup_epochs=0)  # larger: float
    # rounding grows chaotically over the steps (one step at lr 0.5 agrees within 5e-7, five steps 1e-3;
    # five at 0.05 within 4e-5 on some CPUs; at 0.02 within 3e-7, the parameters moving 0.03)
    train_simclr(model, images(), config, AugmentConfig(), torch.device("cpu"), seed=3)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def scan_parameters() -> dict:
    """Five SCAN steps of ten heads on fixed features, each anchor paired with a mined neighbour."""
    rng = np.random.default_rng(1)
    n = 45  # 40 train anchors (five global batches of 8) and 5 held out
    features = torch.as_tensor(rng.normal(size=(n, 12)), dtype=torch.float32)
    neighbors = np.stack([rng.choice(np.delete(np.arange(n), i), 4, replace=False) for i in range(n)])
    torch.manual_seed(0)
    heads = ClusterHeads(12, 5, num_heads=10)
    config = ScanConfig(epochs=1, batch_size=GLOBAL_BATCH, lr=1e-2, snapshots=1, val_fraction=5 / 45)
    train_scan(heads, lambda index: features[index], lambda index: features[index], neighbors, config, seed=2)
    return {k: v.detach().clone() for k, v in heads.state_dict().items()}


TRAININGS = {"simclr": simclr_parameters, "scan": scan_parameters}


def _rank(rank: int, world_size: int, init: str, training: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    try:
        parameters = TRAININGS[training]()
        if rank == 0:
            torch.save(parameters, out)
    finally:
        dist.destroy_process_group()


def two_ranks(training: str, tmp_path) -> dict:
    out = tmp_path / f"{training}.pt"
    mp.spawn(_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", training, str(out)), nprocs=2)
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("training", TRAININGS)
def test_two_ranks_train_as_one_process_at_the_same_global_batch(training, tmp_path):
    alone = TRAININGS[training]()
    together = two_ranks(training, tmp_path)
    start = {"simclr": simclr_start, "scan": scan_start}[training]()
    assert alone.keys() == together.keys()
    moved = max((alone[k] - start[k]).abs().max().item() for k in alone if k.endswith(("weight", "bias")))
    assert moved > 1e-3  # the steps changed the parameters, so agreeing says something
    for key in alone:
        assert torch.allclose(alone[key].float(), together[key].float(), atol=1e-5), key


def simclr_start() -> dict:
    torch.manual_seed(0)
    return SimCLRModel(SmallCNN(1, width=4), out_dim=16).state_dict()


def scan_start() -> dict:
    torch.manual_seed(0)
    return ClusterHeads(12, 5, num_heads=10).state_dict()


def _negatives(rank: int, world_size: int, init: str, out: str) -> None:
    """Gradients of NT-Xent through the gather, on every rank, for :func:`test_the_gather_sums_the_gradients`."""
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world_size)
    try:
        torch.manual_seed(0)
        z_a, z_b = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4)
        mine = local_rows(8)
        local = z_a[mine].detach().requires_grad_(True)
        with warnings.catch_warnings(record=True) as caught:  # every warning, each time
            warnings.simplefilter("always")
            loss = nt_xent_loss(gather(local), gather(z_b[mine]))
            loss.backward()
            grads = gather(local.grad.contiguous())
        if rank == 0:  # DDP averages what each rank's gather summed
            torch.save({"grads": grads / world_size, "warnings": [str(w.message) for w in caught]}, out)
    finally:
        dist.destroy_process_group()


def test_the_gather_sums_the_gradients_so_negatives_from_other_ranks_count(tmp_path):
    # the exact gradient of the loss over the whole batch, computed by one process
    torch.manual_seed(0)
    z_a, z_b = torch.randn(8, 4, requires_grad=True), torch.randn(8, 4)
    nt_xent_loss(z_a, z_b).backward()
    out = tmp_path / "grads.pt"
    mp.spawn(_negatives, args=(2, f"file://{tmp_path / 'rendezvous'}", str(out)), nprocs=2)
    saved = torch.load(out, weights_only=True)
    assert torch.allclose(saved["grads"], z_a.grad, atol=1e-6)
    assert not [w for w in saved["warnings"] if "deprecated" in w]  # torch's, on its collectives: silenced


def test_alone_every_row_is_this_process_and_batches_keep_their_size():
    assert world() == (0, 1) and local_rows(7) == slice(0, 7) and per_rank(7) == 7
    x = torch.arange(6.0)
    assert gather(x) is x
