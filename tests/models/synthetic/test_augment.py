"""Augmentation keeps what carries the class: one setting per window, shared by all its frames."""

from dataclasses import replace

import numpy as np
import torch

from staa_serve.models.synthetic.augment import Augmentation, augment_windows

IDENTITY = Augmentation(permute_channels=0.0, contrast=(1.0, 1.0), brightness=0.0, zoom=(1.0, 1.0), shift=0.0)


def random_windows(batch=4, frames=3, size=24, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, frames, size, size, 3), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def test_identity_settings_return_the_pixels():
    pixels = random_windows()
    out = augment_windows(pixels, np.random.default_rng(0), IDENTITY)
    assert out.shape == pixels.shape and out.dtype == torch.float32
    assert torch.allclose(out, pixels.float(), atol=1e-2)


def test_channel_permutation_is_one_order_per_window_for_every_frame():
    pixels = random_windows(batch=12)
    settings = replace(IDENTITY, permute_channels=1.0)
    out = augment_windows(pixels, np.random.default_rng(1), settings)
    permuted = 0
    for window, source in zip(out, pixels.float()):
        orders = [[int(torch.argmin((window[t, ..., c:c + 1] - source[t]).abs().sum((0, 1))))
                   for c in range(3)] for t in range(window.shape[0])]
        assert all(order == orders[0] for order in orders) and sorted(orders[0]) == [0, 1, 2]
        assert torch.allclose(window, source[..., orders[0]], atol=1e-2)
        permuted += orders[0] != [0, 1, 2]
    assert permuted >= 6  # 5 of 6 random orders move something


def test_zoom_enlarges_a_centred_square_and_frames_share_the_framing():
    pixels = torch.zeros(1, 2, 40, 40, 3, dtype=torch.uint8)
    pixels[:, :, 15:25, 15:25] = 255  # a 10x10 square in the middle of both frames
    settings = replace(IDENTITY, zoom=(2.0, 2.0))
    out = augment_windows(pixels, np.random.default_rng(2), settings)
    area = (out[0, 0, ..., 0] > 127).sum().item()
    assert 380 <= area <= 420, area  # 20x20 after a 2x zoom about the centre
    assert torch.equal(out[0, 0], out[0, 1])


def test_contrast_scales_deviations_about_the_window_mean():
    pixels = torch.full((2, 2, 8, 8, 3), 100, dtype=torch.uint8)
    pixels[:, :, :4] = 140  # mean 120, deviations +-20
    settings = replace(IDENTITY, contrast=(2.0, 2.0))
    out = augment_windows(pixels, np.random.default_rng(3), settings)
    assert torch.allclose(out[:, :, :4], torch.tensor(160.0), atol=1e-3)
    assert torch.allclose(out[:, :, 4:], torch.tensor(80.0), atol=1e-3)
