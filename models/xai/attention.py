"""Attention-based methods beside STAA: STAA's variants, gradient-weighted STAA, attention rollout
for divided space-time attention, and the variant the original STAA code ships.

Unlike STAA, these need whole per-layer attention, so they run a capture that keeps every
layer's probabilities (``models.attention``: the same tap, eager maths): spatial
``[B*T, H, 1+N, 1+N]`` and temporal ``[B*N, H, T, T]`` per layer. That is what makes them
benchmark tools, not served ones.

Token order (HF TimeSformer): CLS, then patch-major, frame-minor: token (p, t) sits at 1 + p*T + t.
Letters: B batch, T frames, N = h*w patches, H heads, L layers, S = 1 + N*T tokens.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from staa_serve.models.attention import Capture
from staa_serve.models.pipeline import Attribution, Staa
from staa_serve.models.registry import LoadedModel
from staa_serve.models.staa import AttentionRows, StaaParams, staa_maps
from staa_serve.models.xai.base import as_batch, from_tubelets, resolve_target


class StaaVariant:
    """STAA with given parameters (layer aggregation choices); one forward pass, no gradient."""

    passes, spatial = 1, True

    def __init__(self, loaded: LoadedModel, name: str = "staa", params: StaaParams = StaaParams()):
        self.name, self.params = name, params
        self.staa = Staa(loaded, params)

    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        return self.staa.attribute(clip, target)


@torch.no_grad()
def forward_with_attention(loaded: LoadedModel, clip: torch.Tensor) -> tuple[torch.Tensor, Capture]:
    """One forward of ``clip`` keeping every layer's attention: logits ``[B, C]`` and the capture
    (``probabilities["spatial"]``, ``probabilities["temporal"]``: one tensor per layer)."""
    with loaded.adapter.capture(keep_probabilities=True) as capture:
        logits = loaded.adapter.forward(as_batch(clip, loaded))
    return logits, capture


class GradientWeightedStaa:
    """STAA with each attention map weighted by relu(d y_c / d A) before the head mean (one backward)."""

    name, passes, spatial = "staa_gradient_weighted", 2, True

    def __init__(self, loaded: LoadedModel, params: StaaParams = StaaParams()):
        self.loaded, self.params = loaded, params

    def attribute(self, clip: torch.Tensor, target=None) -> Attribution:
        pixels = as_batch(clip, self.loaded)
        batch, frames = pixels.shape[:2]
        patches = self.loaded.grid[0] * self.loaded.grid[1]
        with torch.enable_grad(), self.loaded.adapter.capture(keep_probabilities=True, keep_grad=True) as capture:
            logits = self.loaded.adapter.forward(pixels)  # [B, C]
            target = resolve_target(logits.detach(), target)
            logits.gather(1, target[:, None]).sum().backward()
        weighted = lambda probs: (probs.grad.clamp_min(0) * probs).detach().sum(dim=1)  # noqa: E731  [rows, Q, K], head-sum
        spatial = [weighted(probs)[:, 0, 1:].reshape(batch, frames, patches) for probs in capture.probabilities["spatial"]]
        received = [weighted(probs).sum(dim=1).reshape(batch, patches, frames) for probs in capture.probabilities["temporal"]]
        rows = AttentionRows(spatial=torch.stack(spatial), temporal=torch.stack(received))  # [L, B, T, N], [L, B, N, T]
        spatial_map, temporal = staa_maps(rows, self.params)
        return Attribution(spatial=spatial_map.reshape(batch, frames, *self.loaded.grid), temporal=temporal,
                           logits=logits.detach())


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
        logits, capture = forward_with_attention(self.loaded, clip)
        batch, frames = len(logits), self.loaded.num_frames
        rows, cols = self.loaded.grid
        patches = rows * cols
        spatial = [_with_residual(probs.double()).reshape(batch, frames, 1 + patches, 1 + patches)
                   for probs in capture.probabilities["spatial"]]
        temporal = [_with_residual(probs.double()).reshape(batch, patches, frames, frames)
                    for probs in capture.probabilities["temporal"]]
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
        logits, capture = forward_with_attention(self.loaded, clip)
        batch, frames = len(logits), self.loaded.num_frames
        rows, cols = self.loaded.grid
        patches = rows * cols
        last = capture.probabilities["spatial"][-1].mean(dim=1).reshape(batch, frames, 1 + patches, 1 + patches)  # [B, T, 1+N, 1+N]
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
