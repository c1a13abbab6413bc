"""ViViT adapter (model 1, "spatio-temporal attention"): joint attention over tubelets with a CLS token.

Facts of ``transformers`` 5.x ``modeling_vivit`` this relies on:
- Tokens are the CLS token, then tubelets of ``tubelet_size[0]`` frames x one
  ``tubelet_size[1] x tubelet_size[2]`` patch, ordered (slot, y, x) (a Conv3d flattened):
  1 + S tokens with S = T' * N, T' = T / tubelet_size[0].
- ``VivitAttention`` computes Q, K, V and calls the attention function its
  ``config._attn_implementation`` names: the adapter names ``"staa"`` (``models.attention.attend``).
- The classifier reads the last layer's CLS token, whose attention row covers space and time at once.

Rows read: the CLS query row of each layer (``QUERY_ROW``), CLS key dropped: ``[B, S]`` -> ``[B, T', N]``,
the same row for the spatial map and, transposed, for the temporal one.

Letters: B batch, T frames, T' tubelet slots, N = h*w patches, L layers, S = T' * N tokens.
"""

from __future__ import annotations

import torch

from staa_serve.models.adapters.base import ClassHead, VideoAdapter
from staa_serve.models.adapters.videomae import joint_rows
from staa_serve.models.attention import QUERY_ROW, Capture
from staa_serve.models.errors import UnsupportedModel
from staa_serve.models.staa import AttentionRows


class VivitAdapter(VideoAdapter):
    architecture = "vivit"

    def __init__(self, model: torch.nn.Module, implementation: str = "fused"):
        config = model.config
        slot, patch_height, patch_width = config.tubelet_size
        image = config.image_size if isinstance(config.image_size, int) else tuple(config.image_size)
        height, width = (image, image) if isinstance(image, int) else image
        if patch_height != patch_width or height != width:
            raise UnsupportedModel(f"ViViT with non-square patches or frames is not supported: tubelet {config.tubelet_size}, image {config.image_size}")
        self.num_frames = config.num_frames
        self.frames_per_slot = slot
        self.grid = (height // patch_height, width // patch_width)
        self.layers = list(model.vivit.layers)
        super().__init__(model, implementation)

    def _route_attention(self) -> None:
        self.model.set_attn_implementation("staa")

    def _attention_modules(self):
        return [(layer.attention, "joint", QUERY_ROW) for layer in self.layers]

    def _class_head(self) -> ClassHead:
        blocks = [layer.attention for layer in self.layers]  # the classifier reads the CLS token after the model's LayerNorm
        return ClassHead(blocks, QUERY_ROW, [block.o_proj for block in blocks], self.model.vivit.layernorm, self.model.classifier)

    def _class_layout(self, contributions: torch.Tensor) -> torch.Tensor:
        slots = self.num_frames // self.frames_per_slot
        return contributions[:, 1:].unflatten(-1, (slots, self.num_patches))  # CLS dropped: [B, 1+S] -> [B, T', N]

    def attention_rows(self, capture: Capture) -> AttentionRows:
        cls_rows = [row[:, 1:] for row in capture.rows["joint"]]  # L x [B, 1+S] -> CLS key dropped -> [B, S]
        return joint_rows(cls_rows, self.num_frames // self.frames_per_slot, self.num_patches, self.frames_per_slot)
