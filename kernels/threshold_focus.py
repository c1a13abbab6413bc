"""Dynamic thresholding + attention focusing + quantisation of STAA maps (ARCHITECTURE §5).

Per row m in R^N (one frame of one window), raw values m_raw >= 0:
  1. normalise:  m = m_raw / max(m_raw)                       (all-zero rows stay zero)
  2. threshold:  theta = mean(m) + kappa * std(m)  or  percentile(m, q); clamped to <= 1
                 so the peak always survives; entries below theta become 0
  3. focus:      f = ((m - theta)+ / (1 - theta))^gamma; when theta == 1 (a constant row, or
                 kappa so large that only the peak is left) f = [m >= 1]. Optional 3x3 mean
                 smoothing on the h x w patch grid, zero outside it (no evidence there;
                 averaging only the cells that exist would make borders look hotter).
  4. quantise:   q = round(255 * f / max(f)), scale = max(f) * max(m_raw) / 255, so q * scale
                 approximates f in raw units; mass = sum(f) * max(m_raw).
NaN entries count as 0 and +/-inf are clipped to the row's finite range, so a bad row
never poisons the batch.

The naive op-by-op sequence reads and writes the [B, T, N] map about ten times; the fused
Triton kernel (issue 4) will read it once and write q once. Until it lands the dispatch
function runs this reference on every device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_EPS = 1e-12


@dataclass
class FocusedMaps:
    """Output of ``threshold_focus``.

    Attributes:
        quantized: uint8 ``[B, T, N]``.
        scale: float32 ``[B, T]``: raw value of one quantisation step.
        mass: float32 ``[B, T]``: focused mass of each frame in raw units.
    """

    quantized: torch.Tensor
    scale: torch.Tensor
    mass: torch.Tensor


def _sanitise(maps: torch.Tensor) -> torch.Tensor:
    finite = torch.isfinite(maps)
    clean = torch.where(finite, maps, torch.zeros_like(maps))
    row_max = clean.amax(dim=-1, keepdim=True)
    clean = torch.where(maps == float("inf"), row_max.expand_as(maps), clean)
    return clean.clamp_min(0.0)


def threshold_focus_reference(
    maps: torch.Tensor,
    grid: tuple[int, int],
    mode: str = "mean_std",
    kappa: float = 0.5,
    percentile: float = 80.0,
    gamma: float = 2.0,
    smooth: bool = False,
) -> FocusedMaps:
    """PyTorch reference (and CPU path) for the fused kernel.

    Args:
        maps: float ``[B, T, N]`` non-negative raw attributions, N = grid[0] * grid[1].
        grid: ``(h, w)`` patch grid, used only for smoothing.
        mode: ``"mean_std"`` or ``"percentile"``.
    Returns:
        FocusedMaps with ``[B, T, N]`` uint8 grids and ``[B, T]`` scale and mass.
    """
    batch, frames, patches = maps.shape
    raw = _sanitise(maps.float())
    raw_max = raw.amax(dim=-1, keepdim=True)  # [B, T, 1]
    normalised = raw / raw_max.clamp_min(_EPS)
    if mode == "percentile":
        theta = torch.quantile(normalised, percentile / 100.0, dim=-1, keepdim=True)
    else:
        theta = normalised.mean(dim=-1, keepdim=True) + kappa * normalised.std(dim=-1, unbiased=False, keepdim=True)
    theta = theta.clamp(max=1.0)
    span = 1.0 - theta
    sharp = ((normalised - theta).clamp_min(0.0) / span.clamp_min(_EPS)) ** gamma
    focused = torch.where(span > _EPS, sharp, (normalised >= 1.0 - _EPS).float())
    focused = torch.where(raw_max > 0, focused, torch.zeros_like(focused))
    if smooth:
        height, width = grid
        planes = focused.reshape(batch * frames, 1, height, width)  # [B, T, N] -> [B*T, 1, h, w]
        planes = F.avg_pool2d(planes, 3, stride=1, padding=1, count_include_pad=True)
        focused = planes.reshape(batch, frames, patches)  # -> [B, T, N]
    focused_max = focused.amax(dim=-1, keepdim=True)
    quantized = torch.round(255.0 * focused / focused_max.clamp_min(_EPS)).to(torch.uint8)
    scale = (focused_max * raw_max / 255.0).squeeze(-1)
    mass = focused.sum(dim=-1) * raw_max.squeeze(-1)
    return FocusedMaps(quantized, scale, mass)


def threshold_focus(maps: torch.Tensor, grid: tuple[int, int], **options) -> FocusedMaps:
    """The one entry point the server calls. ``STAA_KERNELS=reference`` forces the reference.

    Every device takes the PyTorch reference until the fused Triton kernel lands (issue 4).
    """
    backend = os.environ.get("STAA_KERNELS", "auto")
    if backend not in ("auto", "reference", "triton"):
        raise ValueError(f"STAA_KERNELS must be auto, reference or triton, got {backend!r}")
    if backend == "triton":
        raise NotImplementedError("STAA_KERNELS=triton: the fused Triton kernel is not built yet (issue 4)")
    return threshold_focus_reference(maps, grid, **options)
