"""The end of a CPU capture: the chosen layers' kept-whole attention summed into STAA's two inputs,
and (served path) STAA's maps made from them in the same call.

When a small model's attention fits in memory, the TimeSformer taps keep each layer's probabilities
whole and reduce them after the forward (models/adapters/timesformer.py). What STAA reads of them:
- cls_rows[b, t, n]  = sum_l sum_h A_s^l[b*T + t, h, 0, 1+n]          L x [B*T, H, 1+N, 1+N] -> [B, T, N]
- received[b, n, t]  = sum_l sum_h sum_t' A_t^l[b*N + n, h, t', t]     L x [B*N, H, T, T]     -> [B, N, T]
(sums: STAA normalises every map, so the factors of a mean would be work without effect).

Right after a forward each distinct PyTorch operator call costs 10-25 us on CPU, several times its
cost a moment later (its code has left the cache): the PyTorch reference of the sums takes eight,
``models.staa``'s maths eight more. ``whole_sums_numba`` does the sums in one compiled call reading
only the CLS query row of each spatial block; ``staa_maps_numba`` also normalises and weights them
(same results as ``staa_spatial`` / ``staa_temporal``, tested). Same process, shipped model, 400
interleaved pairs: +4.8 % over the plain forward with the PyTorch path, +3.4 % with the maps kernel.
The kernels run for float32 CPU tensors outside autograd when numba is installed and
``STAA_KERNELS`` is not ``reference``; every other case takes the (differentiable) reference.
Compiled on first use (the server's warm-up) and cached on disk, once per layer count.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from kernels.attention_reduce import sum_float32
from kernels.dispatch import use_compiled_cpu


def whole_sums_reference(spatial: list[torch.Tensor], temporal: list[torch.Tensor], frames: int,
                         patches: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """L x ``[B*T, H, 1+N, 1+N]`` and L x ``[B*N, H, T, T]`` -> float32 ``[B, T, N]`` and ``[B, N, T]``
    (None for an empty list)."""
    cls_rows = received = None
    if spatial:
        rows = torch.stack([probs.select(2, 0) for probs in spatial])  # [L, B*T, H, 1+N]: the CLS query rows
        cls_rows = sum_float32(rows, (0, 2))[:, 1:].reshape(-1, frames, patches)  # CLS key dropped -> [B, T, N]
    if temporal:  # the layers side by side as heads: one sum over heads and queries of all layers
        received = sum_float32(torch.cat(temporal, dim=1), (1, 2)).view(-1, patches, frames)  # [B*N, L*H, T, T] -> [B, N, T]
    return cls_rows, received


@functools.cache
def _numba_kernel():
    import numba

    @numba.njit(cache=True, nogil=True)
    def sums(spatial, temporal, frames, patches):  # tuples of float32 arrays, as in the reference
        heads = spatial[0].shape[1]
        cls_rows = np.zeros((spatial[0].shape[0], patches), dtype=np.float64)
        for layer in range(len(spatial)):
            probs = spatial[layer]
            for row in range(probs.shape[0]):
                for head in range(heads):
                    for patch in range(patches):
                        cls_rows[row, patch] += probs[row, head, 0, 1 + patch]
        received = np.zeros((temporal[0].shape[0], frames), dtype=np.float64)
        for layer in range(len(temporal)):
            probs = temporal[layer]
            for row in range(probs.shape[0]):
                for head in range(probs.shape[1]):
                    for query in range(frames):
                        for key in range(frames):
                            received[row, key] += probs[row, head, query, key]
        return (cls_rows.astype(np.float32).reshape(-1, frames, patches),
                received.astype(np.float32).reshape(-1, patches, frames))

    return sums


def whole_sums_numba(spatial: list[torch.Tensor], temporal: list[torch.Tensor], frames: int,
                     patches: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference's sums in one compiled call (float32 CPU tensors; accumulates in float64)."""
    cls_rows, received = _numba_kernel()(_arrays(spatial), _arrays(temporal), frames, patches)
    return torch.from_numpy(cls_rows), torch.from_numpy(received)


def numba_applies(spatial: list[torch.Tensor], temporal: list[torch.Tensor]) -> bool:
    """Whether the numba kernels take these lists: both non-empty, float32 CPU tensors outside autograd,
    numba importable and ``STAA_KERNELS`` not ``reference`` (every layer's attention is alike)."""
    return bool(spatial and temporal and spatial[0].dtype == temporal[0].dtype == torch.float32
                and spatial[0].device.type == "cpu" and not spatial[0].requires_grad and use_compiled_cpu())


def whole_sums(spatial: list[torch.Tensor], temporal: list[torch.Tensor], frames: int,
               patches: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """STAA's two inputs from kept-whole attention (see the module docstring; None for an empty list)."""
    if numba_applies(spatial, temporal):
        return whole_sums_numba(spatial, temporal, frames, patches)
    return whole_sums_reference(spatial, temporal, frames, patches)


@functools.cache
def _numba_maps_kernel():
    import numba

    sums = _numba_kernel()

    @numba.njit(cache=True, nogil=True)
    def maps(spatial, temporal, frames, patches, uniform_weights):
        cls_rows, received = sums(spatial, temporal, frames, patches)  # [B, T, N], [B, N, T]
        batch = cls_rows.shape[0]
        spatial_map = np.empty((batch, frames, patches), dtype=np.float32)
        temporal_map = np.empty((batch, frames), dtype=np.float32)
        for clip in range(batch):
            weights = np.zeros(patches)  # w[p] = sum_t s[t, p] (the 1/T cancels below)
            for frame in range(frames):
                total = 0.0  # float64, without a per-frame array
                for patch in range(patches):
                    total += cls_rows[clip, frame, patch]
                for patch in range(patches):  # a zero or NaN total fails "> 0": uniform, as normalise()
                    value = cls_rows[clip, frame, patch] / total if total > 0 else 1.0 / patches
                    spatial_map[clip, frame, patch] = value
                    weights[patch] += spatial_map[clip, frame, patch]
            if uniform_weights:
                weights[:] = 1.0
            tau = np.zeros(frames)
            for patch in range(patches):
                for frame in range(frames):
                    tau[frame] += weights[patch] * received[clip, patch, frame]
            total = tau.sum()
            for frame in range(frames):
                temporal_map[clip, frame] = tau[frame] / total if total > 0 else 1.0 / frames
        return spatial_map, temporal_map

    return maps


def staa_maps_numba(spatial: list[torch.Tensor], temporal: list[torch.Tensor], frames: int, patches: int,
                    uniform_weights: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``models.staa``'s ``staa_spatial`` and ``staa_temporal`` of ``whole_sums`` in the same one call:
    spatial map ``[B, T, N]`` (each frame sums to 1) and frame importance ``[B, T]`` (sums to 1).
    After a forward the eight operator calls of that maths cost as much as the sums' eight."""
    spatial_map, temporal_map = _numba_maps_kernel()(_arrays(spatial), _arrays(temporal), frames, patches,
                                                     uniform_weights)
    return torch.from_numpy(spatial_map), torch.from_numpy(temporal_map)


def _arrays(tensors: list[torch.Tensor]) -> tuple[np.ndarray, ...]:
    """The tensors' memory as numpy arrays (no copy), in the tuple numba types as one homogeneous value."""
    return tuple(probs.numpy() for probs in tensors)
