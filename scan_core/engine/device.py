"""Where a run computes: the torch device, and the library versions it records (its CPU threads:
:mod:`scan_core.engine.threads`)."""
from __future__ import annotations

import platform
import time

import numpy as np
import torch

from .. import __version__
from ..config import REFERENCE_CPU, Hardware
from ..costs import PRETRAINED_COSTS, REFERENCE_PASS


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; asking for an absent CUDA is an error. CUDA is the
    current device (a rank's own GPU, :mod:`scan_core.engine.ranks`), named with its index."""
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def reference_pass_seconds(device: torch.device, batch: int = 8, repeats: int = 2) -> float:
    """Seconds per image of :data:`~scan_core.costs.REFERENCE_PASS` (torchvision's ResNet-18, random
    weights, 224 px, inference in the precision a run takes there) on ``device``: the fastest of
    ``repeats`` timed batches of ``batch`` images after one that warms up."""
    import torchvision

    from ..method.precision import Amp, device_precision
    network = torchvision.models.resnet18().to(device).eval()
    x = torch.rand(batch, 3, 224, 224, device=device)
    amp, times = Amp(device_precision("auto", device), device), []
    with torch.no_grad(), amp.autocast():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            network(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return min(times[1:]) / batch


def measured_hardware(device: torch.device) -> Hardware:
    """What ``auto`` plans for on ``device``: on a GPU, its name and its speed against the
    reference GPU of the cost tables, from :func:`reference_pass_seconds` (in batches of 256, well
    under a second); on a CPU, the reference CPU as tabled (a CPU's timing swings with the other
    processes on its cores, and a plan should not change from one run to the next for that)."""
    if device.type != "cuda":
        return REFERENCE_CPU
    seconds = reference_pass_seconds(device, batch=256, repeats=3)
    return Hardware("cuda", round(PRETRAINED_COSTS["cuda"][REFERENCE_PASS] / seconds, 3),
                    torch.cuda.get_device_name(device))


def versions() -> dict:
    """The versions of Python and of the libraries a run's numbers depend on."""
    import faiss
    import sklearn
    import torchvision
    return {"scan_core": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__, "faiss": faiss.__version__,
            "scikit-learn": sklearn.__version__}
