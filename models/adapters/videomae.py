"""VideoMAE adapter: joint space-time attention over tubelets, no CLS token, mean pooling.

Facts of ``transformers`` 5.x ``modeling_videomae`` this relies on:
- Tokens are tubelets of ``tubelet_size`` frames x one patch, ordered (slot, y, x): S = T' * N
  with T' = T / tubelet_size.
- ``VideoMAESelfAttention`` computes Q, K, V and calls the attention function its
  ``config._attn_implementation`` names (eager, sdpa, flash...): the adapter names ``"staa"``
  (``models.attention.attend``), which runs SDPA or eager as the taps say.
- With no CLS token, the classifier reads the mean of every token; the analogue of a CLS row is the
  mean over all queries of each layer's attention, i.e. the attention each token receives
  (``COLUMN_SUM``, up to the constant 1/S).

Rows read: per layer ``[B, S]`` -> ``[B, T', N]``, the same row for the spatial map and, transposed,
for the temporal one, which STAA sums per slot (ARCHITECTURE §4; ``AttentionRows`` at slot
resolution: a slot's score is its frames' score).

Letters: B batch, T frames, T' tubelet slots, N = h*w patches, L layers, S = T' * N tokens.
"""

from __future__ import annotations

import torch

from staa_serve.models.adapters.base import ClassHead, VideoAdapter
from staa_serve.models.attention import COLUMN_SUM, QUERY_ROW, Capture
from staa_serve.models.staa import AttentionRows


class VideoMAEAdapter(VideoAdapter):
    architecture = "videomae"

    def __init__(self, model: torch.nn.Module, implementation: str = "fused"):
        config = model.config
        self.num_frames = config.num_frames
        self.frames_per_slot = config.tubelet_size
        self.grid = (config.image_size // config.patch_size,) * 2
        self.layers = list(model.videomae.encoder.layer)
        super().__init__(model, implementation)

    def _route_attention(self) -> None:
        self.model.set_attn_implementation("staa")

    def _attention_modules(self):
        return [(layer.attention.attention, "joint", COLUMN_SUM) for layer in self.layers]

    def _class_head(self) -> ClassHead:
        # Mean pooling (fc_norm, the Kinetics checkpoints) pools every token: the column sums of each
        # attention; without it the classifier reads token 0 after the model's own LayerNorm.
        blocks = [layer.attention for layer in self.layers]
        modules, projections = [block.attention for block in blocks], [block.output.dense for block in blocks]
        if self.model.fc_norm is not None:
            return ClassHead(modules, COLUMN_SUM, projections, self.model.fc_norm, self.model.classifier)
        return ClassHead(modules, QUERY_ROW, projections, self.model.videomae.layernorm, self.model.classifier)

    def _class_layout(self, contributions: torch.Tensor) -> torch.Tensor:
        return contributions.unflatten(-1, (self.num_frames // self.frames_per_slot, self.num_patches))  # [B, S] -> [B, T', N]

    def attention_rows(self, capture: Capture) -> AttentionRows:
        return joint_rows(capture.rows["joint"], self.num_frames // self.frames_per_slot, self.num_patches, self.frames_per_slot)


def joint_rows(rows: list[torch.Tensor], slots: int, patches: int, frames_per_slot: int) -> AttentionRows:
    """L x ``[B, T'*N]`` (one row over a joint attention's patch tokens) -> the same row as both maps."""
    joint = torch.stack(rows).unflatten(-1, (slots, patches))  # [L, B, T'*N] -> [L, B, T', N]
    return AttentionRows(spatial=joint, temporal=joint.transpose(2, 3), per_patch=False,  # [L, B, N, T']
                         frames_per_slot=frames_per_slot)
