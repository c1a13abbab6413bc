"""Localisation scores of an explanation against ground truth (ARCHITECTURE §7), with their random floors.

Spatial ground truth is a pixel mask per frame; it becomes a token mask on the model's patch grid
(a token is positive when the mask touches any pixel of its cell inside the crop). Temporal ground
truth is which sampled frames lie inside the action interval.
Letters: T frames, h x w patch grid, N = h*w.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from staa_serve.models.preprocess import CropBox


def token_mask(mask: np.ndarray, crop: CropBox, grid: tuple[int, int]) -> np.ndarray:
    """Pixel mask bool ``[H, W]`` -> token mask bool ``[h, w]`` over the crop."""
    rows, cols = grid
    y_edges = np.linspace(crop.y0, crop.y1, rows + 1)
    x_edges = np.linspace(crop.x0, crop.x1, cols + 1)
    tokens = np.zeros(grid, bool)
    for row in range(rows):
        for col in range(cols):
            cell = mask[int(y_edges[row]) : int(np.ceil(y_edges[row + 1])), int(x_edges[col]) : int(np.ceil(x_edges[col + 1]))]
            tokens[row, col] = bool(cell.any())
    return tokens


@dataclass
class LocalisationScores:
    """Per-window scores; ``None`` where the window has no ground truth for that axis."""

    pointing_spatial: float | None
    mass_spatial: float | None
    pointing_temporal: float | None
    mass_temporal: float | None
    floor_pointing_spatial: float | None  # expected score of a uniformly random map
    floor_mass_spatial: float | None
    floor_temporal: float | None  # same for pointing and mass


def score_window(spatial: np.ndarray, temporal: np.ndarray, token_masks: np.ndarray, in_action: np.ndarray) -> LocalisationScores:
    """Args:
        spatial: ``[T, h, w]`` non-negative map, each frame summing to 1.
        temporal: ``[T]`` summing to 1.
        token_masks: bool ``[T, h, w]`` (all False for frames outside the action).
        in_action: bool ``[T]``.
    """
    frames = [index for index in range(len(in_action)) if in_action[index] and token_masks[index].any()]
    pointing, mass, floor = [], [], []
    for index in frames:
        flat, positives = spatial[index].ravel(), token_masks[index].ravel()
        pointing.append(float(positives[int(np.argmax(flat))]))
        mass.append(float(flat[positives].sum() / max(flat.sum(), 1e-12)))
        floor.append(float(positives.mean()))
    has_temporal = bool(in_action.any()) and not bool(in_action.all())
    spatial_mean = (lambda values: float(np.mean(values))) if frames else (lambda values: None)
    return LocalisationScores(
        pointing_spatial=spatial_mean(pointing),
        mass_spatial=spatial_mean(mass),
        pointing_temporal=float(in_action[int(np.argmax(temporal))]) if has_temporal else None,
        mass_temporal=float(temporal[in_action].sum()) if has_temporal else None,
        floor_pointing_spatial=spatial_mean(floor),
        floor_mass_spatial=spatial_mean(floor),
        floor_temporal=float(in_action.mean()) if has_temporal else None,
    )
