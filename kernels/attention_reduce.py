"""Reduce one layer's attention probabilities to what STAA needs, as soon as they exist.

STAA reads two small things per layer (ARCHITECTURE §4), here as sums; the caller divides once
per capture (by H, and H*T) for all layers together, since a mean per layer costs twice the
operations of a sum on CPU (the divide and a scalar copy) and every STAA map is normalised anyway:
- spatial:  cls_row[r, p]  = sum_h A_s[r, h, 0, 1+p]       A_s: [B*T, H, 1+N, 1+N] -> [B*T, N]
- temporal: received[r, t] = sum_h sum_t' A_t[r, h, t', t]  A_t: [B*N, H, T, T]   -> [B*N, T]
The CLS reduction touches only row 0 of each head (H*(1+N) of the H*(1+N)^2 entries: 1/(1+N) of
the tensor); the received reduction reads the whole small temporal tensor once. Called from the
adapter's hooks, so no layer's full attention outlives its layer: per window the explanation keeps
L*(B*T*N + B*N*T) floats instead of L*(B*T*H*(1+N)^2 + B*N*H*T^2).

Each reduction has a Triton kernel (one program per output row) and a PyTorch twin with the same
signature; both write into ``out`` when given (the taps pass one layer's slice of a per-capture
buffer, so no per-layer tensor is allocated and none is stacked afterwards). ``cls_row_sum`` and
``received_sum`` dispatch: CUDA -> Triton, CPU -> PyTorch, ``STAA_KERNELS`` forces either (as in
threshold_focus).
"""

from __future__ import annotations

import functools

import torch

from kernels.dispatch import use_triton


def _output(out: torch.Tensor | None, shape: tuple[int, int], device) -> torch.Tensor:
    if out is None:
        return torch.empty(shape, dtype=torch.float32, device=device)
    if out.shape != shape or out.dtype != torch.float32:
        raise ValueError(f"out must be float32 {list(shape)}, got {out.dtype} {list(out.shape)}")
    return out


def cls_row_sum_reference(probs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[R, H, 1+N, 1+N]`` -> float32 ``[R, N]``: head-sum of the CLS query row, CLS key dropped."""
    rows = probs[:, :, 0, 1:]  # [R, H, 1+N, 1+N] -> [R, H, N]
    if out is None:
        return rows.sum(dim=1, dtype=torch.float32)  # -> [R, N]
    return torch.sum(rows, dim=1, dtype=torch.float32, out=_output(out, (rows.shape[0], rows.shape[2]), probs.device))


def received_sum_reference(probs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``[R, H, T, T]`` -> float32 ``[R, T]``: attention each key frame receives, summed over heads and queries."""
    if out is None:
        return probs.sum(dim=(1, 2), dtype=torch.float32)  # [R, H, T(query), T(key)] -> [R, T]
    return torch.sum(probs, dim=(1, 2), dtype=torch.float32, out=_output(out, (probs.shape[0], probs.shape[3]), probs.device))


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
        tl.store(out_ptr + row * patches + keys, total, mask=valid)

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


def cls_row_sum_triton(probs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    import triton

    rows, heads, tokens, _ = probs.shape
    out = _output(out, (rows, tokens - 1), probs.device)
    if rows:  # the kernel writes rows of a contiguous [R, N]: a strided ``out`` would need its strides
        assert out.is_contiguous(), "out must be contiguous"
        _kernels()[0][(rows,)](probs, out, heads, tokens - 1, probs.stride(0), probs.stride(1), probs.stride(3),
                               BLOCK=triton.next_power_of_2(tokens - 1))
    return out


def received_sum_triton(probs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    import triton

    rows, heads, frames, _ = probs.shape
    out = _output(out, (rows, frames), probs.device)
    if rows:
        assert out.is_contiguous(), "out must be contiguous"
        _kernels()[1][(rows,)](probs, out, heads, frames, probs.stride(0), probs.stride(1), probs.stride(2),
                               probs.stride(3), BLOCK=triton.next_power_of_2(frames))
    return out


def reducers_for(device: torch.device):
    """``(cls_row_sum, received_sum)`` implementations for tensors on ``device``, chosen once
    (a forward pass calls them per layer; deciding per call costs as much as a small reduction)."""
    if use_triton(torch.device(device).type == "cuda"):
        return cls_row_sum_triton, received_sum_triton
    return cls_row_sum_reference, received_sum_reference


def cls_row_sum(probs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    return (cls_row_sum_triton if use_triton(probs.is_cuda) else cls_row_sum_reference)(probs, out)


def received_sum(probs: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    return (received_sum_triton if use_triton(probs.is_cuda) else received_sum_reference)(probs, out)
