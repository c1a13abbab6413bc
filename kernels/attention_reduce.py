"""Reduce one layer's attention probabilities to what STAA needs, as soon as they exist.

STAA reads two small things per layer (ARCHITECTURE §4):
- spatial:  cls_row[r, p]  = mean_h A_s[r, h, 0, 1+p]      A_s: [B*T, H, 1+N, 1+N] -> [B*T, N]
- temporal: received[r, t] = mean_h mean_t' A_t[r, h, t', t]  A_t: [B*N, H, T, T]   -> [B*N, T]
The CLS reduction touches only row 0 of each head (H*(1+N) of the H*(1+N)^2 entries: 1/(1+N) of
the tensor); the received reduction reads the whole small temporal tensor once. Called from the
adapter's hooks, so no layer's full attention outlives its layer: per window the explanation keeps
L*(B*T*N + B*N*T) floats instead of L*(B*T*H*(1+N)^2 + B*N*H*T^2).

Each reduction has a Triton kernel (one program per output row) and a PyTorch twin with the same
signature; ``cls_row_mean`` and ``received_mean`` dispatch: CUDA -> Triton, CPU -> PyTorch,
``STAA_KERNELS`` forces either (as in threshold_focus).
"""

from __future__ import annotations

import functools

import torch

from kernels.dispatch import use_triton


def cls_row_mean_reference(probs: torch.Tensor) -> torch.Tensor:
    """``[R, H, 1+N, 1+N]`` -> float32 ``[R, N]``: head-mean of the CLS query row, CLS key dropped."""
    rows = probs[:, :, 0, 1:]  # [R, H, 1+N, 1+N] -> [R, H, N]
    return (rows if rows.dtype == torch.float32 else rows.float()).mean(dim=1)  # -> [R, N]


def received_mean_reference(probs: torch.Tensor) -> torch.Tensor:
    """``[R, H, T, T]`` -> float32 ``[R, T]``: attention each key frame receives, averaged over heads and queries."""
    values = probs if probs.dtype == torch.float32 else probs.float()
    return values.mean(dim=(1, 2))  # [R, H, T(query), T(key)] -> [R, T]


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def cls_row_kernel(probs_ptr, out_ptr, heads, patches, stride_row, stride_head, stride_key,
                       BLOCK: tl.constexpr):
        row = tl.program_id(0)
        keys = tl.arange(0, BLOCK)
        valid = keys < patches
        total = tl.zeros([BLOCK], dtype=tl.float32)
        for head in range(heads):  # query 0 of each head, keys 1..N
            pointer = probs_ptr + row * stride_row + head * stride_head + (keys + 1) * stride_key
            total += tl.load(pointer, mask=valid, other=0.0).to(tl.float32)
        tl.store(out_ptr + row * patches + keys, total / heads, mask=valid)

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
        tl.store(out_ptr + row * frames + keys, total / (heads * frames), mask=valid)

    return cls_row_kernel, received_kernel


def cls_row_mean_triton(probs: torch.Tensor) -> torch.Tensor:
    import triton

    rows, heads, tokens, _ = probs.shape
    out = torch.empty((rows, tokens - 1), dtype=torch.float32, device=probs.device)
    if rows:
        _kernels()[0][(rows,)](probs, out, heads, tokens - 1, probs.stride(0), probs.stride(1), probs.stride(3),
                               BLOCK=triton.next_power_of_2(tokens - 1))
    return out


def received_mean_triton(probs: torch.Tensor) -> torch.Tensor:
    import triton

    rows, heads, frames, _ = probs.shape
    out = torch.empty((rows, frames), dtype=torch.float32, device=probs.device)
    if rows:
        _kernels()[1][(rows,)](probs, out, heads, frames, probs.stride(0), probs.stride(1), probs.stride(2),
                               probs.stride(3), BLOCK=triton.next_power_of_2(frames))
    return out


def reducers_for(device: torch.device):
    """``(cls_row_mean, received_mean)`` implementations for tensors on ``device``, chosen once
    (a forward pass calls them per layer; deciding per call costs as much as a small reduction)."""
    if use_triton(torch.device(device).type == "cuda"):
        return cls_row_mean_triton, received_mean_triton
    return cls_row_mean_reference, received_mean_reference


def cls_row_mean(probs: torch.Tensor) -> torch.Tensor:
    return cls_row_mean_triton(probs) if use_triton(probs.is_cuda) else cls_row_mean_reference(probs)


def received_mean(probs: torch.Tensor) -> torch.Tensor:
    return received_mean_triton(probs) if use_triton(probs.is_cuda) else received_mean_reference(probs)
