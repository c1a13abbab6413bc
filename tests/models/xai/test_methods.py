"""Every attribution method through the one interface, on a real (tiny, random) TimeSformer."""

import numpy as np
import pytest
import torch

from staa_serve.models.registry import load_model
from staa_serve.models.xai import METHOD_NAMES, build_method, pool_pixels
from staa_serve.models.xai.attention import rollout_layer


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="module")
def clips(tiny):
    torch.manual_seed(3)
    return torch.randn(2, tiny.num_frames, 3, tiny.image_size, tiny.image_size)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_each_method_returns_token_maps_and_a_frame_curve(tiny, clips, name):
    method = build_method(tiny, name)
    rows, cols = tiny.grid
    batched = method.attribute(clips)
    assert batched.spatial.shape == (2, tiny.num_frames, rows, cols) and batched.temporal.shape == (2, tiny.num_frames)
    assert batched.logits.shape == (2, len(tiny.labels))
    assert torch.all(batched.spatial >= 0) and torch.all(batched.temporal >= 0)
    assert torch.allclose(batched.spatial.sum(dim=(2, 3)), torch.ones(2, tiny.num_frames), atol=1e-5)
    assert torch.allclose(batched.temporal.sum(dim=1), torch.ones(2), atol=1e-5)
    single = method.attribute(clips[1])  # [T, 3, H, W] is one clip
    assert single.spatial.shape == (1, tiny.num_frames, rows, cols)
    assert method.passes >= 1


@pytest.mark.parametrize("name", ["saliency", "grad_cam", "staa_gradient_weighted"])
def test_class_specific_methods_follow_the_target(tiny, clips, name):
    method = build_method(tiny, name)
    first, second = method.attribute(clips[:1], target=0), method.attribute(clips[:1], target=1)
    assert not torch.allclose(first.spatial, second.spatial)


def test_pool_pixels_sums_absolute_values_per_patch_cell():
    pixels = torch.zeros(1, 2, 3, 8, 8)
    pixels[0, 1, 2, 5, 6] = -2.0  # frame 1, channel 2, row 5, col 6 -> cell (1, 1) of a 2x2 grid
    pixels[0, 0, 0, 0, 0] = 1.0
    pooled = pool_pixels(pixels, (2, 2))
    assert pooled.shape == (1, 2, 2, 2)
    assert pooled[0, 1, 1, 1] == 2.0 and pooled[0, 0, 0, 0] == 1.0 and pooled.sum() == 3.0


def test_rollout_layer_is_row_stochastic_and_keeps_cls_reading_every_frame():
    frames, patches = 3, 4
    generator = torch.Generator().manual_seed(0)
    spatial = torch.rand(frames, 1 + patches, 1 + patches, generator=generator, dtype=torch.float64)
    temporal = torch.rand(patches, frames, frames, generator=generator, dtype=torch.float64)
    spatial, temporal = spatial / spatial.sum(-1, keepdim=True), temporal / temporal.sum(-1, keepdim=True)
    mixing = rollout_layer(spatial, temporal, frames, patches)
    assert mixing.shape == (1 + patches * frames,) * 2
    assert torch.allclose(mixing.sum(dim=-1), torch.ones(1 + patches * frames, dtype=torch.float64))
    cls_to_frames = mixing[0, 1:].reshape(patches, frames).sum(dim=0)  # how much CLS reads from each frame
    assert torch.all(cls_to_frames > 0)


def test_frame_ablation_has_no_spatial_information(tiny, clips):
    ablation = build_method(tiny, "frame_ablation")
    assert ablation.spatial is False
    maps = ablation.attribute(clips[:1]).spatial[0].numpy()
    assert np.allclose(maps, maps.reshape(tiny.num_frames, -1)[:, :1].reshape(tiny.num_frames, 1, 1))


def test_unknown_method_is_named_in_the_error(tiny):
    with pytest.raises(ValueError, match="unknown attribution method 'lime'"):
        build_method(tiny, "lime")
