"""Where a model runs and in what precision: ``--device auto|cpu|cuda[:N]``, ``--dtype auto|float32|bfloat16|float16``.

``auto`` means CUDA with bfloat16 where a GPU is visible, else the CPU in float32. A device that is
not there is refused with one line, before anything is loaded. STAA's rows and maths accumulate in
float32 under any dtype (kernels/attention_rows.py, models/staa.py).
"""

from __future__ import annotations

import re

import torch

from staa_serve.models.errors import UnsupportedModel

DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_device_name(name: str) -> None:
    """Raises ValueError naming the allowed forms (config validation: no device is probed)."""
    if name not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", name):
        raise ValueError(f"device must be one of {', '.join(DEVICE_NAMES)}, got {name!r}")


def check_dtype_name(name: str) -> None:
    if name != "auto" and name not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}, got {name!r}")


def resolve_device(name: str = "auto") -> torch.device:
    """The device ``name`` asks for, checked to exist.

    Raises:
        UnsupportedModel: a CUDA device that this process cannot see.
    """
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.index or 0
        if index >= visible:
            raise UnsupportedModel(f"device {name!r} is not available: this process sees {visible} CUDA device(s)"
                                   f"{' (torch is a CPU build)' if torch.version.cuda is None else ''}")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 elsewhere."""
    check_dtype_name(name)
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously: a host clock read without this
    measures launches, not work). Nothing to wait for on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
