"""The reference thresholding + focusing (ARCHITECTURE §5) on analytic rows and degenerate maps.

Triton-vs-reference comparisons arrive with the kernel (issue 4); these pin the reference itself.
"""

import pytest
import torch

from staa_serve.kernels.threshold_focus import threshold_focus, threshold_focus_reference


def run(rows, **options):
    maps = torch.tensor(rows, dtype=torch.float32)[None]  # [1, T, N]
    return threshold_focus_reference(maps, (1, maps.shape[-1]), **options)


def test_below_threshold_entries_become_zero_and_peak_is_255():
    row = [0.0, 0.1, 0.2, 0.9, 1.0, 0.15]
    out = run([row], kappa=0.5, gamma=1.0)
    normalised = torch.tensor(row)
    theta = normalised.mean() + 0.5 * normalised.std(unbiased=False)
    quantized = out.quantized[0, 0]
    assert quantized.max().item() == 255 and quantized.argmax().item() == 4
    assert all(quantized[index] == 0 for index, value in enumerate(row) if value <= theta)
    expected = ((normalised - theta).clamp_min(0) / (1 - theta))
    # q * scale reconstructs the focused map in raw units (max raw = 1 here) to half a step
    assert torch.allclose(quantized.float() * out.scale[0, 0], expected, atol=0.5 / 255 + 1e-6)


def test_gamma_sharpens():
    row = [[0.0, 0.5, 0.75, 1.0, 0.6]]
    soft, sharp = run(row, kappa=0.0, gamma=1.0), run(row, kappa=0.0, gamma=3.0)
    assert sharp.quantized[0, 0, 2] < soft.quantized[0, 0, 2]
    assert sharp.mass[0, 0] < soft.mass[0, 0]


@pytest.mark.parametrize("row,expected", [
    ([0.0] * 5, [0] * 5),                      # all zeros stay zero, scale 0
    ([0.3] * 5, [255] * 5),                    # constant: nothing stands out, all kept
    ([0.0, 0.0, 7.0, 0.0, 0.0], [0, 0, 255, 0, 0]),  # single spike
    ([0.0, 2.0, 0.0, 2.0, 0.0], [0, 255, 0, 255, 0]),  # the maximum twice
])
def test_degenerate_rows(row, expected):
    assert run([row]).quantized[0, 0].tolist() == expected


def test_nan_and_inf_never_poison_the_row():
    out = run([[float("nan"), 0.2, float("inf"), 0.1, float("-inf")]], kappa=0.0)
    assert out.quantized[0, 0].tolist()[2] == 255
    assert torch.isfinite(out.scale).all() and torch.isfinite(out.mass).all()


def test_percentile_mode_keeps_the_top_share():
    row = [[float(value) for value in range(1, 11)]]
    out = run(row, mode="percentile", percentile=80.0, gamma=1.0)
    assert (out.quantized[0, 0] > 0).sum().item() == 2  # above the 80th percentile of 10 values


def test_smoothing_spreads_a_spike_on_the_grid():
    maps = torch.zeros(1, 1, 9)
    maps[0, 0, 4] = 1.0  # centre of a 3x3 grid
    out = threshold_focus_reference(maps, (3, 3), smooth=True)
    # Every cell's 3x3 neighbourhood (zero outside the grid) holds the spike once: all equal.
    assert (out.quantized[0, 0] == 255).all()
    corner = torch.zeros(1, 1, 16)
    corner[0, 0, 0] = 1.0  # top-left of a 4x4 grid: spreads to its 3 neighbours only
    grid = threshold_focus_reference(corner, (4, 4), smooth=True).quantized[0, 0].reshape(4, 4)
    assert grid[:2, :2].tolist() == [[255, 255], [255, 255]] and grid[2:].sum() == 0 and grid[:, 2:].sum() == 0


def test_dispatch_uses_the_reference_on_cpu_and_rejects_unknown_backends(monkeypatch):
    maps = torch.rand(2, 3, 196)
    direct = threshold_focus_reference(maps, (14, 14))
    assert torch.equal(threshold_focus(maps, (14, 14)).quantized, direct.quantized)
    monkeypatch.setenv("STAA_KERNELS", "cuda-magic")
    with pytest.raises(ValueError, match="STAA_KERNELS"):
        threshold_focus(maps, (14, 14))
