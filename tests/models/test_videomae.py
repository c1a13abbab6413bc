"""VideoMAE through the registry, its adapter and STAA, on a tiny random-weight config."""

import pytest
import torch

from staa_serve.models.errors import UnsupportedModel
from staa_serve.models.pipeline import Staa
from staa_serve.models.registry import load_model
from staa_serve.models.random_weights import random_config, save_random_model
from staa_serve.models.xai import build_method, supported_methods


@pytest.fixture(scope="module")
def videomae(tmp_path_factory):
    directory = save_random_model(tmp_path_factory.mktemp("videomae"), random_config("videomae", image_size=32, num_labels=5), seed=3)
    return load_model(str(directory))


@pytest.fixture(scope="module")
def clips():
    torch.manual_seed(5)
    return torch.randn(2, 8, 3, 32, 32)


def test_loads_with_its_attention_routed_through_the_tap(videomae):
    assert videomae.architecture == "videomae" and videomae.model.config._attn_implementation == "staa"
    assert videomae.adapter.implementation == "fused"
    assert videomae.grid == (4, 4) and videomae.num_frames == 8


def test_staa_reads_the_mean_query_row_of_each_layer(videomae, clips):
    attribution = Staa(videomae).attribute(clips)
    with torch.inference_mode(), videomae.adapter.using("eager"):
        outputs = videomae.model(pixel_values=clips, output_attentions=True)
    rows = [probs.mean(dim=(1, 2)).reshape(2, 4, 16) for probs in outputs.attentions]  # L x [B, T', N]
    aggregated = torch.stack(rows).mean(dim=0)  # default: mean over layers
    expected = aggregated / aggregated.sum(dim=-1, keepdim=True)
    assert torch.allclose(attribution.spatial.reshape(2, 8, 16)[:, ::2], expected, atol=1e-5)
    slot_mass = aggregated.sum(dim=-1)  # joint attention: tau is the row's mass per slot (ARCHITECTURE §4)
    assert torch.allclose(attribution.temporal[:, ::2] * 2, slot_mass / slot_mass.sum(dim=-1, keepdim=True), atol=1e-6)
    assert torch.equal(attribution.spatial[:, 0::2], attribution.spatial[:, 1::2])  # a tubelet's two frames share its map
    assert torch.equal(attribution.temporal[:, 0::2], attribution.temporal[:, 1::2])  # and its importance, halved
    assert torch.allclose(attribution.temporal.sum(dim=1), torch.ones(2))
    assert torch.allclose(attribution.logits, outputs.logits, atol=1e-5)


def test_gradient_baselines_run_and_timesformer_only_methods_say_why(videomae, clips):
    assert "attention_rollout" not in supported_methods(videomae)
    saliency = build_method(videomae, "saliency").attribute(clips)
    assert saliency.spatial.shape == (2, 8, 4, 4)
    with pytest.raises(UnsupportedModel, match="attention_rollout needs a divided space-time TimeSformer"):
        build_method(videomae, "attention_rollout")
