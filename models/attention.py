"""The one way STAA reads attention: every attention layer of a served model computes through
``attend``, and a capture collects the rows it reads there.

``attend`` has the signature of a ``transformers`` attention function, and is registered with
its AttentionInterface as ``"staa"``: VideoMAE and ViViT call it through their
``config._attn_implementation``. TimeSformer's self-attention calls no interface (it always runs
its own eager maths), so its adapter stands in a module computing the same Q, K, V from the same
weights that calls ``attend`` too. The model's code is never edited; its weights are untouched.

Each attention module carries a ``Site``: its layer, its role in the adapter's layout and the row
STAA reads there (``QUERY_ROW``: the head-sum of query 0's softmax row, a CLS token's attention;
``COLUMN_SUM``: the head- and query-sum of the whole softmax, the attention each key receives).
Outside a capture ``attend`` is plain attention. Under one it also hands that row, float32
``[R, S]``, to the capture; how it computes it is the model's ``implementation``:
- ``"eager"`` (the oracle): P = softmax(Q K^T * scale) materialised, output P @ V, the row read
  from P. The same operations, in the same order, as ``transformers``' eager attention.
- ``"fused"``: output from ``scaled_dot_product_attention`` (flash / memory-efficient kernels where
  the device has them), the row recomputed exactly from Q and K (``kernels.attention_rows``): one
  query's softmax, or column sums by a Triton kernel (CUDA), never S x S at once. On the CPU a
  column-sum site under a capture computes its output and sums in one chunked pass instead
  (``attention_chunked``): there the sums are bound by their Q K^T product, done once that way.
  Over at most ``SHORT_SEQUENCE`` keys (TimeSformer's 8-frame temporal attention) it materialises P instead,
  with or without a capture: that tiny P is the fastest way to the output (the SDPA kernels are made
  for long sequences) and hands STAA its row for one sum.
A capture that keeps probabilities (the attention baselines: rollout, gradient-weighted STAA)
makes every site eager and keeps each layer's P, with its gradient when asked. A capture that keeps
class inputs (class-sensitive STAA, ``method="staa_class"`` in ``models.staa``) also takes, at each
site the adapter marks as writing the token the classifier pools (every layer's CLS or joint
attention), that pooling row per head (``Site.class_readout``: the CLS query row, or the column sums
of mean pooling) and the values V.

Letters: R rows (batch x blocks), H heads, S tokens, d head size.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from staa_serve.kernels.attention_rows import (attention_chunked, column_sum, column_sum_from_probabilities, query_row,
                                               query_row_from_probabilities)
from staa_serve.kernels.dispatch import use_triton

IMPLEMENTATIONS = ("fused", "eager")
QUERY_ROW, COLUMN_SUM = "query_row", "column_sum"
SHORT_SEQUENCE = 32  # keys; at most this many, "fused" materialises P: SDPA kernels are built for long sequences


@dataclass
class Capture:
    """What the attention calls of one forward handed over, by the role of their site, in call order.

    Attributes:
        rows: role -> one float32 ``[R, S]`` per call (layers in order).
        probabilities: role -> one ``[R, H, S, S]`` per call, when the capture keeps them.
        class_inputs: at each class site (layers in order), when the capture keeps them (instead of
            STAA's rows: a capture serves one method): the pooling row per head, float32 ``[R, H, S]``,
            and the values ``[R, H, S, d]``.
        seconds: host time spent reading rows beside the attention (part of attribution, not of the
            forward; on CUDA, the time to launch that work, which the forward's time then includes).
    """

    keep_probabilities: bool = False
    keep_grad: bool = False
    keep_class_inputs: bool = False
    rows: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    probabilities: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    class_inputs: list[tuple[torch.Tensor, torch.Tensor]] = field(default_factory=list)
    seconds: float = 0.0


class Taps:
    """A model's attention implementation and the capture in progress, shared by its sites (one capture
    at a time: a model's forwards run on one thread, see server/engine.py)."""

    def __init__(self, implementation: str):
        self.implementation = implementation
        self.current: Capture | None = None

    @property
    def implementation(self) -> str:
        return self._implementation

    @implementation.setter
    def implementation(self, name: str) -> None:
        if name not in IMPLEMENTATIONS:
            raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, got {name!r}")
        self._implementation = name

    @contextmanager
    def capture(self, keep_probabilities: bool = False, keep_grad: bool = False, keep_class_inputs: bool = False):
        """Yields the ``Capture`` the attention calls inside the block fill."""
        if self.current is not None:
            raise RuntimeError("a capture is already in progress on this model")
        self.current = Capture(keep_probabilities, keep_grad, keep_class_inputs)
        try:
            yield self.current
        finally:
            self.current = None


@dataclass(frozen=True)
class Site:
    """One attention module's place: its role in the adapter's layout ("spatial", "temporal",
    "joint") and the row STAA reads there. Calls of one role come in layer order."""

    role: str
    readout: str
    taps: Taps
    class_readout: str | None = None  # at the class site: how the classifier pools tokens (QUERY_ROW, COLUMN_SUM)


def attach(module: torch.nn.Module, site: Site) -> None:
    """Give an attention module its site (read by ``attend`` from the module it is called with)."""
    module.__dict__["staa_site"] = site  # a plain attribute: not a parameter, buffer or submodule


def attend(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           attention_mask: torch.Tensor | None = None, scaling: float | None = None, dropout: float = 0.0,
           output_attentions: bool = False, **kwargs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A ``transformers`` attention function: ``query``, ``key``, ``value`` ``[R, H, S, d]`` ->
    output ``[R, S, H, d]`` and the probabilities ``[R, H, S, S]`` where they were computed (else None).
    Hands the site's row to the capture in progress, if any (see the module docstring)."""
    site: Site = module.staa_site
    capture = site.taps.current
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    if site.taps.implementation == "eager" or output_attentions or (capture is not None and capture.keep_probabilities):
        probs = _scores(query, key, scale, attention_mask).softmax(dim=-1)  # [R, H, S, S]
    elif key.shape[-2] <= SHORT_SEQUENCE:
        probs = _softmax_written_out(_scores(query, key, scale, attention_mask))
    else:
        return _fused(site, capture, query, key, value, attention_mask, scale, dropout if module.training else 0.0)
    probs = F.dropout(probs, p=dropout, training=module.training)
    if capture is not None:
        _keep(capture, site, probs, value)
    output = torch.matmul(probs, value)  # [R, H, S, d]
    return output.transpose(1, 2).contiguous(), probs


def _scores(query: torch.Tensor, key: torch.Tensor, scale: float, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Q K^T * scale (+ mask) ``[R, H, S, S]``, the operations of transformers' eager attention."""
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    return scores if attention_mask is None else scores + attention_mask


def _softmax_written_out(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis as exp(x - max) / sum. PyTorch's CPU softmax vectorises along the
    softmax axis, so over a handful of keys it costs several times these elementwise passes. (Only the
    exp is in place, on a temporary: the division must not overwrite what exp's backward reads.)"""
    exponentials = (scores - scores.amax(dim=-1, keepdim=True)).exp_()
    return exponentials / exponentials.sum(dim=-1, keepdim=True)


def _fused(site: Site, capture: Capture | None, query, key, value, attention_mask, scale: float,
           dropout: float) -> tuple[torch.Tensor, None]:
    """SDPA for the output; the site's row, if a capture wants it, recomputed from Q and K (a column sum
    on the CPU: output and sums from one chunked pass, ``attention_chunked``)."""
    wants_class = capture is not None and capture.keep_class_inputs and site.class_readout is not None
    if (capture is not None and site.readout == COLUMN_SUM and attention_mask is None and not dropout
            and not query.requires_grad and not use_triton(query.is_cuda)):
        per_head = wants_class and site.class_readout == COLUMN_SUM  # the same pass gives the per-head sums
        output, row = attention_chunked(query, key, value, scale, per_head)  # one pass: its time counts as the forward's
        if per_head:
            capture.class_inputs.append((row, value))
        elif wants_class:
            _keep_class_inputs(capture, site, query, key, value, scale)
        if not capture.keep_class_inputs:
            capture.rows.setdefault(site.role, []).append(row)
        return output.transpose(1, 2).contiguous(), None  # [R, H, S, d] -> [R, S, H, d]
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scale)
    if capture is not None and capture.keep_class_inputs:
        if wants_class:
            started = time.perf_counter()
            _keep_class_inputs(capture, site, query, key, value, scale)
            capture.seconds += time.perf_counter() - started
    elif capture is not None:
        started = time.perf_counter()
        capture.rows.setdefault(site.role, []).append(_read_row(site.readout, query, key, scale))
        capture.seconds += time.perf_counter() - started
    return output.transpose(1, 2).contiguous(), None  # [R, H, S, d] -> [R, S, H, d]


def _read_row(readout: str, query, key, scale: float, per_head: bool = False) -> torch.Tensor:
    """The row ``readout`` names, recomputed from Q and K: float32 ``[R, S]`` (``[R, H, S]`` per head)."""
    with torch.no_grad():  # a row is read, never differentiated
        return (query_row if readout == QUERY_ROW else column_sum)(query, key, scale, per_head=per_head)


def _row_from_probabilities(readout: str, probs: torch.Tensor, per_head: bool = False) -> torch.Tensor:
    """The row ``readout`` names, read from materialised probabilities (shapes as ``_read_row``)."""
    read = query_row_from_probabilities if readout == QUERY_ROW else column_sum_from_probabilities
    return read(probs, per_head=per_head)


def _keep_class_inputs(capture: Capture, site: Site, query, key, value, scale: float) -> None:
    """The class site's pooling row per head ``[R, H, S]``, recomputed from Q and K, and V."""
    capture.class_inputs.append((_read_row(site.class_readout, query, key, scale, per_head=True), value.detach()))


def _keep(capture: Capture, site: Site, probs: torch.Tensor, value: torch.Tensor) -> None:
    """The eager path's share of a capture: the row read from ``probs``, and ``probs`` itself when kept."""
    started = time.perf_counter()
    if capture.keep_probabilities:
        if capture.keep_grad and probs.requires_grad:
            probs.retain_grad()
        capture.probabilities.setdefault(site.role, []).append(probs)
    source = probs.detach()
    if not capture.keep_class_inputs:
        capture.rows.setdefault(site.role, []).append(_row_from_probabilities(site.readout, source))
    elif site.class_readout is not None:
        capture.class_inputs.append((_row_from_probabilities(site.class_readout, source, per_head=True), value.detach()))
    capture.seconds += time.perf_counter() - started


AttentionInterface.register("staa", attend)
