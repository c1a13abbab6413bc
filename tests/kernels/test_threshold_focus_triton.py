"""The fused Triton kernel against its PyTorch reference, under TRITON_INTERPRET=1 on CPU.

Tolerances: quantised grids agree exactly except where 255*f/max(f) lies within float rounding of a
.5 boundary (the kernel raises to gamma as exp(gamma*log x), torch uses pow: a few ulp apart), so at
most one step on at most 1 % of entries; scale and mass to rtol 1e-4 for the same reason.
"""

import pytest
import torch

from staa_serve.kernels.threshold_focus import threshold_focus, threshold_focus_reference, threshold_focus_triton
from tests.conftest import TEST_DEVICE as DEVICE


def assert_match(maps, grid, **options):
    maps = maps.to(DEVICE)
    expected = threshold_focus_reference(maps, grid, **options)
    actual = threshold_focus_triton(maps, grid, **options)
    difference = (actual.quantized.int() - expected.quantized.int()).abs()
    assert difference.max().item() <= 1
    assert (difference > 0).float().mean().item() <= 0.01
    torch.testing.assert_close(actual.scale, expected.scale, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(actual.mass, expected.mass, rtol=1e-4, atol=1e-6)


# (9, 8, 196): several programs of 16 rows and a part-filled last tile
SHAPES = [(1, 1, 1), (1, 1, 196), (2, 8, 196), (3, 1, 49), (1, 16, 200), (5, 4, 63), (1, 8, 64), (16, 8, 64), (9, 8, 196)]


@pytest.mark.parametrize("batch,frames,patches", SHAPES)
@pytest.mark.parametrize("mode", ["mean_std", "percentile"])
def test_kernel_matches_reference_on_odd_shapes(batch, frames, patches, mode):
    generator = torch.Generator().manual_seed(batch * 1000 + frames * 10 + patches)
    maps = torch.rand(batch, frames, patches, generator=generator) ** 3  # peaky, like attention maps
    assert_match(maps, (1, patches), mode=mode, kappa=0.5, percentile=80.0, gamma=2.0)


@pytest.mark.parametrize("kappa,gamma", [(-1.0, 1.0), (0.0, 1.5), (0.5, 2.0), (3.0, 3.5), (10.0, 2.0)])
def test_kernel_matches_reference_across_parameters(kappa, gamma):
    maps = torch.rand(2, 8, 196, generator=torch.Generator().manual_seed(1))
    assert_match(maps, (14, 14), kappa=kappa, gamma=gamma)


@pytest.mark.parametrize("grid", [(14, 14), (8, 8), (7, 9), (1, 5)])
def test_kernel_smoothing_matches_reference(grid):
    patches = grid[0] * grid[1]
    maps = torch.rand(2, 3, patches, generator=torch.Generator().manual_seed(patches)) ** 4
    assert_match(maps, grid, smooth=True)
    assert_match(maps, grid, smooth=True, mode="percentile", percentile=50.0)


def test_kernel_smoothing_across_several_tiles():
    maps = torch.rand(9, 8, 196, generator=torch.Generator().manual_seed(9)) ** 4  # 72 rows: 5 tiles of 16
    assert_match(maps, (14, 14), smooth=True)


def degenerate_rows(patches: int) -> torch.Tensor:
    rows = torch.zeros(7, patches)
    rows[1] = 0.3  # constant
    rows[2, patches // 2] = 7.0  # a single spike
    rows[3, [0, patches - 1]] = 2.0  # the maximum twice
    rows[4] = torch.linspace(0, 1, patches)
    rows[4, 1] = float("nan")
    rows[5] = torch.linspace(0, 1, patches)
    rows[5, 2] = float("inf")
    rows[5, 3] = float("-inf")
    rows[6] = -torch.linspace(0, 1, patches)  # all negative: nothing to show
    return rows.reshape(1, 7, patches)


@pytest.mark.parametrize("patches", [5, 64, 196])
@pytest.mark.parametrize("smooth", [False, True])
def test_kernel_matches_reference_on_degenerate_rows(patches, smooth):
    maps = degenerate_rows(patches)
    grid = (1, patches)
    assert_match(maps, grid, smooth=smooth)
    assert_match(maps, grid, smooth=smooth, mode="percentile")
    out = threshold_focus_triton(maps.to(DEVICE), grid, smooth=smooth)
    assert out.quantized[0, 0].sum() == 0 and out.scale[0, 0] == 0  # all zeros stay zero
    assert out.quantized[0, 6].sum() == 0  # all negative counts as nothing
    assert torch.isfinite(out.scale).all() and torch.isfinite(out.mass).all()


@pytest.mark.skipif(DEVICE != "cpu", reason="forcing the kernel onto CPU tensors needs the interpreter")
def test_dispatch_can_force_the_kernel_on_cpu(monkeypatch):
    maps = torch.rand(2, 8, 64)
    monkeypatch.setenv("STAA_KERNELS", "triton")
    forced = threshold_focus(maps, (8, 8))
    monkeypatch.setenv("STAA_KERNELS", "reference")
    reference = threshold_focus(maps, (8, 8))
    assert (forced.quantized.int() - reference.quantized.int()).abs().max() <= 1


def test_empty_batch():
    out = threshold_focus_triton(torch.zeros(0, 8, 64, device=DEVICE), (8, 8))
    assert out.quantized.shape == (0, 8, 64)
