"""Class-preserving augmentation of training windows.

Only motion carries the class in SynthKinetics (colours, sizes, positions and backgrounds are drawn
independently of the action), so anything that changes appearance or framing but keeps the motion
keeps the label: a channel permutation, brightness and contrast, and a zoom/shift shared by every
frame of a window. Each draws one setting per window so the frames of a window stay consistent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    permute_channels: float = 0.5  # probability of a random channel permutation
    contrast: tuple[float, float] = (0.7, 1.3)  # multiplies deviations from the window's mean
    brightness: float = 25.0  # added, uniform in [-brightness, brightness] (0-255 scale)
    zoom: tuple[float, float] = (0.9, 1.15)  # > 1 zooms in
    shift: float = 0.1  # fraction of the frame, uniform in [-shift, shift] on each axis


def augment_windows(pixels: torch.Tensor, generator: np.random.Generator,
                    settings: Augmentation = Augmentation()) -> torch.Tensor:
    """``[B, T, h, w, 3]`` (uint8 or float, 0-255) -> float32 ``[B, T, h, w, 3]`` in 0-255."""
    batch, frames, height, width, _ = pixels.shape
    device = pixels.device
    # Frames and channels share one axis, so each window needs one grid and one index row.
    values = pixels.permute(0, 1, 4, 2, 3).reshape(batch, frames * 3, height, width).to(torch.float32)  # [B, T*3, h, w]

    orders = np.stack([generator.permutation(3) if generator.random() < settings.permute_channels else np.arange(3)
                       for _ in range(batch)])  # [B, 3]
    channels = (np.arange(frames)[None, :, None] * 3 + orders[:, None, :]).reshape(batch, frames * 3)  # [B, T*3]
    values = values[torch.arange(batch, device=device)[:, None], torch.as_tensor(channels, device=device)]

    # theta maps output to input coordinates, so 1/zoom shrinks the view (zooms in).
    scale = 1.0 / generator.uniform(*settings.zoom, batch)  # [B]
    shift = generator.uniform(-settings.shift, settings.shift, (batch, 2)) * 2  # [B, 2], in [-1, 1] grid units
    theta = np.zeros((batch, 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 1, 1], theta[:, :, 2] = scale, scale, shift
    grid = F.affine_grid(torch.as_tensor(theta, device=device), [batch, frames * 3, height, width], align_corners=False)
    values = F.grid_sample(values, grid, mode="bilinear", padding_mode="border", align_corners=False)

    gain = torch.as_tensor(generator.uniform(*settings.contrast, batch), dtype=torch.float32,
                           device=device)[:, None, None, None]  # [B, 1, 1, 1]
    brightness = torch.as_tensor(generator.uniform(-settings.brightness, settings.brightness, batch),
                                 dtype=torch.float32, device=device)[:, None, None, None]
    offset = values.mean(dim=(1, 2, 3), keepdim=True) * (1 - gain) + brightness  # on the device: no host sync
    values = torch.addcmul(offset, values, gain).clamp_(0.0, 255.0)  # [B, T*3, h, w]
    return values.reshape(batch, frames, 3, height, width).permute(0, 1, 3, 4, 2)  # [B, T, h, w, 3]
