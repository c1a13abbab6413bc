"""The capture-end sums and maps: the numba kernels against the PyTorch reference and models.staa, and
which one a call takes.

Tolerance: the kernel accumulates in float64, the reference in float32 in another order: rtol 1e-5.
"""

import pytest
import torch

from kernels import whole_sums as module
from kernels.whole_sums import staa_maps_numba, whole_sums, whole_sums_numba, whole_sums_reference
from models.staa import StaaParams, staa_spatial, staa_temporal


def layers(count, rows, heads, tokens, seed):
    """``count`` x ``[rows, heads, tokens, tokens]`` softmax probabilities."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, heads, tokens, tokens, generator=generator).softmax(dim=-1) for _ in range(count)]


@pytest.mark.parametrize("count,batch,heads,frames,patches", [(1, 1, 1, 1, 1), (4, 1, 4, 8, 64), (3, 2, 3, 5, 7),
                                                              (2, 3, 12, 8, 196), (5, 2, 2, 16, 9)])
def test_kernel_matches_reference(count, batch, heads, frames, patches):
    spatial = layers(count, batch * frames, heads, 1 + patches, seed=patches)  # L x [B*T, H, 1+N, 1+N]
    temporal = layers(count, batch * patches, heads, frames, seed=frames)  # L x [B*N, H, T, T]
    kernel, reference = whole_sums_numba(spatial, temporal, frames, patches), whole_sums_reference(spatial, temporal, frames, patches)
    assert kernel[0].shape == (batch, frames, patches) and kernel[1].shape == (batch, patches, frames)
    for got, expected in zip(kernel, reference):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_reads_the_cls_query_row_only_and_drops_the_cls_key():
    spatial = [torch.full((2, 3, 4, 4), 9.0)]  # B*T = 2 frames, 3 heads, 1 + N = 4 tokens
    spatial[0][:, :, 0] = torch.tensor([5.0, 0.1, 0.2, 0.3])  # key 0 (CLS) and other query rows must not count
    temporal = [torch.ones(3, 3, 2, 2)]  # B*N = 3 patches, 3 heads, T = 2
    for cls_rows, received in (whole_sums_numba(spatial, temporal, 2, 3), whole_sums_reference(spatial, temporal, 2, 3)):
        torch.testing.assert_close(cls_rows, torch.tensor([[[0.3, 0.6, 0.9]] * 2]))  # three heads alike
        torch.testing.assert_close(received, torch.full((1, 3, 2), 6.0))  # 3 heads x 2 queries


def test_the_kernel_honours_strides():
    spatial = [probs.transpose(2, 3) for probs in layers(2, 4, 2, 6, seed=1)]  # not contiguous
    temporal = [probs.transpose(2, 3) for probs in layers(2, 10, 2, 2, seed=2)]
    for got, expected in zip(whole_sums_numba(spatial, temporal, 2, 5), whole_sums_reference(spatial, temporal, 2, 5)):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_dispatch(monkeypatch):
    spatial, temporal = layers(2, 4, 2, 5, seed=3), layers(2, 8, 2, 2, seed=4)
    calls = []
    monkeypatch.setattr(module, "whole_sums_numba", lambda *args: calls.append("numba") or whole_sums_numba(*args))
    whole_sums(spatial, temporal, 2, 4)
    assert calls == ["numba"]  # float32 CPU tensors outside autograd
    whole_sums([probs.half() for probs in spatial], [probs.half() for probs in temporal], 2, 4)
    whole_sums([probs.requires_grad_() for probs in spatial], temporal, 2, 4)  # autograd needs the reference
    monkeypatch.setenv("STAA_KERNELS", "reference")
    whole_sums(layers(2, 4, 2, 5, seed=3), temporal, 2, 4)
    assert calls == ["numba"]
    assert whole_sums([], [], 2, 4) == (None, None)


@pytest.mark.parametrize("weighting", ["cls", "uniform"])
@pytest.mark.parametrize("count,batch,heads,frames,patches", [(1, 1, 1, 1, 1), (4, 2, 4, 8, 64), (3, 3, 2, 5, 7)])
def test_maps_kernel_matches_the_staa_maths(count, batch, heads, frames, patches, weighting):
    spatial = layers(count, batch * frames, heads, 1 + patches, seed=patches + 1)
    temporal = layers(count, batch * patches, heads, frames, seed=frames + 1)
    cls_rows, received = whole_sums_reference(spatial, temporal, frames, patches)
    expected_spatial = staa_spatial(cls_rows)
    expected_temporal = staa_temporal(received, expected_spatial, StaaParams(temporal_weighting=weighting))
    spatial_map, temporal_map = staa_maps_numba(spatial, temporal, frames, patches, uniform_weights=weighting == "uniform")
    torch.testing.assert_close(spatial_map, expected_spatial, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(temporal_map, expected_temporal, rtol=1e-5, atol=1e-7)


def test_maps_kernel_makes_frames_without_cls_mass_uniform():
    spatial = [torch.zeros(2, 1, 4, 4)]  # frame 1: the CLS row puts everything on the CLS key
    spatial[0][0, 0, 0, 1:] = torch.tensor([1.0, 3.0, 0.0])
    spatial[0][1, 0, 0, 0] = 1.0
    temporal = [torch.full((3, 1, 2, 2), 0.5)]
    spatial_map, temporal_map = staa_maps_numba(spatial, temporal, 2, 3, uniform_weights=False)
    torch.testing.assert_close(spatial_map, torch.tensor([[[0.25, 0.75, 0.0], [1 / 3, 1 / 3, 1 / 3]]]))
    torch.testing.assert_close(temporal_map, torch.tensor([[0.5, 0.5]]))
