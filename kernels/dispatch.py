"""Which implementation a kernel call takes: ``STAA_KERNELS=auto`` (CUDA tensors -> Triton,
CPU -> the PyTorch reference, or a numba kernel where one exists), ``reference`` (PyTorch only) or
``triton`` (on CPU that needs TRITON_INTERPRET=1 set before the first kernel call; the tests run it
that way). One rule for every kernel."""

from __future__ import annotations

import functools
import os

BACKENDS = ("auto", "reference", "triton")


def use_triton(is_cuda: bool) -> bool:
    backend = _backend()
    return backend == "triton" or (backend == "auto" and is_cuda)


def use_compiled_cpu() -> bool:
    """Whether a CPU kernel with a numba implementation takes it (anything but ``reference``, numba importable)."""
    return _backend() != "reference" and _numba_importable()


def _backend() -> str:
    backend = os.environ.get("STAA_KERNELS", "auto")
    if backend not in BACKENDS:
        raise ValueError(f"STAA_KERNELS must be auto, reference or triton, got {backend!r}")
    return backend


@functools.cache
def _numba_importable() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True
