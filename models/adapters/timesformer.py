"""TimeSformer adapter: where its attention lives and how to read it during the forward pass.

Facts of ``transformers`` 5.x ``modeling_timesformer`` this relies on:
- Hidden states are ``[B, 1 + N*T, D]``: the CLS token, then patch tokens ordered (patch, frame),
  patches row-major (y, x) on the h x w grid (see TimesformerEmbeddings / TimesformerLayer).
- Each layer runs *temporal* attention over ``[B*N, T, D]`` (batch index b*N + p) and then
  *spatial* attention over ``[B*T, 1+N, D]`` (batch index b*T + t) whose row 0 is that frame's
  copy of the CLS token. Both go through ``TimesformerSelfAttention.attn_drop``, a Dropout that
  receives the softmax probabilities; in eval mode it returns them unchanged.
- HF returns only spatial attentions and always runs eager attention; temporal attention is
  reachable only through a hook.

Hooks attach from outside (the HF model is never edited) and reduce each probability tensor
as soon as it exists, so no layer's full ``[B*T, H, 1+N, 1+N]`` tensor outlives its layer.

Letters: B batch, T frames, N = h*w patches per frame, H heads, L layers.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from kernels.attention_reduce import cls_row_mean, received_mean
from models.errors import UnsupportedModel


@dataclass
class AttentionRecord:
    """Attention reduced per layer during one forward pass.

    Attributes:
        spatial_cls: per layer, ``[B, T, N]``: head-mean CLS->patch row of each frame's block.
        temporal_received: per layer, ``[B, N, T]``: head-mean, query-mean attention that each
            patch position's frame t *receives* in temporal attention.
        seconds: wall time spent inside the hooks (part of attribution, not of the forward).
    """

    spatial_cls: list[torch.Tensor] = field(default_factory=list)
    temporal_received: list[torch.Tensor] = field(default_factory=list)
    seconds: float = 0.0


class TimesformerAdapter:
    architecture = "timesformer"

    def __init__(self, model: torch.nn.Module):
        config = model.config
        if getattr(config, "attention_type", None) != "divided_space_time":
            raise UnsupportedModel(f"TimesformerAdapter needs divided_space_time attention, got {config.attention_type!r}")
        self.model = model
        self.num_frames = config.num_frames
        self.grid = (config.image_size // config.patch_size,) * 2
        self.num_patches = self.grid[0] * self.grid[1]
        self.layers = list(model.timesformer.encoder.layer)

    @contextmanager
    def capture(self):
        """Hooks on every layer's temporal and spatial ``attn_drop``; yields the AttentionRecord."""
        record = AttentionRecord()
        handles = []
        for layer in self.layers:
            handles.append(layer.temporal_attention.attention.attn_drop.register_forward_hook(self._temporal_hook(record)))
            handles.append(layer.attention.attention.attn_drop.register_forward_hook(self._spatial_hook(record)))
        try:
            yield record
        finally:
            for handle in handles:
                handle.remove()

    def _spatial_hook(self, record: AttentionRecord):
        frames, patches = self.num_frames, self.num_patches

        def hook(module, inputs, probs):
            started = time.perf_counter()
            rows, _, tokens, _ = probs.shape  # [B*T, H, 1+N, 1+N]
            assert tokens == 1 + patches, f"spatial attention over {tokens} tokens, expected {1 + patches}"
            cls_row = cls_row_mean(probs)  # [B*T, H, 1+N, 1+N] -> [B*T, N]
            record.spatial_cls.append(cls_row.reshape(rows // frames, frames, patches))  # -> [B, T, N]
            record.seconds += time.perf_counter() - started

        return hook

    def _temporal_hook(self, record: AttentionRecord):
        frames, patches = self.num_frames, self.num_patches

        def hook(module, inputs, probs):
            started = time.perf_counter()
            rows, _, queries, _ = probs.shape  # [B*N, H, T, T]
            assert queries == frames, f"temporal attention over {queries} frames, expected {frames}"
            received = received_mean(probs)  # [B*N, H, T(query), T(key)] -> [B*N, T]
            record.temporal_received.append(received.reshape(rows // patches, patches, frames))  # -> [B, N, T]
            record.seconds += time.perf_counter() - started

        return hook

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` ``[B, T, 3, H, W]`` -> logits ``[B, num_labels]``."""
        return self.model(pixel_values=pixel_values).logits

    @torch.inference_mode()
    def plain_forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The fastest inference path (TimeSformer always runs eager attention), no hooks."""
        return self.model(pixel_values=pixel_values).logits
