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

from models.attention import Capture, Site, Taps, attach
from models.staa import AttentionRows


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
        reading them. ``class_sensitive``: the rows also carry each token's contribution to the class
        ``targets`` ``[B]`` (default: the predicted class), see ``class_contributions``."""
        with self.capture(keep_class_inputs=class_sensitive) as capture:
            logits = self.forward(pixel_values)
        rows = self.attention_rows(capture)
        if class_sensitive:
            started = time.perf_counter()
            targets = logits.argmax(dim=-1) if targets is None else targets.to(logits.device)
            rows.class_contributions = self.class_contributions(capture, targets, logits)
            capture.seconds += time.perf_counter() - started
        return logits, rows, capture.seconds

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
        layers = []
        for (pooling, value), projection in zip(capture.class_inputs, head.output_projections):  # [R, H, S], [R, H, S, d]
            through = direction @ projection.weight.float()  # [B, D] @ [D, D_heads] -> [B, D_heads]
            heads, head_size = value.shape[1], value.shape[3]
            through = through.view(-1, heads, head_size)  # [B, H, d]: heads concatenate in the output
            through = through.repeat_interleave(pooling.shape[0] // through.shape[0], dim=0)  # [R, H, d]
            projected = torch.einsum("rhsd,rhd->rhs", value.float(), through)  # [R, H, S]
            attended = (pooling * projected).sum(dim=-1, keepdim=True) / pooling.sum(dim=-1, keepdim=True)  # [R, H, 1]
            projected = projected - attended
            layers.append(self._class_layout((pooling * projected).sum(dim=1)))  # [R, S] -> [B, T', N]
        return torch.stack(layers)  # [L, B, T', N]

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
