"""Attention rows recomputed from Q and K: the Triton column sum (under TRITON_INTERPRET=1 on CPU)
and the chunked reference against the materialised probabilities.

Tolerance: float32 sums of the same products in another order, rtol 1e-5 (atol 1e-6 for entries
near zero, where a relative bound means nothing).
"""

import pytest
import torch

from staa_serve.kernels import attention_rows
from staa_serve.kernels.attention_rows import (attention_chunked, column_sum, column_sum_from_probabilities, column_sum_reference,
                                               column_sum_triton, query_row, query_row_from_probabilities)
from tests.conftest import TEST_DEVICE as DEVICE


def projections(rows, heads, tokens, head_size, seed=0, spread=1.0):
    """Q and K ``[R, H, S, d]`` as a qkv projection lays them out (strided, not contiguous)."""
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(rows, tokens, 3, heads, head_size, generator=generator) * spread  # [R, S, 3, H, d]
    qkv = qkv.to(DEVICE).permute(2, 0, 3, 1, 4)  # [3, R, H, S, d]
    return qkv[0], qkv[1]


def probabilities(query, key, scale):
    return (query @ key.transpose(-2, -1) * scale).softmax(dim=-1)  # [R, H, S, S]


SHAPES = [(1, 1, 1, 8), (2, 3, 197, 16), (3, 2, 65, 8), (1, 4, 130, 64), (5, 12, 8, 64), (1, 2, 257, 24)]


@pytest.mark.parametrize("rows,heads,tokens,head_size", SHAPES)
def test_column_sum_kernel_and_reference_match_the_probabilities(rows, heads, tokens, head_size):
    query, key = projections(rows, heads, tokens, head_size, seed=tokens)
    scale = head_size ** -0.5
    expected = column_sum_from_probabilities(probabilities(query, key, scale))  # [R, S]
    torch.testing.assert_close(column_sum_reference(query, key, scale), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(column_sum_triton(query, key, scale), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows,heads,tokens,head_size", [(2, 3, 197, 16), (1, 4, 130, 64), (3, 2, 1, 8)])
def test_per_head_rows_match_the_probabilities(rows, heads, tokens, head_size):
    query, key = projections(rows, heads, tokens, head_size, seed=heads + tokens)
    scale = head_size ** -0.5
    probs = probabilities(query, key, scale)
    expected = column_sum_from_probabilities(probs, per_head=True)  # [R, H, S]
    assert expected.shape == (rows, heads, tokens)
    torch.testing.assert_close(expected.sum(dim=1), column_sum_from_probabilities(probs), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(column_sum_reference(query, key, scale, per_head=True), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(column_sum_triton(query, key, scale, per_head=True), expected, rtol=1e-5, atol=1e-6)
    value = torch.randn_like(query)
    _, sums = attention_chunked(query, key, value, scale, per_head=True)
    torch.testing.assert_close(sums, expected, rtol=1e-5, atol=1e-6)
    row = query_row_from_probabilities(probs, per_head=True)  # [R, H, S]
    torch.testing.assert_close(query_row(query, key, scale, per_head=True), row, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(row.sum(dim=1), query_row(query, key, scale), rtol=1e-5, atol=1e-6)


def test_reference_chunks_do_not_change_the_sum(monkeypatch):
    query, key = projections(2, 3, 97, 16, seed=4)
    whole = column_sum_reference(query, key, 0.25)
    monkeypatch.setattr(attention_rows, "CHUNK_BYTES", 1)  # one query per chunk
    torch.testing.assert_close(column_sum_reference(query, key, 0.25), whole, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", ["zeros", "constant", "spike", "large_scores"])
def test_degenerate_scores(case):
    rows, heads, tokens, head_size = 2, 3, 33, 16
    query, key = projections(rows, heads, tokens, head_size, seed=9)
    if case == "zeros":  # uniform attention: each key receives H * S / S = H
        query = torch.zeros_like(query)
    elif case == "constant":  # every key alike: uniform again
        key = torch.ones_like(key)
    elif case == "spike":  # one key dominates every query's softmax
        key = key * 0.0
        key[:, :, 7] = query.abs().amax() * 50 * torch.sign(query.sum(dim=2))
    else:  # scores in the hundreds: the softmax must subtract its max to stay finite
        query, key = projections(rows, heads, tokens, head_size, seed=9, spread=8.0)
    expected = column_sum_from_probabilities(probabilities(query, key, head_size ** -0.5))
    assert torch.isfinite(expected).all()
    for implementation in (column_sum_reference, column_sum_triton):
        torch.testing.assert_close(implementation(query, key, head_size ** -0.5), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(expected.sum(dim=-1), torch.full((rows,), float(heads * tokens), device=DEVICE))


def test_half_precision_accumulates_in_float32():
    query, key = projections(2, 4, 70, 32, seed=2)
    expected = column_sum_from_probabilities(probabilities(query, key, 32 ** -0.5))
    half = column_sum_triton(query.half(), key.half(), 32 ** -0.5)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, expected, rtol=2e-3, atol=2e-3)  # fp16 inputs: ~3 decimal digits


@pytest.mark.parametrize("tokens", [1, 9, 197])
def test_query_row_is_that_rows_softmax(tokens):
    query, key = projections(3, 4, tokens, 16, seed=tokens)
    probs = probabilities(query, key, 0.25)
    for row in {0, tokens - 1}:
        torch.testing.assert_close(query_row(query, key, 0.25, row), query_row_from_probabilities(probs, row),
                                   rtol=1e-5, atol=1e-7)


@pytest.mark.skipif(DEVICE != "cpu", reason="forcing the kernel onto CPU tensors needs the interpreter")
def test_dispatch_on_cpu_takes_the_reference_unless_forced(monkeypatch):
    query, key = projections(2, 2, 40, 16)
    assert torch.equal(column_sum(query, key, 0.25), column_sum_reference(query, key, 0.25))
    monkeypatch.setenv("STAA_KERNELS", "triton")
    assert torch.equal(column_sum(query, key, 0.25), column_sum_triton(query, key, 0.25))
    monkeypatch.setenv("STAA_KERNELS", "bogus")
    with pytest.raises(ValueError, match="STAA_KERNELS"):
        column_sum(query, key, 0.25)


@pytest.mark.parametrize("rows,heads,tokens,head_size", [(1, 3, 97, 16), (2, 2, 65, 8)])
def test_chunked_attention_gives_the_output_and_the_column_sums(rows, heads, tokens, head_size, monkeypatch):
    query, key = projections(rows, heads, tokens, head_size, seed=tokens)
    value = torch.randn(rows, heads, tokens, head_size, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    probs = probabilities(query, key, head_size ** -0.5)
    monkeypatch.setattr(attention_rows, "CHUNK_BYTES", 4 * heads * tokens * 10)  # ten queries a chunk
    output, sums = attention_chunked(query, key, value, head_size ** -0.5)
    torch.testing.assert_close(output, probs @ value, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(sums, column_sum_from_probabilities(probs), rtol=1e-5, atol=1e-6)
