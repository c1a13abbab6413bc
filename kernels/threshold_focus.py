"""Dynamic thresholding + attention focusing + quantisation of STAA maps (ARCHITECTURE §5).

Per row m in R^N (one frame of one window), raw values m_raw >= 0:
  1. normalise:  m = m_raw / max(m_raw)                       (all-zero rows stay zero)
  2. threshold:  theta = mean(m) + kappa * std(m)  or  percentile(m, q); clamped to <= 1
                 so the peak always survives; entries below theta become 0
  3. focus:      f = ((m - theta)+ / (1 - theta))^gamma; when theta == 1 (a constant row, or
                 kappa so large that only the peak is left) f = [m >= 1]. Optional 3x3 mean
                 smoothing on the h x w patch grid, zero outside it (no evidence there;
                 averaging only the cells that exist would make borders look hotter).
  4. quantise:   q = floor(255 * f / max(f) + 1/2) (half-up, the same in kernel and reference),
                 scale = max(f) * max(m_raw) / 255, so q * scale
                 approximates f in raw units; mass = sum(f) * max(m_raw).
NaN entries count as 0 and +/-inf are clipped to the row's finite range, so a bad row
never poisons the batch.

Memory traffic: the op-by-op PyTorch sequence reads and writes the [B, T, N] float map about a
dozen times (sanitise, max, divide, mean, std, subtract, clamp, pow, where, max, divide, round);
the fused kernel reads it once (4 bytes/entry), writes q once (1 byte/entry) and 8 bytes per row,
plus a scratch round trip of the row when smoothing. One program handles a tile of whole rows
(frames of windows) entirely in registers.

``threshold_focus`` dispatches: CUDA tensors -> the Triton kernel, CPU tensors -> the reference;
``STAA_KERNELS=reference|triton`` forces either (triton on CPU needs TRITON_INTERPRET=1 set
before the first kernel call; the tests run it that way).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from staa_serve.kernels.dispatch import use_triton

_EPS = 1e-12
MODES = ("mean_std", "percentile")
# The served defaults (models.staa.StaaParams takes them from here; chosen with the quality harness).
DEFAULT_KAPPA, DEFAULT_PERCENTILE, DEFAULT_GAMMA = 2.0, 80.0, 2.0
# Entries one program tiles (rows x next_power_of_2(N)): one 196-entry row per program left a GPU
# launch- and latency-bound; a tile of several rows gives each warp enough loads in flight.
TILE_ENTRIES = 4096


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
    kappa: float = DEFAULT_KAPPA,
    percentile: float = DEFAULT_PERCENTILE,
    gamma: float = DEFAULT_GAMMA,
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
    focused = torch.where(span > _EPS, sharp, (raw >= raw_max).float())
    focused = torch.where(raw_max > 0, focused, torch.zeros_like(focused))
    if smooth:
        height, width = grid
        planes = focused.reshape(batch * frames, 1, height, width)  # [B, T, N] -> [B*T, 1, h, w]
        planes = F.avg_pool2d(planes, 3, stride=1, padding=1, count_include_pad=True)
        focused = planes.reshape(batch, frames, patches)  # -> [B, T, N]
    focused_max = focused.amax(dim=-1, keepdim=True)
    quantized = torch.floor(255.0 * focused / focused_max.clamp_min(_EPS) + 0.5).to(torch.uint8)
    scale = (focused_max * raw_max / 255.0).squeeze(-1)
    mass = focused.sum(dim=-1) * raw_max.squeeze(-1)
    return FocusedMaps(quantized, scale, mass)


@functools.cache
def _kernel():
    """Build the Triton kernel on first use (TRITON_INTERPRET is read when a kernel is defined)."""
    import triton
    import triton.language as tl

    @triton.jit
    def threshold_focus_kernel(
        maps_ptr, quantized_ptr, scale_ptr, mass_ptr, scratch_ptr,
        num_rows, num_patches, count, grid_width, stride_row,
        kappa, quantile_position, gamma,
        PERCENTILE: tl.constexpr, SMOOTH: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr,
    ):
        # One program: ROWS whole rows as a [ROWS, BLOCK] tile; every reduction runs along axis 1.
        rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)  # [ROWS]
        offsets = tl.arange(0, BLOCK)  # [BLOCK]
        live = rows < num_rows
        valid = live[:, None] & (offsets < num_patches)[None, :]  # [ROWS, BLOCK]
        values = tl.load(maps_ptr + rows[:, None] * stride_row + offsets[None, :], mask=valid, other=0.0).to(tl.float32)
        # 0. sanitise: NaN and -inf -> 0, +inf -> the largest finite entry, negatives -> 0
        finite = (values == values) & (tl.abs(values) != float("inf"))
        clean = tl.where(finite & valid, values, 0.0)
        finite_max = tl.max(clean, axis=1)[:, None]  # [ROWS, 1]
        clean = tl.where(values == float("inf"), finite_max, clean)
        clean = tl.maximum(tl.where(valid, clean, 0.0), 0.0)
        # 1. normalise to the peak
        raw_max = tl.max(clean, axis=1)[:, None]  # [ROWS, 1]
        # IEEE-rounded division (plain `/` compiles to an approximate divide on NVIDIA GPUs, which
        # can leave the peak at 0.99999994 and lose it in the degenerate branch below)
        normalised = tl.math.div_rn(clean, tl.maximum(raw_max, 1e-12))
        # 2. dynamic threshold, clamped to 1 so the peak survives
        if PERCENTILE:
            # padding sorts last; a tile's rows past the end stay finite (no inf - inf)
            ordered = tl.sort(tl.where(valid, normalised, tl.where(live[:, None], float("inf"), 0.0)), dim=1)
            low_index = tl.floor(quantile_position).to(tl.int32)
            weight = quantile_position - low_index.to(tl.float32)
            low = tl.sum(tl.where(offsets[None, :] == low_index, ordered, 0.0), axis=1)
            high_index = tl.minimum(low_index + 1, num_patches - 1)
            high = tl.sum(tl.where(offsets[None, :] == high_index, ordered, 0.0), axis=1)
            theta = (low + weight * (high - low))[:, None]
        else:
            mean = tl.math.div_rn(tl.sum(normalised, axis=1), count)[:, None]
            centred = tl.where(valid, normalised - mean, 0.0)
            spread = tl.math.sqrt_rn(tl.math.div_rn(tl.sum(centred * centred, axis=1), count))[:, None]
            theta = mean + kappa * spread
        theta = tl.minimum(theta, 1.0)  # [ROWS, 1]
        span = 1.0 - theta
        # 3. focusing: ((m - theta)+ / (1 - theta))^gamma; a degenerate span keeps the peak only
        lifted = tl.maximum(normalised - theta, 0.0) / tl.maximum(span, 1e-12)
        sharp = tl.where(lifted > 0.0, tl.exp(gamma * tl.log(tl.maximum(lifted, 1e-30))), 0.0)
        peak_only = tl.where(clean >= raw_max, 1.0, 0.0)  # the peak itself, found without arithmetic
        focused = tl.where(span > 1e-12, sharp, peak_only)
        focused = tl.where(valid, tl.where(raw_max > 0.0, focused, 0.0), 0.0)
        if SMOOTH:  # 3x3 mean on the grid, zero outside it: round-trip the rows through scratch
            tl.store(scratch_ptr + rows[:, None] * stride_row + offsets[None, :], focused, mask=valid)
            tl.debug_barrier()
            y = offsets // grid_width
            x = offsets % grid_width
            height = (num_patches + grid_width - 1) // grid_width
            total = tl.zeros([ROWS, BLOCK], dtype=tl.float32)
            for dy in tl.static_range(-1, 2):
                for dx in tl.static_range(-1, 2):
                    ny, nx = y + dy, x + dx
                    inside = (offsets < num_patches) & (ny >= 0) & (ny < height) & (nx >= 0) & (nx < grid_width)
                    total += tl.load(scratch_ptr + rows[:, None] * stride_row + (ny * grid_width + nx)[None, :],
                                     mask=live[:, None] & inside[None, :], other=0.0)
            focused = tl.where(valid, total / 9.0, 0.0)
        # 4. quantise (half-up) with a per-row scale; the focused mass in raw units
        focused_max = tl.max(focused, axis=1)  # [ROWS]
        quantized = tl.floor(255.0 * focused / tl.maximum(focused_max, 1e-12)[:, None] + 0.5)
        tl.store(quantized_ptr + rows[:, None] * num_patches + offsets[None, :], quantized.to(tl.uint8), mask=valid)
        row_max = tl.max(raw_max, axis=1)  # [ROWS, 1] -> [ROWS]
        tl.store(scale_ptr + rows, focused_max * row_max / 255.0, mask=live)
        tl.store(mass_ptr + rows, tl.sum(focused, axis=1) * row_max, mask=live)

    return threshold_focus_kernel


def threshold_focus_triton(
    maps: torch.Tensor,
    grid: tuple[int, int],
    mode: str = "mean_std",
    kappa: float = DEFAULT_KAPPA,
    percentile: float = DEFAULT_PERCENTILE,
    gamma: float = DEFAULT_GAMMA,
    smooth: bool = False,
) -> FocusedMaps:
    """The fused kernel: same signature and result as ``threshold_focus_reference``; one launch for [B, T, N]."""
    import triton

    batch, frames, patches = maps.shape
    rows = maps.reshape(batch * frames, patches).contiguous()  # [B, T, N] -> [B*T, N]
    quantized = torch.empty((batch * frames, patches), dtype=torch.uint8, device=maps.device)
    scale = torch.empty(batch * frames, dtype=torch.float32, device=maps.device)
    mass = torch.empty_like(scale)
    scratch = torch.empty_like(rows, dtype=torch.float32) if smooth else rows
    block = triton.next_power_of_2(patches)
    rows_per_program = max(1, TILE_ENTRIES // block)
    if batch * frames:
        _kernel()[(triton.cdiv(batch * frames, rows_per_program),)](
            rows, quantized, scale, mass, scratch,
            # count = N as a float argument: Triton compiles an int argument equal to 1 as a
            # constant, which has no .to(), so a 1-patch map would not compile on a GPU
            batch * frames, patches, float(patches), grid[1], rows.stride(0),
            float(kappa), float(percentile) / 100.0 * (patches - 1), float(gamma),
            PERCENTILE=mode == "percentile", SMOOTH=bool(smooth), ROWS=rows_per_program, BLOCK=block,
        )
    return FocusedMaps(quantized.reshape(batch, frames, patches), scale.reshape(batch, frames), mass.reshape(batch, frames))


def threshold_focus(maps: torch.Tensor, grid: tuple[int, int], **options) -> FocusedMaps:
    """The one entry point the server calls: CUDA -> Triton kernel, CPU -> reference.

    ``STAA_KERNELS=reference`` or ``=triton`` forces either path.
    """
    triton = use_triton(maps.is_cuda)
    mode = options.get("mode", "mean_std")
    if mode not in MODES:
        raise ValueError(f"threshold mode must be one of {MODES}, got {mode!r}")
    return (threshold_focus_triton if triton else threshold_focus_reference)(maps, grid, **options)
