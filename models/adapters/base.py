"""What every architecture's adapter shares: attaching the attention sites once, the capture, the forward.

An adapter knows its model's token layout: which attention modules exist, what row STAA reads in
each (``models.attention.Site``) and how a forward's rows become ``models.staa.AttentionRows``.
It never does STAA's maths.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from staa_serve.models.attention import Capture, Site, Taps, attach
from staa_serve.models.staa import AttentionRows


@dataclass
class ClassHead:
    """Where a model's classifier reads its tokens: the attention calls writing into the token it
    pools (each layer's, in order), how it pools (``QUERY_ROW``: a CLS token; ``COLUMN_SUM``: the mean
    of all tokens), each call's output projection, the LayerNorm before the classifier (None: none)
    and the classifier."""

    modules: list[torch.nn.Module]
    readout: str
    output_projections: list[torch.nn.Linear]
    norm: torch.nn.LayerNorm | None
    classifier: torch.nn.Linear


class VideoAdapter:
    """Subclasses set ``architecture`` and implement ``_attention_modules`` and ``attention_rows``;
    ``_route_attention`` sends the model's attention calls through ``models.attention.attend``."""

    architecture = ""
    num_frames: int
    frames_per_slot: int = 1  # frames a token spans (a tubelet's depth)
    grid: tuple[int, int]  # patches per frame, (h, w)

    def __init__(self, model: torch.nn.Module, implementation: str = "fused"):
        self.model = model
        self.taps = Taps(implementation)
        self._route_attention()
        self.class_head = self._class_head()
        for module, role, readout in self._attention_modules():
            class_readout = self.class_head.readout if any(module is site for site in self.class_head.modules) else None
            attach(module, Site(role, readout, self.taps, class_readout))

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def implementation(self) -> str:
        return self.taps.implementation

    @contextmanager
    def using(self, implementation: str):
        """Run the block with another attention implementation (the benchmark's eager oracle)."""
        previous = self.taps.implementation
        self.taps.implementation = implementation
        try:
            yield self
        finally:
            self.taps.implementation = previous

    def capture(self, keep_probabilities: bool = False, keep_grad: bool = False, keep_class_inputs: bool = False):
        """Context manager yielding the ``Capture`` one forward inside it fills (``models.attention``)."""
        return self.taps.capture(keep_probabilities, keep_grad, keep_class_inputs)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` ``[B, T, 3, H, W]``, on any device -> logits ``[B, num_labels]`` on the model's.
        The input moves to the model's device and dtype here, the one place it crosses (differentiably)."""
        parameter = next(self.model.parameters())
        pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype, non_blocking=True)
        return self.model(pixel_values=pixel_values).logits

    def read(self, pixel_values: torch.Tensor, targets: torch.Tensor | None = None,
             class_sensitive: bool = False) -> tuple[torch.Tensor, AttentionRows, float]:
        """One forward under a capture: logits ``[B, C]``, the rows STAA reads, and the seconds spent
        reading them. ``class_sensitive``: the rows carry each token's contribution to the class
        ``targets`` ``[B]`` (default: the predicted class) instead, see ``class_contributions``."""
        with self.capture(keep_class_inputs=class_sensitive) as capture:
            logits = self.forward(pixel_values)
        if not class_sensitive:
            return logits, self.attention_rows(capture), capture.seconds
        started = time.perf_counter()
        targets = logits.argmax(dim=-1) if targets is None else targets.to(logits.device)
        rows = AttentionRows(None, None, frames_per_slot=self.frames_per_slot,  # a class capture keeps no STAA rows
                             class_contributions=self.class_contributions(capture, targets, logits))
        return logits, rows, capture.seconds + time.perf_counter() - started

    @torch.no_grad()
    def class_contributions(self, capture: Capture, targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """How much attending to each token moved the logit of its window's class ``targets`` ``[B]``,
        through each layer's attention into the pooled token: sum_h a_h[j] * (V_h[j] . w_h - m_h),
        float32 ``[L, B, T', N]`` (signed), m_h = the a_h-weighted mean of V_h . w_h: the value the head
        would have written attending to its average token, so what counts is the choice of tokens,
        not the magnitude of the values every token shares.

        a_h: the pooling row of head h (CLS row, or column sums for mean pooling); w = W_o^T u, the
        direction of log p_c at the classifier's input, W_c - sum_k p_k W_k (class c against what the
        model believes: on the held-out clips it tracked the decision better than W_c alone, see the
        README), through the final LayerNorm linearised at its input: times gamma, mean removed (the
        LayerNorm's centring; its 1/sigma is one positive factor per window, which every normalised map
        cancels). The residual stream carries each layer's output
        to the classifier; the MLPs and the blocks' own LayerNorms on the way are left out."""
        head = self.class_head
        weight = head.classifier.weight.float()  # [C, D]
        direction = weight[targets] - logits.float().softmax(dim=-1) @ weight  # [B, D]
        if head.norm is not None and head.norm.weight is not None:
            direction = direction * head.norm.weight.float()
        direction = direction - direction.mean(dim=-1, keepdim=True)
        # Every layer at once (a few large operations, not a few per layer).
        pooling = torch.stack([pooling for pooling, _ in capture.class_inputs])  # [L, R, H, S]
        values = torch.stack([value for _, value in capture.class_inputs]).float()  # [L, R, H, S, d]
        layers, rows, heads, tokens, head_size = values.shape
        batch = direction.shape[0]
        projections = torch.stack([projection.weight for projection in head.output_projections]).float()  # [L, D, D_heads]
        through = torch.matmul(direction, projections)  # [B, D] @ [L, D, D_heads] -> [L, B, D_heads]
        through = through.view(layers, batch, 1, heads, head_size, 1)  # heads concatenate in the output
        blocks = values.view(layers, batch, rows // batch, heads, tokens, head_size)  # R = B x blocks (frames)
        projected = torch.matmul(blocks, through).view(layers, rows, heads, tokens)  # V . w: [L, R, H, S]
        weighted = pooling * projected
        attended = weighted.sum(dim=-1, keepdim=True) / pooling.sum(dim=-1, keepdim=True)  # [L, R, H, 1]
        contributions = (weighted - pooling * attended).sum(dim=2)  # [L, R, S]
        return self._class_layout(contributions.flatten(0, 1)).unflatten(0, (layers, -1))  # [L*R, S] -> [L, B, T', N]

    def _route_attention(self) -> None:
        raise NotImplementedError

    def _attention_modules(self) -> list[tuple[torch.nn.Module, str, str]]:
        """(module ``attend`` is called with, role, readout) for every attention call, in forward order."""
        raise NotImplementedError

    def attention_rows(self, capture: Capture) -> AttentionRows:
        raise NotImplementedError

    def _class_head(self) -> ClassHead:
        raise NotImplementedError

    def _class_layout(self, contributions: torch.Tensor) -> torch.Tensor:
        """The class site's per-token values ``[R, S]`` -> ``[B, T', N]`` over patch tokens."""
        raise NotImplementedError
