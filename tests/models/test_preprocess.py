"""Preprocessing follows the processor config (read, never hard-coded) and reports its crop box."""

import numpy as np
import pytest

import torch

from staa_serve.models.preprocess import ProcessorSettings, crop_box, model_input, preprocess, resized_size
from staa_serve.models.random_weights import processor_config_for
from tests.conftest import TEST_DEVICE


def settings(**changes) -> ProcessorSettings:
    config = processor_config_for(64)
    config.update(changes)
    return ProcessorSettings.from_dict(config)


def test_shortest_side_resize_keeps_aspect():
    assert resized_size(256, 340, settings()) == (64, 85)
    assert resized_size(568, 320, settings()) == (113, 64)


def test_mean_and_std_come_from_the_config():
    frame = np.full((80, 100, 3), 128, np.uint8)
    default = preprocess(frame[None], settings())
    custom = preprocess(frame[None], settings(image_mean=[0.0, 0.5, 1.0], image_std=[1.0, 2.0, 0.5]))
    assert default.shape == (1, 3, 64, 64)
    assert default[0, 0, 0, 0].item() == pytest.approx((128 / 255 - 0.45) / 0.225, rel=1e-5)
    assert custom[0, :, 0, 0].tolist() == pytest.approx([128 / 255, (128 / 255 - 0.5) / 2, (128 / 255 - 1) / 0.5], abs=1e-6)  # float32


def test_crop_box_maps_the_model_input_back_to_source_pixels():
    height, width = 256, 340
    box = crop_box(height, width, settings())
    # 340x256 -> 85x64, centre crop 64x64 at x 10..74 -> source x 40..296, full height
    assert (box.x0, box.y0, box.x1, box.y1) == pytest.approx((40.0, 0.0, 296.0, 256.0))
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, 290:296] = 255  # a bright column just inside the right crop edge
    pixels = preprocess(frame[None], settings())[0, 0]  # [h, w] of channel 0
    assert pixels[:, -1].mean() > pixels[:, 0].mean() + 1.0


def test_frames_smaller_than_the_crop_are_enlarged():
    out = preprocess(np.zeros((50, 50, 3), np.uint8)[None], settings())
    assert out.shape == (1, 3, 64, 64)


def test_model_input_normalises_uint8_crops_on_the_requested_device():
    frames = np.random.default_rng(0).integers(0, 256, (2, 3, 5, 7, 3), dtype=np.uint8)  # [B, T, h, w, 3]
    custom = settings(image_mean=[0.1, 0.5, 0.9], image_std=[0.3, 2.0, 0.5])
    mean, std = np.array([0.1, 0.5, 0.9]), np.array([0.3, 2.0, 0.5])
    expected = np.moveaxis((frames / 255.0 - mean) / std, -1, -3)  # [B, T, 3, h, w], float64 oracle
    got = model_input(torch.from_numpy(frames), custom, TEST_DEVICE)
    assert got.shape == (2, 3, 3, 5, 7) and got.dtype == torch.float32 and got.device.type == TEST_DEVICE.split(":")[0]
    np.testing.assert_allclose(got.cpu().numpy(), expected, rtol=0, atol=1e-5)
    assert model_input(torch.from_numpy(frames), custom).is_contiguous()
