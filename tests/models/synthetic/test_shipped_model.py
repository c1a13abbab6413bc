"""The shipped default model is the trained SynthKinetics TimeSformer and classifies held-out clips."""

import numpy as np
import pytest

from staa_serve.models.pipeline import Staa
from staa_serve.models.registry import DEFAULT_MODEL_NAME, load_model
from staa_serve.models.synthetic.__main__ import clip_seed
from staa_serve.models.synthetic.evaluate import EVALUATION_SEED, evaluate_clip
from staa_serve.models.staa import StaaParams

FIXED_CLIPS = 16


@pytest.fixture(scope="module")
def shipped():
    return load_model()


def test_default_is_the_trained_synthkinetics_model(shipped):
    assert shipped.model_id == DEFAULT_MODEL_NAME == "staa-synthkinetics"
    assert not shipped.random_weights
    assert shipped.labels[:3] == ["waving", "clapping", "jumping_jacks"] and len(shipped.labels) == 8
    assert (shipped.source_dir / "README.md").is_file()  # the model card ships with it
    assert (shipped.source_dir / "model.safetensors").stat().st_size <= 20 * 2**20


def test_classifies_a_fixed_set_of_held_out_clips(shipped):
    staa = Staa(shipped)
    results = [evaluate_clip(shipped, staa, clip_seed(EVALUATION_SEED + 1, index), {"default": StaaParams()}, difficulty=0.5)
               for index in range(FIXED_CLIPS)]
    correct = sum(result.predicted == result.class_id for result in results)
    # The shipped weights reach 93.8 % held-out accuracy (model card) and get 16 of these 16 right;
    # chance is 2 of 16. The bar guards against regressions, it is not the 95 % goal (issue 3).
    assert correct >= 14, [(result.class_id, result.predicted) for result in results]
    temporal_hits = [result.scores["default"]["pointing_temporal"] for result in results]
    assert np.mean([hit for hit in temporal_hits if hit is not None]) > 0.6


def test_multi_view_prediction_averages_every_window_and_offset(shipped):
    from staa_serve.models.synthetic.evaluate import accuracy_with_error, clip_predictions, held_out_window

    seed = clip_seed(EVALUATION_SEED, 0)
    label, first, averaged, views = clip_predictions(shipped, seed)
    assert views > 1  # hop 1: a window at every start offset the clip has
    single = held_out_window(shipped, seed)  # the first window, as the single-window accuracy reads it
    assert first == int(shipped.adapter.forward(single.pixels[None]).argmax(-1)) and label == single.class_id
    assert 0 <= averaged < len(shipped.labels)
    summary = accuracy_with_error([True, True, False, True])
    assert summary["accuracy"] == 0.75 and summary["standard_error"] == pytest.approx((0.75 * 0.25 / 4) ** 0.5)
