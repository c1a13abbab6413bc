"""VideoMAE adapter: joint space-time attention over tubelets, no CLS token, mean pooling.

Facts of ``transformers`` 5.x ``modeling_videomae`` this relies on:
- Tokens are tubelets of ``tubelet_size`` frames x one patch, ordered (slot, y, x): S = T' * N
  with T' = T / tubelet_size.
- ``VideoMAESelfAttention.forward`` returns ``(context, probs)``; ``probs`` is ``[B, H, S, S]``
  only under eager attention (SDPA returns none), so STAA needs the model loaded with
  ``attn_implementation="eager"``. The fastest plain forward is SDPA: see ``fastest_forward``.
- With no CLS token, the query "row" is the mean over all queries: what every token attends to on
  average, the analogue of the CLS row the classifier's mean pooling reads.

Per layer the reduced row ``[B, S]`` becomes ``[B, T', N]``; each tubelet's scores are given to
both of its frames, so maps keep the contract's T frames (``spatial_cls`` ``[B, T, N]``,
``temporal_received`` ``[B, N, T]``) and the shared STAA maths applies unchanged.

Letters: B batch, T frames, T' tubelet slots, N = h*w patches, H heads, S = T' * N tokens.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch

from kernels.attention_reduce import received_sum
from models.adapters.timesformer import AttentionRecord
from models.errors import UnsupportedModel
from models.staa import ALL_LAYERS, sum_layers


class VideoMAEAdapter:
    architecture = "videomae"

    def __init__(self, model: torch.nn.Module):
        config = model.config
        if config._attn_implementation != "eager":
            raise UnsupportedModel("VideoMAE returns attention only under eager attention; load it with "
                                   f"attn_implementation='eager' (got {config._attn_implementation!r})")
        self.model = model
        self.num_frames = config.num_frames
        self.tubelet = config.tubelet_size
        self.slots = self.num_frames // self.tubelet
        self.grid = (config.image_size // config.patch_size,) * 2
        self.num_patches = self.grid[0] * self.grid[1]
        self.layers = list(model.videomae.encoder.layer)

    @contextmanager
    def capture(self, spatial_layers: slice = ALL_LAYERS, temporal_layers: slice = ALL_LAYERS,
                temporal_weighting: str | None = None):
        """A hook on every layer's self-attention; yields the AttentionRecord, whose maps sum the layers
        the two slices pick when the capture ends (STAA's maps are left to ``models.staa``: the
        weighting is not needed here)."""
        record = AttentionRecord()
        handles = [layer.attention.attention.register_forward_hook(self._hook(record)) for layer in self.layers]
        try:
            yield record
            if record.spatial_rows:  # L x [B, T, N] -> [B, T, N] and L x [B, N, T] -> [B, N, T]
                record.spatial_cls = sum_layers(record.spatial_rows, spatial_layers)
                record.temporal_received = sum_layers(record.temporal_rows, temporal_layers)
        finally:
            for handle in handles:
                handle.remove()

    def _hook(self, record: AttentionRecord):
        slots, patches, tubelet = self.slots, self.num_patches, self.tubelet

        def hook(module, inputs, outputs):
            started = time.perf_counter()
            probs = outputs[1]  # [B, H, S, S]
            assert probs is not None and probs.shape[-1] == slots * patches, "VideoMAE attention missing or unexpected"
            row = received_sum(probs).reshape(-1, slots, patches)  # sum over heads and queries: [B, S] -> [B, T', N]
            record.spatial_rows.append(row.repeat_interleave(tubelet, dim=1))  # [B, T, N]
            record.temporal_rows.append(row.transpose(1, 2).repeat_interleave(tubelet, dim=2))  # [B, N, T]
            record.seconds += time.perf_counter() - started

        return hook

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` ``[B, T, 3, H, W]`` -> logits ``[B, num_labels]`` (eager: attention readable)."""
        return self.model(pixel_values=pixel_values).logits

    @torch.inference_mode()
    def plain_forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The fastest inference path (SDPA), what STAA's overhead is measured against."""
        self.model.set_attn_implementation("sdpa")
        try:
            return self.model(pixel_values=pixel_values).logits
        finally:
            self.model.set_attn_implementation("eager")
