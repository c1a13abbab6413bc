"""TimeSformer adapter: where its attention lives and how to read it during the forward pass.

Facts of ``transformers`` 5.x ``modeling_timesformer`` this relies on:
- Hidden states are ``[B, 1 + N*T, D]``: the CLS token, then patch tokens ordered (patch, frame),
  patches row-major (y, x) on the h x w grid (see TimesformerEmbeddings / TimesformerLayer).
- Each layer runs *temporal* attention over ``[B*N, T, D]`` (batch index b*N + p) and then
  *spatial* attention over ``[B*T, 1+N, D]`` (batch index b*T + t) whose row 0 is that frame's
  copy of the CLS token. Both go through ``TimesformerSelfAttention.attn_drop``, a Dropout that
  receives the softmax probabilities; in eval mode it returns them unchanged.
- HF returns only spatial attentions and always runs eager attention; temporal attention is
  reachable only from outside the attention module's return value.

Taps attach from outside for the length of one capture (the HF model's code is never edited; its
``attn_drop`` modules are swapped and restored) and reduce each probability tensor as soon as it
exists, so no layer's full ``[B*T, H, 1+N, 1+N]`` tensor outlives its layer. Each reduction writes
into its layer's slice of one buffer per capture: no per-layer allocation, nothing to stack later.

Letters: B batch, T frames, N = h*w patches per frame, H heads, L layers.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from kernels.attention_reduce import cls_row_sum, received_sum, reducers_for
from models.errors import UnsupportedModel


@dataclass
class AttentionRecord:
    """Attention reduced per layer during one forward pass, as sums: STAA normalises every map, so
    the constant factors of a mean (1/H, 1/(H*T)) would be work without effect (on CPU each scalar
    divide is five operator calls).

    Attributes:
        layers: L, the number of layers the buffers hold.
        spatial_cls: ``[L, B, T, N]``: per layer, head-sum of the CLS->patch row of each frame's block.
        temporal_received: ``[L, B, N, T]``: per layer, head- and query-sum of the attention that
            each patch position's frame t *receives* in temporal attention.
        seconds: wall time spent inside the taps (part of attribution, not of the forward).

    Adapters write each layer's rows into ``slot``: one buffer per map, allocated at the first layer
    (when the batch size is known), so nothing is allocated per layer and nothing stacked afterwards.
    """

    layers: int
    spatial_cls: torch.Tensor | None = None
    temporal_received: torch.Tensor | None = None
    seconds: float = 0.0
    _slots: dict = field(default_factory=dict, repr=False)

    def slot(self, name: str, layer: int, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s part of buffer ``name`` (float32 ``[L, *shape]``, made on first use) as a
        2-D view ``[prod(shape[:-1]), shape[-1]]``, the layout the reductions write."""
        slots = self._slots.get(name)
        if slots is None:
            buffer = torch.empty((self.layers, *shape), dtype=torch.float32, device=like.device)
            setattr(self, name, buffer)
            slots = self._slots[name] = buffer.view(self.layers, -1, shape[-1]).unbind(0)  # L x [rows, width]
        return slots[layer]


class _Tap(torch.nn.Module):
    """Stands in for an ``attn_drop`` Dropout while STAA captures: hands the softmax probabilities
    to ``reduce(probs, record)`` and passes them on through the original module (the identity in
    eval mode).

    A swapped-in module rather than a forward hook: a module with a hook leaves PyTorch's fast call
    path on every call. Taps are built once per adapter and swapped through the parent's
    ``_modules`` dict: building 2L modules and ``nn.Module.__setattr__`` per capture cost more than
    the reductions themselves on a small model.
    """

    def __init__(self, original: torch.nn.Module, reduce, owner: "TimesformerAdapter", layer: int):
        super().__init__()
        self.original = original
        self.reduce = reduce
        self.owner = owner  # holds the capture's record: setting it on 2L taps (nn.Module.__setattr__) cost ~50 us
        self.layer = layer

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        record = self.owner.record
        if record is not None:
            self.reduce(probs, record, self.layer)
        if not self.original.training:  # Dropout in eval mode is the identity: skip its call
            return probs
        return self.original(probs)


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
        self._taps: list[tuple[torch.nn.Module, _Tap]] | None = None
        self._cls_row, self._received = cls_row_sum, received_sum
        self._parameter = next(model.parameters())  # its .device follows model.to(...)
        self.record: AttentionRecord | None = None  # the capture in progress, read by every tap

    def _installed_taps(self) -> list[tuple[torch.nn.Module, _Tap]]:
        """(attention module, its tap) for every layer's temporal and spatial ``attn_drop``, built once."""
        if self._taps is None:
            self._taps = []
            for index, layer in enumerate(self.layers):
                for attention, reduce in ((layer.temporal_attention.attention, self._reduce_temporal),
                                          (layer.attention.attention, self._reduce_spatial)):
                    original = attention.attn_drop  # another adapter's tap while it captures: unwrap
                    original = original.original if isinstance(original, _Tap) else original
                    self._taps.append((attention, _Tap(original, reduce, self, index)))
        return self._taps

    @contextmanager
    def capture(self):
        """Taps in place of every layer's temporal and spatial ``attn_drop``; yields the AttentionRecord."""
        record = AttentionRecord(len(self.layers))
        self._cls_row, self._received = reducers_for(self._parameter.device)
        taps = self._installed_taps()
        for attention, tap in taps:
            attention._modules["attn_drop"] = tap
        self.record = record
        try:
            yield record
        finally:
            self.record = None
            for attention, tap in taps:
                attention._modules["attn_drop"] = tap.original

    def _reduce_spatial(self, probs: torch.Tensor, record: AttentionRecord, layer: int) -> None:
        started = time.perf_counter()
        rows, _, tokens, _ = probs.shape  # [B*T, H, 1+N, 1+N]
        assert tokens == 1 + self.num_patches, f"spatial attention over {tokens} tokens, expected {1 + self.num_patches}"
        out = record.slot("spatial_cls", layer, (rows // self.num_frames, self.num_frames, self.num_patches), probs)
        self._cls_row(probs, out=out)  # [B*T, H, 1+N, 1+N] -> head-sum [B*T, N], a view of [B, T, N]
        record.seconds += time.perf_counter() - started

    def _reduce_temporal(self, probs: torch.Tensor, record: AttentionRecord, layer: int) -> None:
        started = time.perf_counter()
        rows, _, queries, _ = probs.shape  # [B*N, H, T, T]
        assert queries == self.num_frames, f"temporal attention over {queries} frames, expected {self.num_frames}"
        out = record.slot("temporal_received", layer, (rows // self.num_patches, self.num_patches, self.num_frames), probs)
        self._received(probs, out=out)  # [B*N, H, T(query), T(key)] -> sum [B*N, T], a view of [B, N, T]
        record.seconds += time.perf_counter() - started

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` ``[B, T, 3, H, W]`` -> logits ``[B, num_labels]``."""
        return self.model(pixel_values=pixel_values).logits

    @torch.inference_mode()
    def plain_forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The fastest inference path (TimeSformer always runs eager attention), no taps."""
        return self.model(pixel_values=pixel_values).logits
