"""What every attribution method shares: the Captum-style interface and one way to reach tokens.

Every method is an object with ``name``, ``passes`` (forward + backward passes per explanation,
for the cost table) and ``attribute(clip, target=None) -> Attribution``: spatial ``[B, T, h, w]``
on the model's patch grid (each frame summing to 1) and temporal ``[B, T]`` (summing to 1).

Pixel-level methods are brought to that shape by the same pooling for all of them
(``pool_pixels``): |attribution| summed over channels and over each patch cell gives a tubelet
score ``[B, T, h, w]``; a frame's share of the total is its temporal score, and each frame's
tubelets normalised are its spatial map. So "frame importance" means the same thing everywhere.

Letters: B batch, T frames, h x w patch grid, N = h*w, C classes.
"""

from __future__ import annotations

from typing import Protocol

import torch

from staa_serve.models.pipeline import Attribution
from staa_serve.models.registry import LoadedModel
from staa_serve.models.staa import normalise


class AttributionMethod(Protocol):
    name: str
    passes: int  # forward + backward passes per explanation (batch of one)
    spatial: bool  # False when the spatial map carries no information (frame ablation)

    def attribute(self, clip: torch.Tensor, target: int | torch.Tensor | None = None) -> Attribution: ...


def as_batch(clip: torch.Tensor, loaded: LoadedModel) -> torch.Tensor:
    """``[T, 3, H, W]`` or ``[B, T, 3, H, W]`` normalised pixels -> float ``[B, T, 3, H, W]``."""
    if clip.dim() == 4:
        clip = clip.unsqueeze(0)
    if clip.dim() != 5 or clip.shape[1] != loaded.num_frames:
        raise ValueError(f"clip must be [B, {loaded.num_frames}, 3, H, W], got {list(clip.shape)}")
    return clip.float()


def resolve_target(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """Target class per batch row ``[B]``: the prediction unless given."""
    if target is None:
        return logits.argmax(dim=-1)
    if isinstance(target, int):
        return torch.full((logits.shape[0],), target, dtype=torch.long)
    return torch.as_tensor(target, dtype=torch.long).reshape(logits.shape[0])


def pool_pixels(attributions: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Pixel attributions ``[B, T, 3, H, W]`` -> tubelet scores ``[B, T, h, w]`` (sum of |a| per cell)."""
    batch, frames, channels, height, width = attributions.shape
    rows, cols = grid
    cells = attributions.abs().sum(dim=2)  # [B, T, H, W]
    cells = cells.reshape(batch, frames, rows, height // rows, cols, width // cols)  # [B, T, h, ph, w, pw]
    return cells.sum(dim=(3, 5))  # [B, T, h, w]


def from_tubelets(scores: torch.Tensor, logits: torch.Tensor) -> Attribution:
    """Non-negative tubelet scores ``[B, T, h, w]`` -> Attribution (per-frame spatial, frame shares)."""
    batch, frames, rows, cols = scores.shape
    flat = scores.reshape(batch, frames, rows * cols).clamp_min(0).double()  # [B, T, N]
    spatial = normalise(flat, dim=-1)  # each frame sums to 1
    temporal = normalise(flat.sum(dim=-1), dim=-1)  # [B, T], sums to 1
    return Attribution(spatial=spatial.reshape(batch, frames, rows, cols).float(), temporal=temporal.float(),
                       logits=logits.detach().float())


def joint_map(attribution: Attribution) -> torch.Tensor:
    """E[t, p] = tau[t] * s[t, p]: ``[B, T, h, w]``, summing to 1 per clip; what tubelet orderings use."""
    return attribution.temporal[:, :, None, None] * attribution.spatial
