"""Attention reductions: Triton kernels against their PyTorch twins under TRITON_INTERPRET=1.

Tolerance: float32 sums in a different order, rtol 1e-5.
"""

import os

import pytest
import torch

from kernels.attention_reduce import (cls_row_sum, cls_row_sum_reference, cls_row_sum_triton, received_sum_reference,
                                      received_sum_triton)

DEVICE = os.environ.get("STAA_TEST_DEVICE", "cpu")  # see conftest.py: cuda on a lent GPU


def attention(rows, heads, tokens, seed=0):
    logits = torch.randn(rows, heads, tokens, tokens, generator=torch.Generator().manual_seed(seed))
    return logits.softmax(dim=-1).to(DEVICE)


@pytest.mark.parametrize("rows,heads,patches", [(1, 1, 1), (8, 4, 64), (3, 12, 196), (2, 3, 49), (16, 2, 63)])
def test_cls_row_kernel_matches_reference(rows, heads, patches):
    probs = attention(rows, heads, 1 + patches, seed=patches)
    torch.testing.assert_close(cls_row_sum_triton(probs), cls_row_sum_reference(probs), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rows,heads,frames", [(1, 1, 1), (64, 4, 8), (196, 12, 8), (49, 3, 16), (10, 2, 5)])
def test_received_kernel_matches_reference(rows, heads, frames):
    probs = attention(rows, heads, frames, seed=frames)
    torch.testing.assert_close(received_sum_triton(probs), received_sum_reference(probs), rtol=1e-5, atol=1e-7)


def test_non_contiguous_input_and_half_precision():
    probs = attention(4, 6, 17).transpose(2, 3)  # strides the kernel must honour
    torch.testing.assert_close(cls_row_sum_triton(probs), cls_row_sum_reference(probs), rtol=1e-5, atol=1e-7)
    half = attention(4, 6, 17).half()
    torch.testing.assert_close(cls_row_sum_triton(half), cls_row_sum_reference(half), rtol=1e-3, atol=1e-5)


def test_cls_row_reads_row_zero_only():
    probs = torch.zeros(2, 3, 5, 5, device=DEVICE)
    probs[:, :, 0] = torch.tensor([0.05, 0.1, 0.2, 0.3, 0.4])
    probs[:, :, 1:, :] = 9.0  # other rows must not leak in
    expected = torch.tensor([[0.15, 0.3, 0.6, 0.9, 1.2]] * 2, device=DEVICE)  # three heads alike; CLS key kept
    torch.testing.assert_close(cls_row_sum_triton(probs), expected)
    torch.testing.assert_close(cls_row_sum_reference(probs), expected)


@pytest.mark.skipif(DEVICE != "cpu", reason="forcing the kernel onto CPU tensors needs the interpreter")
def test_dispatch_on_cpu_uses_the_reference(monkeypatch):
    probs = attention(2, 2, 10).cpu()
    assert torch.equal(cls_row_sum(probs), cls_row_sum_reference(probs))
    monkeypatch.setenv("STAA_KERNELS", "triton")
    torch.testing.assert_close(cls_row_sum(probs), cls_row_sum_reference(probs), rtol=1e-5, atol=1e-7)


def test_reducers_are_chosen_once_per_device(monkeypatch):
    from kernels.attention_reduce import reducers_for

    assert reducers_for(torch.device("cpu")) == (cls_row_sum_reference, received_sum_reference)
    assert reducers_for("cuda") == (cls_row_sum_triton, received_sum_triton)
    monkeypatch.setenv("STAA_KERNELS", "triton")
    assert reducers_for("cpu") == (cls_row_sum_triton, received_sum_triton)
    monkeypatch.setenv("STAA_KERNELS", "bogus")
    with pytest.raises(ValueError, match="STAA_KERNELS"):
        reducers_for("cpu")
