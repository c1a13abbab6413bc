"""Reduce one layer's attention probabilities to what STAA needs, as soon as they exist.

STAA reads two small things per layer (ARCHITECTURE §4), here as sums (every STAA map is
normalised, so the constant factors of a mean, 1/H and 1/(H*T), would be work without effect; on
CPU a scalar divide costs five operator calls):
- spatial:  cls_row[r, k]  = sum_h A_s[r, h, 0, k]          A_s: [B*T, H, 1+N, 1+N] -> [B*T, 1+N]
- temporal: received[r, t] = sum_h sum_t' A_t[r, h, t', t]  A_t: [B*N, H, T, T]   -> [B*N, T]
The CLS row keeps its CLS key (k = 0): dropping it is a slice, which callers do once for all layers
rather than per layer (each operator call inside a forward costs several microseconds on CPU).
The CLS reduction touches only row 0 of each head (1/(1+N) of the tensor); the received reduction
reads the whole small temporal tensor once. Called from the adapter's taps, so no layer's full
attention outlives its layer: per window the explanation keeps L*(B*T*(1+N) + B*N*T) floats instead
of L*(B*T*H*(1+N)^2 + B*N*H*T^2) (on CPU, where that is small, the TimeSformer adapter keeps the whole
tensors and calls these after the forward instead; see models/adapters/timesformer.py).

Each reduction has a Triton kernel (one program per output row) and a PyTorch twin with the same
signature; ``cls_row_sum`` and ``received_sum`` dispatch: CUDA -> Triton, CPU -> PyTorch,
``STAA_KERNELS`` forces either (as in threshold_focus).
"""

from __future__ import annotations

import functools

import torch

from kernels.dispatch import use_triton


def sum_float32(values: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Sum over ``dims``, accumulating half precision in float32 (a float32 input takes the plain call:
    asking for the dtype costs extra operator calls on CPU)."""
    return values.sum(dim=dims) if values.dtype == torch.float32 else values.sum(dim=dims, dtype=torch.float32)


def cls_row_sum_reference(probs: torch.Tensor) -> torch.Tensor:
    """``[R, H, 1+N, 1+N]`` -> float32 ``[R, 1+N]``: head-sum of the CLS query row (CLS key included)."""
    return sum_float32(probs.select(2, 0), (1,))  # [R, H, 1+N, 1+N] -> [R, H, 1+N] -> [R, 1+N]


def received_sum_reference(probs: torch.Tensor) -> torch.Tensor:
    """``[R, H, T, T]`` -> float32 ``[R, T]``: attention each key frame receives, summed over heads and queries."""
    return sum_float32(probs, (1, 2))  # [R, H, T(query), T(key)] -> [R, T]


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def cls_row_kernel(probs_ptr, out_ptr, heads, tokens, stride_row, stride_head, stride_key,
                       BLOCK: tl.constexpr):
        row = tl.program_id(0)
        keys = tl.arange(0, BLOCK)
        valid = keys < tokens
        total = tl.zeros([BLOCK], dtype=tl.float32)
        for head in range(heads):  # query 0 of each head, keys 0..N
            pointer = probs_ptr + row * stride_row + head * stride_head + keys * stride_key
            total += tl.load(pointer, mask=valid, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * tokens + keys, total, mask=valid)

    @triton.jit
    def received_kernel(probs_ptr, out_ptr, heads, frames, stride_row, stride_head, stride_query, stride_key,
                        BLOCK: tl.constexpr):
        row = tl.program_id(0)
        keys = tl.arange(0, BLOCK)
        valid = keys < frames
        total = tl.zeros([BLOCK], dtype=tl.float32)
        for head in range(heads):
            for query in range(frames):
                pointer = probs_ptr + row * stride_row + head * stride_head + query * stride_query + keys * stride_key
                total += tl.load(pointer, mask=valid, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * frames + keys, total, mask=valid)

    return cls_row_kernel, received_kernel


def cls_row_sum_triton(probs: torch.Tensor) -> torch.Tensor:
    import triton

    rows, heads, tokens, _ = probs.shape
    out = torch.empty((rows, tokens), dtype=torch.float32, device=probs.device)
    if rows:
        _kernels()[0][(rows,)](probs, out, heads, tokens, probs.stride(0), probs.stride(1), probs.stride(3),
                               BLOCK=triton.next_power_of_2(tokens))
    return out


def received_sum_triton(probs: torch.Tensor) -> torch.Tensor:
    import triton

    rows, heads, frames, _ = probs.shape
    out = torch.empty((rows, frames), dtype=torch.float32, device=probs.device)
    if rows:
        _kernels()[1][(rows,)](probs, out, heads, frames, probs.stride(0), probs.stride(1), probs.stride(2),
                               probs.stride(3), BLOCK=triton.next_power_of_2(frames))
    return out


def reducers_for(device: torch.device):
    """``(cls_row_sum, received_sum)`` implementations for tensors on ``device``, chosen once
    (a forward pass calls them per layer; deciding per call costs as much as a small reduction)."""
    if use_triton(torch.device(device).type == "cuda"):
        return cls_row_sum_triton, received_sum_triton
    return cls_row_sum_reference, received_sum_reference


def cls_row_sum(probs: torch.Tensor) -> torch.Tensor:
    return (cls_row_sum_triton if use_triton(probs.is_cuda) else cls_row_sum_reference)(probs)


def received_sum(probs: torch.Tensor) -> torch.Tensor:
    return (received_sum_triton if use_triton(probs.is_cuda) else received_sum_reference)(probs)
