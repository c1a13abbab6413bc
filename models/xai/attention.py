"""Attention-based methods beside STAA: STAA's variants, gradient-weighted STAA, attention rollout
for divided space-time attention, and the variant the original STAA code ships.

Unlike the serving path (which reduces each attention tensor inside its hook), these need whole
per-layer maps, so they keep the head-mean (or gradient-weighted) ``[B*T, 1+N, 1+N]`` spatial and
``[B*N, T, T]`` temporal matrices of every layer for one explanation. That is what makes them
benchmark tools, not served ones.

Token order (HF TimeSformer): CLS, then patch-major, frame-minor: token (p, t) sits at 1 + p*T + t.
Letters: B batch, T frames, N = h*w patches, H heads, L layers, S = 1 + N*T tokens.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch

from models.pipeline import Attribution, Staa
from models.registry import LoadedModel
from models.staa import StaaParams, aggregate_layers, staa_spatial, staa_temporal
from models.xai.base import as_batch, from_tubelets, resolve_target


class StaaVariant:
    """STAA with given parameters (layer aggregation choices); one forward pass, no gradient."""

    passes, spatial = 1, True

    def __init__(self, loaded: LoadedModel, name: str = "staa", params: StaaParams = StaaParams()):
        self.name, self.params = name, params
        self.staa = Staa(loaded, params)

    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        return self.staa.attribute(clip, target)


@dataclass
class LayerAttention:
    """Per layer: spatial ``[B*T, H, 1+N, 1+N]`` and temporal ``[B*N, H, T, T]`` probabilities."""

    spatial: list[torch.Tensor] = field(default_factory=list)
    temporal: list[torch.Tensor] = field(default_factory=list)


@contextmanager
def full_attention(loaded: LoadedModel, keep_grad: bool = False):
    """Record every layer's attention probabilities (``retain_grad`` on them when ``keep_grad``)."""
    record = LayerAttention()

    def keeper(store):
        def hook(module, inputs, probs):
            if keep_grad and probs.requires_grad:
                probs.retain_grad()
            store.append(probs)
        return hook

    handles = []
    for layer in loaded.model.timesformer.encoder.layer:
        handles.append(layer.temporal_attention.attention.attn_drop.register_forward_hook(keeper(record.temporal)))
        handles.append(layer.attention.attention.attn_drop.register_forward_hook(keeper(record.spatial)))
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


@torch.no_grad()
def forward_with_attention(loaded: LoadedModel, clip: torch.Tensor) -> tuple[torch.Tensor, LayerAttention]:
    """One plain forward of ``clip`` keeping every layer's attention: logits ``[B, C]`` and the record."""
    with full_attention(loaded) as record:
        logits = loaded.model(pixel_values=as_batch(clip, loaded)).logits
    return logits, record


class GradientWeightedStaa:
    """STAA with each attention map weighted by relu(d y_c / d A) before the head mean (one backward)."""

    name, passes, spatial = "staa_gradient_weighted", 2, True

    def __init__(self, loaded: LoadedModel, params: StaaParams = StaaParams()):
        self.loaded, self.params = loaded, params

    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        pixels = as_batch(clip, self.loaded)
        batch, frames = pixels.shape[:2]
        patches = self.loaded.grid[0] * self.loaded.grid[1]
        with torch.enable_grad(), full_attention(self.loaded, keep_grad=True) as record:
            logits = self.loaded.model(pixel_values=pixels).logits  # [B, C]
            target = resolve_target(logits.detach(), target)
            logits.gather(1, target[:, None]).sum().backward()
        weighted = lambda probs: (probs.grad.clamp_min(0) * probs).detach().mean(dim=1)  # noqa: E731  [rows, Q, K]
        spatial_cls = [weighted(probs)[:, 0, 1:].reshape(batch, frames, patches) for probs in record.spatial]  # L x [B, T, N]
        received = [weighted(probs).mean(dim=1).reshape(batch, patches, frames) for probs in record.temporal]  # L x [B, N, T]
        params = self.params
        spatial = staa_spatial(aggregate_layers(spatial_cls, params.spatial_aggregation, params.last_k))  # [B, T, N]
        temporal = staa_temporal(aggregate_layers(received, params.temporal_aggregation, params.last_k), spatial, params)
        rows, cols = self.loaded.grid
        return Attribution(spatial=spatial.reshape(batch, frames, rows, cols), temporal=temporal, logits=logits.detach())


def _with_residual(probs: torch.Tensor) -> torch.Tensor:
    """Head-mean attention plus the skip connection, rows still summing to 1: 0.5 A + 0.5 I."""
    mean = probs.mean(dim=1)  # [rows, H, Q, K] -> [rows, Q, K]
    return 0.5 * mean + 0.5 * torch.eye(mean.shape[-1], dtype=mean.dtype)


def rollout_layer(spatial: torch.Tensor, temporal: torch.Tensor, frames: int, patches: int) -> torch.Tensor:
    """One divided space-time layer as a token-mixing matrix ``[S, S]`` (temporal, then spatial).

    Args:
        spatial: ``[T, 1+N, 1+N]`` one clip's head-mean spatial attention with residual.
        temporal: ``[N, T, T]`` one clip's head-mean temporal attention with residual.
    """
    size = 1 + patches * frames
    mix_time = torch.block_diag(torch.ones(1, 1, dtype=temporal.dtype), *temporal)  # CLS untouched, a T x T block per patch
    mix_space = torch.zeros(size, size, dtype=spatial.dtype)
    for frame in range(frames):
        tokens = 1 + torch.arange(patches) * frames + frame  # frame t's patch tokens in the joint order
        block = spatial[frame]  # [1+N, 1+N], row/col 0 is the CLS copy
        mix_space[tokens[:, None], tokens[None, :]] = block[1:, 1:]
        mix_space[tokens, 0] = block[1:, 0]
        mix_space[0, tokens] = block[0, 1:] / frames  # the CLS copies are averaged over frames afterwards
        mix_space[0, 0] += block[0, 0] / frames
    return mix_space @ mix_time


class AttentionRollout:
    """Abnar & Zuidema's rollout through divided space-time attention: the CLS row of the product."""

    name, passes, spatial = "attention_rollout", 1, True

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded

    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        logits, record = forward_with_attention(self.loaded, clip)
        batch, frames = len(logits), self.loaded.num_frames
        rows, cols = self.loaded.grid
        patches = rows * cols
        spatial = [_with_residual(probs.double()).reshape(batch, frames, 1 + patches, 1 + patches) for probs in record.spatial]
        temporal = [_with_residual(probs.double()).reshape(batch, patches, frames, frames) for probs in record.temporal]
        scores = []
        for row in range(batch):
            product = torch.eye(1 + patches * frames, dtype=torch.float64)
            for layer_spatial, layer_temporal in zip(spatial, temporal):
                product = rollout_layer(layer_spatial[row], layer_temporal[row], frames, patches) @ product
            cls_row = product[0, 1:].reshape(patches, frames).T  # (patch, frame) order -> [T, N]
            scores.append(cls_row.reshape(frames, rows, cols))
        return from_tubelets(torch.stack(scores), logits)


class OriginalStaa:
    """The variant the original STAA code ships, kept as the floor to beat.

    Last layer only; frame t's map is the head-mean attention row of *patch token t+1 of frame 0*
    (not frame t's CLS row); the temporal curve is each frame's mean attention over heads and
    patch rows and columns (CLS excluded), which is nearly flat by construction.
    """

    name, passes, spatial = "staa_original", 1, True

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded

    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        logits, record = forward_with_attention(self.loaded, clip)
        batch, frames = len(logits), self.loaded.num_frames
        rows, cols = self.loaded.grid
        patches = rows * cols
        last = record.spatial[-1].mean(dim=1).reshape(batch, frames, 1 + patches, 1 + patches)  # [B, T, 1+N, 1+N]
        query_rows = torch.arange(frames) + 1  # patch token t+1 of frame 0, one per frame t
        spatial_maps = last[:, 0, query_rows, 1:]  # [B, T, N]
        frame_means = last[:, :, 1:, 1:].mean(dim=(2, 3))  # [B, T]
        scores = spatial_maps / spatial_maps.sum(dim=-1, keepdim=True) * frame_means[:, :, None]
        return from_tubelets(scores.reshape(batch, frames, rows, cols), logits)


def staa_variants(loaded: LoadedModel, params: StaaParams = StaaParams()) -> list[StaaVariant]:
    """STAA's layer-aggregation choices, all from the same forward pass."""
    return [
        StaaVariant(loaded, "staa", params),
        StaaVariant(loaded, "staa_last_layer", replace(params, spatial_aggregation="last", temporal_aggregation="last")),
        StaaVariant(loaded, "staa_last_2", replace(params, spatial_aggregation="mean_last_k", temporal_aggregation="mean_last_k", last_k=2)),
        StaaVariant(loaded, "staa_uniform_temporal", replace(params, temporal_weighting="uniform")),
    ]
