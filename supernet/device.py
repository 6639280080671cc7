"""Which compute devices moga accepts, checked before any work: ``cpu``, ``cuda`` or ``cuda:N``.

A device this machine does not have is a ``UserError`` saying so (and what it does have), whether it comes
from a config (``moga.config`` refuses an unknown name on load; this machine's devices are checked when a
command starts: ``supernet.distributed.init_distributed``) or reaches a checkpoint load directly, so a good
checkpoint is never blamed for a missing GPU.
"""

from __future__ import annotations

import re

import torch

from supernet.errors import UserError

DEVICE_NAME = re.compile(r"cpu|cuda(:\d+)?")


def available_devices() -> str:
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return "cpu" + (f", cuda (cuda:0..cuda:{n - 1})" if n else " only")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` if this machine can run it; a one-line ``UserError`` otherwise."""
    name = str(device)
    if not DEVICE_NAME.fullmatch(name):
        raise UserError(f"device {name!r} is not supported: use cpu, cuda or cuda:N (this machine has {available_devices()})")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            built = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise UserError(f"device {name!r} is not available: {built}; use device=cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r} is not available: this machine has {available_devices()}")
    return dev
