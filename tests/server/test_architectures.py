"""Every supported architecture explained end to end through the real server (tiny random-weight
configs), and the fused attention a server runs by default against the eager oracle."""

import numpy as np
import pytest

from staa_serve.clients.client import ExplainerClient
from staa_serve.clients.results import heatmaps
from staa_serve.models.random_weights import random_config, save_random_model
from staa_serve.server.app import BackgroundServer
from tests.conftest import clip_path, served_config
from tests.server.test_grpc_e2e import assert_well_formed

CLIP = "ucf101_apply_eye_makeup.avi"  # 164 frames


def served(model_dir, attention="fused"):
    return BackgroundServer(served_config(port=0, model=str(model_dir), attention=attention, max_clip_bytes=2 << 20,
                                         max_message_bytes=4 << 20))


def explain(running, **options):
    with ExplainerClient(running.target, timeout=120) as client:
        info = client.model_info()
        return info, list(client.explain_clip(clip_path(CLIP), **options))


@pytest.mark.parametrize("architecture", ["vivit", "videomae"])
def test_joint_attention_models_are_explained_through_the_server(architecture, tmp_path):
    config = random_config(architecture, image_size=48, patch_size=8, num_frames=8, hidden_size=48,
                           num_hidden_layers=2, num_attention_heads=3, intermediate_size=96, num_labels=6)
    model_dir = save_random_model(tmp_path / architecture, config, seed=5)
    with served(model_dir) as running:
        info, windows = explain(running)
    assert (info.architecture, info.attention, info.grid_height, info.grid_width) == (architecture, "fused", 6, 6)
    span = (info.num_frames - 1) * info.default_stride + 1
    assert len(windows) == (164 - span) // span + 1 + 1  # and the tail window
    for explanation in windows:
        assert_well_formed(explanation, info)
        grids = heatmaps(explanation)  # a tubelet's two frames share its slot's map and importance
        assert np.array_equal(grids[0::2], grids[1::2])
        assert list(explanation.temporal)[0::2] == list(explanation.temporal)[1::2]


def test_fused_and_eager_servers_give_the_same_explanations(tmp_path):
    config = random_config("vivit", image_size=48, patch_size=8, num_frames=8, hidden_size=48, num_hidden_layers=2,
                           num_attention_heads=3, intermediate_size=96, num_labels=6)
    model_dir = save_random_model(tmp_path / "vivit", config, seed=6)
    results = {}
    for attention in ("fused", "eager"):
        with served(model_dir, attention) as running:
            info, windows = explain(running)
        assert info.attention == attention
        results[attention] = windows
    assert len(results["fused"]) == len(results["eager"]) > 0
    for fused, eager in zip(results["fused"], results["eager"]):
        np.testing.assert_allclose(fused.temporal, eager.temporal, rtol=1e-5)
        difference = heatmaps(fused).astype(int) - heatmaps(eager).astype(int)  # uint8 levels: rounding may flip one
        assert np.abs(difference).max() <= 1
        assert fused.topk[0].class_id == eager.topk[0].class_id
