"""TimeSformer adapter: its divided space-time layout and the rows STAA reads in it.

Facts of ``transformers`` 5.x ``modeling_timesformer`` this relies on:
- Hidden states are ``[B, 1 + N*T, D]``: the CLS token, then patch tokens ordered (patch, frame),
  patches row-major (y, x) on the h x w grid (see TimesformerEmbeddings / TimesformerLayer).
- Each layer runs *temporal* attention over ``[B*N, T, D]`` (batch index b*N + p) and then
  *spatial* attention over ``[B*T, 1+N, D]`` (batch index b*T + t) whose row 0 is that frame's
  copy of the CLS token, both in a ``TimesformerSelfAttention``: a ``qkv`` Linear, softmax of
  Q K^T * scale, its ``attn_drop`` Dropout, then P @ V.
- That module always runs its own eager maths (no AttentionInterface, no SDPA) and HF returns only
  spatial attentions. So the adapter stands ``InterfaceSelfAttention`` in its place: the same
  ``qkv`` and ``attn_drop`` modules (same parameter names, so the state dict is unchanged), the
  attention computed by ``models.attention.attend``.

Rows read: spatial attention, the CLS query row of each frame's block (``QUERY_ROW``) -> ``[B, T, N]``
per layer, the CLS key dropped; temporal attention, the attention each frame receives at each patch
position (``COLUMN_SUM``) -> ``[B, N, T]`` per layer.

Letters: B batch, T frames, N = h*w patches per frame, H heads, L layers, D hidden size.
"""

from __future__ import annotations

import torch

from staa_serve.models.adapters.base import ClassHead, VideoAdapter
from staa_serve.models.attention import COLUMN_SUM, QUERY_ROW, Capture, attend
from staa_serve.models.errors import UnsupportedModel
from staa_serve.models.staa import AttentionRows


class InterfaceSelfAttention(torch.nn.Module):
    """``TimesformerSelfAttention`` with its attention computed by ``attend``; same submodules and maths."""

    def __init__(self, original: torch.nn.Module):
        super().__init__()
        self.num_heads, self.scale = original.num_heads, original.scale
        self.qkv, self.attn_drop = original.qkv, original.attn_drop

    def forward(self, hidden_states: torch.Tensor, output_attentions: bool = False):
        rows, tokens, channels = hidden_states.shape
        qkv = self.qkv(hidden_states).reshape(rows, tokens, 3, self.num_heads, channels // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)  # [R, S, 3, H, d] -> 3 x [R, H, S, d]
        context, probs = attend(self, query, key, value, None, scaling=self.scale,
                                dropout=self.attn_drop.p if self.training else 0.0, output_attentions=output_attentions)
        context = context.reshape(rows, tokens, channels)  # [R, S, H, d] -> [R, S, D]
        return (context, probs) if output_attentions else (context,)


class TimesformerAdapter(VideoAdapter):
    architecture = "timesformer"

    def __init__(self, model: torch.nn.Module, implementation: str = "fused"):
        config = model.config
        if getattr(config, "attention_type", None) != "divided_space_time":
            raise UnsupportedModel(f"TimesformerAdapter needs divided_space_time attention, got {config.attention_type!r}")
        self.num_frames = config.num_frames
        self.grid = (config.image_size // config.patch_size,) * 2
        self.layers = list(model.timesformer.encoder.layer)
        super().__init__(model, implementation)

    def _route_attention(self) -> None:
        for layer in self.layers:
            for block in (layer.temporal_attention, layer.attention):
                if not isinstance(block.attention, InterfaceSelfAttention):
                    block.attention = InterfaceSelfAttention(block.attention)

    def _attention_modules(self):
        return [(block.attention, role, readout) for layer in self.layers
                for block, role, readout in ((layer.temporal_attention, "temporal", COLUMN_SUM),
                                             (layer.attention, "spatial", QUERY_ROW))]

    def _class_head(self) -> ClassHead:
        # Each layer's spatial attention writes into the CLS token the mean over frames of each frame's
        # CLS row, through its output projection; the model's final LayerNorm, then the classifier.
        blocks = [layer.attention for layer in self.layers]
        return ClassHead([block.attention for block in blocks], QUERY_ROW, [block.output.dense for block in blocks],
                         getattr(self.model.timesformer, "layernorm", None), self.model.classifier)

    def _class_layout(self, contributions: torch.Tensor) -> torch.Tensor:
        return contributions[:, 1:].reshape(-1, self.num_frames, self.num_patches)  # [B*T, 1+N] -> [B, T, N]

    def attention_rows(self, capture: Capture) -> AttentionRows:
        frames, patches = self.num_frames, self.num_patches
        spatial = torch.stack(capture.rows["spatial"])  # L x [B*T, 1+N] -> [L, B*T, 1+N]
        temporal = torch.stack(capture.rows["temporal"])  # L x [B*N, T] -> [L, B*N, T]
        layers = spatial.shape[0]
        return AttentionRows(
            spatial=spatial[:, :, 1:].reshape(layers, -1, frames, patches),  # CLS key dropped -> [L, B, T, N]
            temporal=temporal.view(layers, -1, patches, frames),  # [L, B*N, T] -> [L, B, N, T]
        )
