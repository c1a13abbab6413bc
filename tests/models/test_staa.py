"""STAA maths on analytic attention, and the attention taps on a real TimeSformer."""

import numpy as np
import pytest
import torch

from staa_serve.models.adapters import adapter_for
from staa_serve.models.pipeline import ExplanationPipeline, Staa
from staa_serve.models.random_weights import random_config, save_random_model
from staa_serve.models.registry import load_model
from staa_serve.models.sampling import WindowSpec
from staa_serve.models.staa import (AttentionRows, StaaParams, aggregate_layers, layer_slice, normalise, staa_joint, staa_maps,
                                    staa_spatial, staa_temporal)
from staa_serve.models.windowing import iter_array_windows


def test_spatial_reads_cls_row_of_each_frame():
    from transformers import TimesformerForVideoClassification

    from staa_serve.kernels.attention_rows import query_row_from_probabilities
    from staa_serve.models.attention import Capture

    frames, patches = 3, 4
    # [B*T, H, 1+N, 1+N]: frame t's CLS row puts all mass on patch t; patch rows point elsewhere.
    probs = torch.zeros(frames, 2, 1 + patches, 1 + patches)
    for frame in range(frames):
        probs[frame, :, 0, 1 + frame] = 1.0
        probs[frame, :, 1:, 1 + (frame + 1) % patches] = 1.0
    model = TimesformerForVideoClassification(random_config("timesformer", image_size=16, patch_size=8, num_frames=frames))
    adapter = adapter_for(model)  # its layout: 3 frames of a 2 x 2 grid
    capture = Capture(rows={"spatial": [query_row_from_probabilities(probs)], "temporal": [torch.ones(patches, frames)]})
    spatial, _ = staa_maps(adapter.attention_rows(capture), StaaParams())  # [1, T, N]
    assert spatial.shape == (1, frames, patches)
    for frame in range(frames):
        assert spatial[0, frame].argmax().item() == frame


def test_temporal_weights_received_attention_by_cls_patch_weights():
    # Two patches; patch 0 carries all CLS weight; its frames receive attention on frame 2 only.
    received = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])  # [B=1, N=2, T=3]
    spatial = torch.tensor([[[1.0, 0.0]] * 3])  # [B=1, T=3, N=2]
    temporal = staa_temporal(received, spatial, StaaParams())
    assert temporal[0].tolist() == pytest.approx([0.0, 0.0, 1.0])
    uniform = staa_temporal(received, spatial, StaaParams(temporal_weighting="uniform"))
    assert uniform[0].tolist() == pytest.approx([0.5, 0.0, 0.5])  # both patches count alike


@pytest.mark.parametrize("how", ["last", "mean", "mean_last_k"])
def test_temporal_aggregates_layers_before_weighting_exactly_as_after(how):
    generator = torch.Generator().manual_seed(3)
    received = torch.rand(3, 2, 5, 4, generator=generator)  # [L, B, N, T]
    spatial = torch.rand(2, 4, 5, generator=generator)  # [B, T, N]
    params = StaaParams(temporal_aggregation=how)
    weights = normalise(spatial.mean(dim=1), dim=-1)  # [B, N]
    per_layer = torch.stack([torch.einsum("bn,bnt->bt", weights, layer) for layer in received])  # the definition, layer by layer
    expected = normalise(aggregate_layers(per_layer, how, params.last_k), dim=-1)
    aggregated = aggregate_layers(received, how, params.last_k)  # [B, N, T]: what a capture hands over
    torch.testing.assert_close(staa_temporal(aggregated, spatial, params), expected)


def test_layer_aggregation_options():
    layers = torch.stack([torch.full((1, 2), float(value)) for value in (1, 2, 6)])  # [L, 1, 2]
    assert aggregate_layers(layers, "last", 2).tolist() == [[6.0, 6.0]]
    assert aggregate_layers(layers, "mean", 2).tolist() == [[9.0, 9.0]]  # sums: the maps are normalised after
    assert aggregate_layers(layers, "mean_last_k", 2).tolist() == [[8.0, 8.0]]
    assert [list(range(5))[layer_slice(how, 2)] for how in ("last", "mean_last_k", "mean")] == [[4], [3, 4], [0, 1, 2, 3, 4]]


def test_spatial_map_is_the_normalised_layer_mean_of_head_means():
    generator = torch.Generator().manual_seed(5)
    per_layer = torch.rand(3, 2, 4, 6, generator=generator)  # [L, B, T, N] head-sums
    for how, layers in (("mean", per_layer), ("mean_last_k", per_layer[-2:]), ("last", per_layer[-1:])):
        means = layers.mean(dim=0)
        expected = means / means.sum(dim=-1, keepdim=True)
        torch.testing.assert_close(staa_spatial(aggregate_layers(per_layer, how, 2)), expected)


@pytest.mark.parametrize("weighting", ["cls", "uniform"])
def test_tubelet_slots_give_each_frame_their_map_and_an_equal_share(weighting):
    """Rows per slot of two frames give what the same rows repeated for every frame give."""
    generator = torch.Generator().manual_seed(8)
    rows = AttentionRows(spatial=torch.rand(3, 2, 4, 6, generator=generator),  # [L, B, T'=4, N]
                         temporal=torch.rand(3, 2, 6, 4, generator=generator), frames_per_slot=2)  # [L, B, N, T']
    per_frame = AttentionRows(spatial=rows.spatial.repeat_interleave(2, dim=2), temporal=rows.temporal.repeat_interleave(2, dim=3))
    params = StaaParams(temporal_weighting=weighting)
    for got, expected in zip(staa_maps(rows, params), staa_maps(per_frame, params)):
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected)


def test_normalise_makes_zero_and_nan_slices_uniform():
    values = torch.tensor([[1.0, 3.0], [0.0, 0.0], [float("nan"), 1.0]])
    assert normalise(values, dim=-1).tolist() == [[0.25, 0.75], [0.5, 0.5], [0.5, 0.5]]


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def clip(model):
    generator = np.random.default_rng(0)
    return torch.from_numpy(generator.normal(size=(2, model.num_frames, 3, model.image_size, model.image_size)).astype(np.float32))


def test_maps_are_normalised_and_tau_sums_to_one(model, clip):
    attribution = Staa(model).attribute(clip)
    torch.testing.assert_close(attribution.spatial.sum(dim=(2, 3)), torch.ones(2, model.num_frames))
    torch.testing.assert_close(attribution.temporal.sum(dim=1), torch.ones(2))
    joint = staa_joint(attribution.spatial.flatten(2), attribution.temporal)
    torch.testing.assert_close(joint.sum(dim=(1, 2)), torch.ones(2))


@pytest.mark.parametrize("how", ["last", "mean_last_k"])
def test_staa_sums_only_the_layers_its_params_pick(model, clip, how):
    with torch.inference_mode():
        reference = model.model(pixel_values=clip, output_attentions=True).attentions  # L x [B*T, H, 1+N, 1+N]
    per_layer = torch.stack([attentions[:, :, 0, 1:].sum(dim=1).reshape(2, model.num_frames, -1)
                             for attentions in reference])  # [L, B, T, N]
    spatial = Staa(model, StaaParams(spatial_aggregation=how, last_k=2)).attribute(clip).spatial.flatten(2)  # [B, T, N]
    torch.testing.assert_close(spatial, normalise(aggregate_layers(per_layer, how, 2), dim=-1))
    assert not torch.allclose(spatial, normalise(per_layer.sum(dim=0), dim=-1))  # all layers would differ


def test_batched_equals_one_by_one(model, clip):
    staa = Staa(model)
    both = staa.attribute(clip)
    first = staa.attribute(clip[0])
    torch.testing.assert_close(both.spatial[0], first.spatial[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(both.temporal[0], first.temporal[0], atol=1e-6, rtol=1e-5)


def test_same_input_same_bytes(model):
    frames = np.random.default_rng(1).integers(0, 255, size=(40, 48, 80, 3), dtype=np.uint8)
    spec = WindowSpec(model.num_frames, 4)
    pipeline = ExplanationPipeline(model)
    runs = [pipeline.explain(list(iter_array_windows(frames, spec, model.processor, 25.0)), StaaParams()) for _ in range(2)]
    for first, second in zip(*runs):
        assert first.heatmaps.tobytes() == second.heatmaps.tobytes()
        assert first.temporal.tobytes() == second.temporal.tobytes()


def test_different_weights_change_the_map(model, clip, tiny_model_dir):
    config = random_config("timesformer", image_size=model.image_size, patch_size=model.patch_size)  # same geometry, other weights
    other = load_model(str(save_random_model(tiny_model_dir.parent / "other-seed", config, seed=123)))
    assert not torch.allclose(Staa(model).attribute(clip).spatial, Staa(other).attribute(clip).spatial)


def test_params_reject_out_of_range_values_by_name():
    with pytest.raises(ValueError, match=r"StaaParams.gamma must be in \[1.0, 16.0\], got 0.5"):
        StaaParams(gamma=0.5)
    with pytest.raises(ValueError, match="spatial_aggregation"):
        StaaParams(spatial_aggregation="rollout")
