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
exists, so no layer's full ``[B*T, H, 1+N, 1+N]`` tensor outlives its layer. A tap does one
reduction and one list append; everything else waits for the end of the capture.

On CPU, when every layer's probabilities together fit in ``keep_whole_bytes`` (32 MiB: 2.4 MB for
the shipped model at batch 1, about 180 MB for TimeSformer-base), the taps keep them whole instead
and the capture's end reduces them, outside the forward: on a small model each call inside the
forward costs 10-20 us, as much as the reduction itself. Right after a forward, too, each distinct
operator call costs 10-25 us (its code has left the cache), so the end sums each map's chosen
layers and heads in one call. Measured on the shipped model (median of interleaved pairs, same
process): holding the attention costs about 1 % of the forward, the end's sums and STAA maths about
2.5 % as PyTorch calls and about 1 % as one numba call (``kernels/whole_sums.py``, given the
weighting); reducing in the taps, or accumulating layer by layer there, saved nothing.

Letters: B batch, T frames, N = h*w patches per frame, H heads, L layers.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from kernels.attention_reduce import cls_row_sum, received_sum, reducers_for
from kernels.whole_sums import numba_applies, staa_maps_numba, whole_sums
from models.errors import UnsupportedModel
from models.staa import ALL_LAYERS, sum_layers


@dataclass
class AttentionRecord:
    """Attention read during one forward pass, summed over the layers the capture was given: sums,
    not means, as STAA normalises every map, so the constant factors of a mean (1/H, 1/(H*T), 1/L)
    would be work without effect.

    Attributes:
        spatial_cls: ``[B, T, N]``: head- and layer-sum of the CLS->patch row of each frame's block.
        temporal_received: ``[B, N, T]``: head-, query- and layer-sum of the attention that each
            patch position's frame t *receives* in temporal attention.
        seconds: wall time of the reductions, in the taps and at the capture's end (part of attribution,
            not of the forward; a tap that only keeps a tensor whole is not timed).
        spatial_rows, temporal_rows: what the taps produced, layer by layer, while the capture runs;
            the adapter sums the chosen layers into the two tensors above when it ends (the CLS key
            dropped once: fewer operator calls inside the forward).
        whole: the taps kept each layer's probabilities whole (decided at the capture's first
            tap; None before it), to be reduced all at once at the end.
    """

    spatial_cls: torch.Tensor | None = None
    temporal_received: torch.Tensor | None = None
    seconds: float = 0.0
    spatial_rows: list = field(default_factory=list, repr=False)
    temporal_rows: list = field(default_factory=list, repr=False)
    whole: bool | None = None
    spatial_map: torch.Tensor | None = None  # [B, T, N] and [B, T]: STAA's maps, when the capture end
    temporal_map: torch.Tensor | None = None  # computed them with the sums (numba; else left to models.staa)


class _Tap(torch.nn.Module):
    """Stands in for an ``attn_drop`` Dropout while STAA captures: hands the softmax probabilities
    to ``reduce(probs, record)`` and passes them on through the original module (the identity in
    eval mode).

    A swapped-in module rather than a forward hook: a module with a hook leaves PyTorch's fast call
    path on every call. Taps are built once per adapter and swapped through the parent's
    ``_modules`` dict: building 2L modules and ``nn.Module.__setattr__`` per capture cost more than
    the reductions themselves on a small model.
    """

    def __init__(self, original: torch.nn.Module, reduce, owner: "TimesformerAdapter"):
        super().__init__()
        self.original = original  # registered, so that model.train() / eval() reach it through the tap
        # The same module as a plain attribute: reading a registered child goes through
        # nn.Module.__getattr__ (about 1 us), 2L times per capture in the forward and 2L at its end.
        self.__dict__["dropout"] = original
        self.reduce = reduce
        self.owner = owner  # holds the capture's record: setting it on 2L taps (nn.Module.__setattr__) cost ~50 us

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        record = self.owner.record
        if record is not None:
            self.reduce(probs, record)
        if not self.dropout.training:  # Dropout in eval mode is the identity: skip its call
            return probs
        return self.dropout(probs)


class TimesformerAdapter:
    architecture = "timesformer"
    keep_whole_bytes = 32 * 2**20  # on CPU; 0 reduces every layer inside its tap

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
            for layer in self.layers:
                for attention, reduce in ((layer.temporal_attention.attention, self._reduce_temporal),
                                          (layer.attention.attention, self._reduce_spatial)):
                    original = attention.attn_drop  # another adapter's tap while it captures: unwrap
                    original = original.dropout if isinstance(original, _Tap) else original
                    self._taps.append((attention, _Tap(original, reduce, self)))
        return self._taps

    @contextmanager
    def capture(self, spatial_layers: slice = ALL_LAYERS, temporal_layers: slice = ALL_LAYERS,
                temporal_weighting: str | None = None):
        """Taps in place of every layer's temporal and spatial ``attn_drop``; yields the AttentionRecord,
        whose maps sum the layers the two slices pick (``models.staa.layer_slice``) when the capture ends.
        Given ``temporal_weighting`` (``StaaParams.temporal_weighting``), the end may also fill STAA's
        maps in the same kernel call (``record.spatial_map``: kept-whole float32 attention, numba)."""
        record = AttentionRecord()
        self._cls_row, self._received = reducers_for(self._parameter.device)
        taps = self._installed_taps()
        for attention, tap in taps:
            attention._modules["attn_drop"] = tap
        self.record = record
        try:
            yield record
            started = time.perf_counter()
            self._aggregate(record, spatial_layers, temporal_layers, temporal_weighting)
            record.seconds += time.perf_counter() - started
        finally:
            self.record = None
            for attention, tap in taps:
                attention._modules["attn_drop"] = tap.dropout

    def _aggregate(self, record: AttentionRecord, spatial_layers: slice, temporal_layers: slice,
                   temporal_weighting: str | None = None) -> None:
        """The taps' per-layer rows summed over the chosen layers, one tensor per map (the capture's end;
        left None if no layer ran)."""
        spatial, temporal = record.spatial_rows[spatial_layers], record.temporal_rows[temporal_layers]
        # Checked once here, not per tap: whole or reduced, a row's last axis is its keys.
        for rows, keys, what in ((spatial, 1 + self.num_patches, "spatial attention over {} tokens"),
                                 (temporal, self.num_frames, "temporal attention over {} frames")):
            assert not rows or rows[0].shape[-1] == keys, f"{what.format(rows[0].shape[-1])}, expected {keys}"
        if record.whole and temporal_weighting is not None and numba_applies(spatial, temporal):
            record.spatial_map, record.temporal_map = staa_maps_numba(spatial, temporal, self.num_frames, self.num_patches,
                                                                      uniform_weights=temporal_weighting == "uniform")
        elif record.whole:  # L x whole probabilities: every sum in one kernel call
            record.spatial_cls, record.temporal_received = whole_sums(spatial, temporal, self.num_frames, self.num_patches)
        else:  # L x [B*T, 1+N] and L x [B*N, T], reduced by the taps
            if spatial:  # [B*T, 1+N] -> CLS key dropped -> [B, T, N]
                record.spatial_cls = sum_layers(spatial)[:, 1:].reshape(-1, self.num_frames, self.num_patches)
            if temporal:  # [B*N, T] -> [B, N, T]
                record.temporal_received = sum_layers(temporal).view(-1, self.num_patches, self.num_frames)
        record.spatial_rows, record.temporal_rows = [], []  # whole probabilities are freed here

    def _keeps_whole(self, probs: torch.Tensor, rows_per_clip: int) -> bool:
        """Whether every layer's spatial and temporal probabilities together fit in ``keep_whole_bytes``."""
        if probs.device.type != "cpu":
            return False
        batch, heads = probs.shape[0] // rows_per_clip, probs.shape[1]
        frames, tokens = self.num_frames, 1 + self.num_patches
        per_layer = batch * heads * (frames * tokens * tokens + self.num_patches * frames * frames)
        return len(self.layers) * per_layer * probs.element_size() <= self.keep_whole_bytes

    def _reduce_spatial(self, probs: torch.Tensor, record: AttentionRecord) -> None:
        if record.whole is None:
            record.whole = self._keeps_whole(probs, self.num_frames)
        if record.whole:  # [B*T, H, 1+N, 1+N] kept: an append is all, too little to time
            record.spatial_rows.append(probs)
            return
        started = time.perf_counter()
        record.spatial_rows.append(self._cls_row(probs))  # its head-sum CLS row [B*T, 1+N]
        record.seconds += time.perf_counter() - started

    def _reduce_temporal(self, probs: torch.Tensor, record: AttentionRecord) -> None:
        if record.whole is None:
            record.whole = self._keeps_whole(probs, self.num_patches)
        if record.whole:  # [B*N, H, T(query), T(key)] kept
            record.temporal_rows.append(probs)
            return
        started = time.perf_counter()
        record.temporal_rows.append(self._received(probs))  # its sum over heads and queries [B*N, T]
        record.seconds += time.perf_counter() - started

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values`` ``[B, T, 3, H, W]`` -> logits ``[B, num_labels]``."""
        return self.model(pixel_values=pixel_values).logits

    @torch.inference_mode()
    def plain_forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The fastest inference path (TimeSformer always runs eager attention), no taps."""
        return self.model(pixel_values=pixel_values).logits
