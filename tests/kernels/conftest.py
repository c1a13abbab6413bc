"""Where the Triton kernels under test run: the CPU interpreter by default (CI), a real GPU with
``STAA_TEST_DEVICE=cuda TRITON_INTERPRET=0`` (how a lent H100/H200 checks the compiled kernels)."""

import pytest
import torch

from tests.conftest import TEST_DEVICE

if TEST_DEVICE.startswith("cuda") and not torch.cuda.is_available():
    raise pytest.UsageError("STAA_TEST_DEVICE=cuda but no CUDA device is visible")
