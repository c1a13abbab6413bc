"""The end of a CPU capture: the chosen layers' kept-whole attention summed into STAA's two inputs.

When a small model's attention fits in memory, the TimeSformer taps keep each layer's probabilities
whole and reduce them after the forward (models/adapters/timesformer.py). What STAA reads of them:
- cls_rows[b, t, n]  = sum_l sum_h A_s^l[b*T + t, h, 0, 1+n]          L x [B*T, H, 1+N, 1+N] -> [B, T, N]
- received[b, n, t]  = sum_l sum_h sum_t' A_t^l[b*N + n, h, t', t]     L x [B*N, H, T, T]     -> [B, N, T]
(sums: STAA normalises every map, so the factors of a mean would be work without effect).

Right after a forward each distinct PyTorch operator call costs 10-25 us on CPU, several times its
cost a moment later (its code has left the cache), and the PyTorch reference takes eight of them.
The numba kernel does both sums in one compiled call, reading only the CLS query row of each spatial
block. It runs for float32 CPU tensors outside autograd when numba is installed and
``STAA_KERNELS`` is not ``reference``; every other case takes the (differentiable) reference. Compiled on first use and cached on disk
(``cache=True``), once per layer count.
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
    cls_rows, received = _numba_kernel()(tuple(probs.numpy() for probs in spatial),
                                         tuple(probs.numpy() for probs in temporal), frames, patches)
    return torch.from_numpy(cls_rows), torch.from_numpy(received)


def whole_sums(spatial: list[torch.Tensor], temporal: list[torch.Tensor], frames: int,
               patches: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """STAA's two inputs from kept-whole attention (see the module docstring; None for an empty list)."""
    if (spatial and temporal and spatial[0].dtype == temporal[0].dtype == torch.float32  # all layers alike
            and spatial[0].device.type == "cpu" and not spatial[0].requires_grad and use_compiled_cpu()):
        return whole_sums_numba(spatial, temporal, frames, patches)
    return whole_sums_reference(spatial, temporal, frames, patches)
