"""The rows of a layer's attention STAA reads, recomputed exactly beside a fused attention.

A fused attention (scaled_dot_product_attention, flash) never materialises the probabilities
P = softmax(Q K^T * scale) ``[R, H, S, S]``; STAA reads two kinds of row of them (ARCHITECTURE §4),
as head-sums (every STAA map is normalised, so the 1/H of a mean would be work without effect):
- query row:  row[r, k] = sum_h P[r, h, q0, k]          one query's softmax: 1/S of the scores
- column sum: col[r, k] = sum_h sum_q P[r, h, q, k]     the attention each key receives
The query row costs one [1, d] x [d, S] product per head, so it needs no kernel. The column sum
needs every score; materialising P costs 4*H*S^2 bytes per row r (118 MB per layer for VideoMAE-base,
S = 1568), so ``column_sum`` never holds it whole:
- ``column_sum_reference`` (CPU): per row, query chunks of ``CHUNK_BYTES`` scores, softmax, summed;
- ``column_sum_triton`` (CUDA): one program per (query block, row, head); pass 1 runs the online
  softmax over key blocks for each query's log-sum-exp (as flash attention does), pass 2 recomputes
  the scores, exponentiates against it and sums over its queries. It reads Q once and K twice:
  (S*d + 2*S*d * S/BLOCK_Q) * H * bytes per row r, and writes one partial row per program, summed
  afterwards (in a fixed order, so the result is deterministic, unlike atomics).
Where the probabilities exist anyway (eager attention, the oracle), ``*_from_probabilities`` read them.

Letters: R rows (batch x blocks), H heads, S tokens, d head size.
"""

from __future__ import annotations

import functools

import torch

from staa_serve.kernels.dispatch import use_triton

CHUNK_BYTES = 4 * 2**20  # scores per query chunk of the CPU column sum (best of 1-8 MiB inside a VideoMAE-base forward)


def sum_float32(values: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Sum over ``dims``, accumulating half precision in float32."""
    return values.sum(dim=dims) if values.dtype == torch.float32 else values.sum(dim=dims, dtype=torch.float32)


def query_row_from_probabilities(probs: torch.Tensor, query: int = 0, per_head: bool = False) -> torch.Tensor:
    """``[R, H, S, S]`` -> float32 ``[R, S]``: head-sum of one query's row (``[R, H, S]`` per head)."""
    row = probs.select(2, query)  # [R, H, S]
    return row.float() if per_head else sum_float32(row, (1,))  # -> [R, S]


def column_sum_from_probabilities(probs: torch.Tensor, per_head: bool = False) -> torch.Tensor:
    """``[R, H, S, S]`` -> float32 ``[R, S]``: attention each key receives, summed over heads and queries
    (``[R, H, S]``, over queries only, per head)."""
    return sum_float32(probs, (2,) if per_head else (1, 2))


def query_row(query: torch.Tensor, key: torch.Tensor, scale: float, row: int = 0, per_head: bool = False) -> torch.Tensor:
    """``query``, ``key`` ``[R, H, S, d]`` -> float32 ``[R, S]``: head-sum of softmax(q_row K^T * scale)
    (``[R, H, S]`` per head).

    A broadcast product summed over d, not a matmul: K arrives as a strided view of the qkv
    projection, which a batched matmul would first copy whole. Scores in float32 under any dtype,
    as fused attention kernels compute them."""
    scores = (query[:, :, row:row + 1].float() * scale * key.float()).sum(dim=-1)  # [R, H, 1, d] * [R, H, S, d] -> [R, H, S]
    probs = scores.softmax(dim=-1)
    return probs if per_head else probs.sum(dim=1)  # [R, H, S] -> [R, S]


def column_sum_reference(query: torch.Tensor, key: torch.Tensor, scale: float, per_head: bool = False) -> torch.Tensor:
    """``query``, ``key`` ``[R, H, S, d]`` -> float32 ``[R, S]``: sum over heads and queries of
    softmax(Q K^T * scale) (``[R, H, S]``, over queries only, per head), in query chunks of about
    ``CHUNK_BYTES`` of scores (``_chunked_pass``)."""
    return _chunked_pass(query, key, scale, per_head=per_head)[1]


def _chunked_pass(query: torch.Tensor, key: torch.Tensor, scale: float, value: torch.Tensor | None = None,
                  per_head: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One pass over query chunks, one row r at a time (R is the batch: joint attention): the column
    sums float32 ``[R, S]`` (``[R, H, S]`` per head) and, given ``value``, the attention output ``[R, H, S, d]`` from the same
    chunk's probabilities. K^T stays a strided view per row: batched matmuls take it as it is, where a
    4-D matmul over all rows copied it for every chunk (15x SDPA's time at batch 8)."""
    rows, heads, tokens, _ = query.shape
    chunk = max(1, CHUNK_BYTES // max(1, heads * tokens * 4))
    output = None if value is None else torch.empty(rows, heads, tokens, value.shape[-1], dtype=query.dtype,
                                                    device=query.device)
    total = torch.empty(rows, heads, tokens, dtype=torch.float32, device=query.device)
    for row in range(rows):
        key_t = key[row].transpose(-2, -1).float()  # [H, d, S], float32 scores under any dtype
        received = torch.zeros(heads, tokens, dtype=torch.float32, device=query.device)
        for start in range(0, tokens, chunk):
            scores = torch.matmul(query[row, :, start:start + chunk].float(), key_t)  # [H, c, S]
            probs = scores.mul_(scale).softmax(dim=-1)
            if output is not None:
                output[row, :, start:start + chunk] = torch.matmul(probs.to(value.dtype), value[row])  # [H, c, d]
            received += probs.sum(dim=1)  # [H, c, S] -> [H, S]
        total[row] = received
    return output, (total if per_head else total.sum(dim=1))  # [R, H, S] -> [R, S]


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def column_sum_kernel(q_ptr, k_ptr, partial_ptr, heads, tokens, head_size, scale,
                          stride_qr, stride_qh, stride_qs, stride_qd,
                          stride_kr, stride_kh, stride_ks, stride_kd,
                          stride_pr, stride_pb,
                          BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
                          PRECISION: tl.constexpr):
        block, row_head = tl.program_id(0), tl.program_id(1)
        row, head = row_head // heads, row_head % heads
        queries = block * BLOCK_Q + tl.arange(0, BLOCK_Q)
        dims = tl.arange(0, BLOCK_D)
        query_valid = queries < tokens
        q = tl.load(q_ptr + row * stride_qr + head * stride_qh + queries[:, None] * stride_qs + dims[None, :] * stride_qd,
                    mask=query_valid[:, None] & (dims[None, :] < head_size), other=0.0)  # [BLOCK_Q, BLOCK_D]
        k_base = k_ptr + row * stride_kr + head * stride_kh
        # Pass 1: each query's log-sum-exp by the online softmax (running max, rescaled sum).
        running_max = tl.full([BLOCK_Q], float("-inf"), dtype=tl.float32)
        running_sum = tl.zeros([BLOCK_Q], dtype=tl.float32)
        for start in range(0, tokens, BLOCK_K):
            keys = start + tl.arange(0, BLOCK_K)
            k = tl.load(k_base + keys[:, None] * stride_ks + dims[None, :] * stride_kd,
                        mask=(keys[:, None] < tokens) & (dims[None, :] < head_size), other=0.0)  # [BLOCK_K, BLOCK_D]
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale  # [BLOCK_Q, BLOCK_K], float32 accumulation
            scores = tl.where(keys[None, :] < tokens, scores, float("-inf"))
            new_max = tl.maximum(running_max, tl.max(scores, axis=1))
            running_sum = running_sum * tl.exp(running_max - new_max) + tl.sum(tl.exp(scores - new_max[:, None]), axis=1)
            running_max = new_max
        log_sum_exp = running_max + tl.log(running_sum)  # [BLOCK_Q]
        # Pass 2: the probabilities block by block, summed over this block's valid queries.
        for start in range(0, tokens, BLOCK_K):
            keys = start + tl.arange(0, BLOCK_K)
            key_valid = keys < tokens
            k = tl.load(k_base + keys[:, None] * stride_ks + dims[None, :] * stride_kd,
                        mask=key_valid[:, None] & (dims[None, :] < head_size), other=0.0)
            scores = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            probs = tl.exp(scores - log_sum_exp[:, None])
            probs = tl.where(query_valid[:, None] & key_valid[None, :], probs, 0.0)
            tl.store(partial_ptr + row * stride_pr + (head * tl.num_programs(0) + block) * stride_pb + keys,
                     tl.sum(probs, axis=0), mask=key_valid)

    return column_sum_kernel


def column_sum_triton(query: torch.Tensor, key: torch.Tensor, scale: float, per_head: bool = False,
                      block_q: int = 64, block_k: int = 64) -> torch.Tensor:
    """``column_sum_reference`` as a Triton kernel (any strides; float32 accumulation)."""
    import triton

    rows, heads, tokens, head_size = query.shape
    query_blocks = triton.cdiv(tokens, block_q)
    partial = torch.empty((rows, heads * query_blocks, tokens), dtype=torch.float32, device=query.device)
    if rows and tokens:
        _kernel()[(query_blocks, rows * heads)](
            query, key, partial, heads, tokens, head_size, scale,
            *query.stride(), *key.stride(), partial.stride(0), partial.stride(1),
            BLOCK_Q=block_q, BLOCK_K=block_k, BLOCK_D=max(16, triton.next_power_of_2(head_size)),
            # float32 scores as the reference computes them (the default, tf32, keeps 10 mantissa bits)
            PRECISION="ieee")
    if per_head:  # [R, H * blocks, S] -> [R, H, blocks, S] -> [R, H, S]
        return partial.view(rows, heads, query_blocks, tokens).sum(dim=2)
    return partial.sum(dim=1)  # [R, H * blocks, S] -> [R, S]


def column_sum(query: torch.Tensor, key: torch.Tensor, scale: float, per_head: bool = False) -> torch.Tensor:
    """Dispatch (kernels.dispatch): CUDA -> Triton, CPU -> the chunked reference."""
    return (column_sum_triton if use_triton(query.is_cuda) else column_sum_reference)(query, key, scale, per_head)


def attention_chunked(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float,
                      per_head: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention output ``[R, H, S, d]`` and its column sums float32 ``[R, S]`` in one pass over query
    chunks (Q K^T computed once), for the CPU: there the column sum is bound by its Q K^T product, and
    computing the output from the same chunk's probabilities costs less than SDPA plus a second product
    (whole VideoMAE-base explanations: 1.21x the plain forward against 1.26x)."""
    return _chunked_pass(query, key, scale, value, per_head)
