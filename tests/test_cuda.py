"""The CUDA path, on a machine that has one (skipped otherwise): each stage's arrays on the GPU
match the CPU's, and a whole digits run on ``--device cuda`` scores as the CPU run does."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from scan_core.engine.run import train_run
from scan_core.method.augment import simclr_view, strong_view, to_tensor
from scan_core.method.clustering import scan_loss
from scan_core.method.hog import hog
from scan_core.method.metrics import hungarian_accuracy
from scan_core.method.pretext import nt_xent_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")


def test_the_batched_ops_run_on_the_gpu_as_on_the_cpu(digits):
    from scan_core.config import AugmentConfig
    images = digits.images[:64]
    cpu, gpu = to_tensor(images, "cpu"), to_tensor(images, "cuda")
    assert torch.allclose(hog(gpu).cpu(), hog(cpu), atol=1e-4)
    for view in (simclr_view, strong_view):
        out = view(gpu, AugmentConfig())
        assert out.device.type == "cuda" and out.shape == gpu.shape and out.min() >= 0 and out.max() <= 1
    anchors, neighbours = torch.randn(32, 10), torch.randn(32, 10)
    on_cpu, on_gpu = scan_loss(anchors, neighbours), scan_loss(anchors.cuda(), neighbours.cuda())
    assert all(torch.allclose(a.cpu(), b, atol=1e-5) for a, b in zip(on_gpu, on_cpu))
    z_a, z_b = torch.randn(16, 8), torch.randn(16, 8)
    assert torch.allclose(nt_xent_loss(z_a.cuda(), z_b.cuda()).cpu(), nt_xent_loss(z_a, z_b), atol=1e-5)


def test_a_digits_run_on_cuda_scores_as_on_the_cpu(tmp_path, digits):
    scores = {}
    for device in ("cpu", "cuda"):
        metrics = train_run(tmp_path / device, "digits", 10, preset="digits", show_bar=False, device=device)
        probs = np.load(tmp_path / device / f"{metrics.final.stage}_probs.npy")
        scores[device] = hungarian_accuracy(probs.argmax(1), digits.labels)
    assert scores["cuda"] > 0.93 and abs(scores["cuda"] - scores["cpu"]) < 0.02


def test_a_gpu_measures_its_speed_and_auto_plans_for_it():
    from scan_core.engine.device import measured_hardware
    from scan_core.method.precision import device_precision
    hardware = measured_hardware(torch.device("cuda", 0))
    assert hardware.kind == "cuda" and hardware.speed > 0 and hardware.name
    assert device_precision("auto", torch.device("cuda", 0)) in ("bfloat16", "float16")
