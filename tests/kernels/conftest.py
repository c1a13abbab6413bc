"""Where the Triton kernels under test run: the CPU interpreter by default (CI), a real GPU with
``STAA_TEST_DEVICE=cuda TRITON_INTERPRET=0`` (how a lent H100/H200 checks the compiled kernels)."""

import os

import pytest
import torch

DEVICE = os.environ.get("STAA_TEST_DEVICE", "cpu")  # the test modules read the same variable
if DEVICE == "cuda" and not torch.cuda.is_available():
    raise pytest.UsageError("STAA_TEST_DEVICE=cuda but no CUDA device is visible")
