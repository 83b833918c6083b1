"""Mixed precision for the training loops and the embedding passes (Micikevicius et al., "Mixed
Precision Training", ICLR 2018; ``torch.autocast``).

The network's forward pass runs in a 16-bit float where the device computes it faster (CUDA:
bfloat16 where the GPU supports it, else float16 with a dynamic loss scale, ``torch.amp.GradScaler``);
weights, optimiser states and every loss stay float32: the loops cast the outputs back with
``.float()`` before a loss. On a CPU ``auto`` keeps float32, which most CPUs compute fastest;
``bfloat16`` and ``float16`` can still be asked for there (the tests run them on the CPU).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from ..config import PRECISIONS

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_precision(name: str, device_type: str, bf16_supported: bool = True) -> str:
    """The precision ``name`` means on a ``device_type`` (``cpu`` or ``cuda``) device: ``auto`` is
    ``bfloat16`` on a CUDA GPU that supports it (``bf16_supported``), ``float16`` on an older one,
    ``float32`` on a CPU; any other name is itself. ValueError for an unknown name."""
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {name!r}")
    if name != "auto":
        return name
    if device_type != "cuda":
        return "float32"
    return "bfloat16" if bf16_supported else "float16"


def device_precision(name: str, device: torch.device) -> str:
    """:func:`resolve_precision` for ``device``, asking CUDA whether it supports bfloat16."""
    cuda = device.type == "cuda"
    return resolve_precision(name, device.type, bool(cuda and torch.cuda.is_bf16_supported()))


@dataclass
class Amp:
    """One training loop's mixed precision on ``device``: :meth:`autocast` around the forward pass,
    :meth:`step` for the backward pass and the optimiser step (with a loss scale for float16).
    ``precision``: a resolved name (:func:`resolve_precision`), ``float32`` for none."""

    precision: str
    device: torch.device
    scaler: torch.amp.GradScaler | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.precision not in DTYPES:
            raise ValueError(f"precision must be one of {', '.join(DTYPES)} (resolved), got {self.precision!r}")
        self.device = torch.device(self.device)
        if self.precision == "float16":
            self.scaler = torch.amp.GradScaler(self.device.type)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass in the 16-bit float (a no-op for float32)."""
        if self.precision == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.precision])

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Zero the gradients, backpropagate the float32 scalar ``loss`` (scaled for float16, and the
        step skipped where the scaled gradients overflowed) and step ``optimizer``."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

