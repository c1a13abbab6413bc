"""Which implementation a kernel call takes: ``STAA_KERNELS=auto`` (CUDA tensors -> Triton, CPU ->
the PyTorch reference), ``reference`` (PyTorch only) or ``triton`` (on CPU that needs
TRITON_INTERPRET=1 set before the first kernel call; the tests run it that way). One rule for
every kernel."""

from __future__ import annotations

import os

BACKENDS = ("auto", "reference", "triton")


def use_triton(is_cuda: bool) -> bool:
    backend = os.environ.get("STAA_KERNELS", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"STAA_KERNELS must be auto, reference or triton, got {backend!r}")
    return backend == "triton" or (backend == "auto" and is_cuda)
