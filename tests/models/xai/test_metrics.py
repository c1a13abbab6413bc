"""Quality metrics on hand-made cases whose answers are known."""

import numpy as np
import torch

from staa_serve.models.localisation import score_window
from staa_serve.models.xai.metrics import (area_under, blurred_copy, frame_deletion, random_scores, rank_agreement,
                                           tubelet_faithfulness, with_random_weights)

FRAMES, ROWS, COLS, SIZE = 4, 4, 4, 16  # 4x4 grid of 4-pixel cells


def _tubelet_predictor(frame: int, row: int, col: int):
    """Logits whose class-0 probability rises with the content of one tubelet: a model that looks there only."""
    def predict(clips):  # [B, T, 3, H, W]
        evidence = clips[:, frame, :, row * 4:(row + 1) * 4, col * 4:(col + 1) * 4].mean(dim=(1, 2, 3))  # [B]
        return torch.stack([4 * evidence, torch.zeros_like(evidence)], dim=1)
    return predict


def _clip():
    pixels = torch.zeros(FRAMES, 3, SIZE, SIZE)
    pixels[2, :, 4:8, 8:12] = 1.0  # the evidence: frame 2, cell (1, 2)
    return pixels, torch.zeros_like(pixels)  # blurred copy: the evidence gone


def test_deletion_and_insertion_reward_the_map_that_ranks_the_evidence_first():
    pixels, blurred = _clip()
    predict = _tubelet_predictor(2, 1, 2)
    right = np.zeros((FRAMES, ROWS, COLS))
    right[2, 1, 2] = 1.0
    wrong = np.zeros((FRAMES, ROWS, COLS))
    wrong[0, 0, 0] = 1.0
    good, bad = (tubelet_faithfulness(predict, pixels, scores, 0, blurred) for scores in (right, wrong))
    assert good.deletion_auc < bad.deletion_auc and good.insertion_auc > bad.insertion_auc
    assert np.isclose(good.deletion_curve[0], bad.deletion_curve[0])  # nothing removed yet: same start
    assert good.deletion_curve[1] < good.deletion_curve[0]  # the evidence goes in the first step
    floors = [tubelet_faithfulness(predict, pixels, random_scores((FRAMES, ROWS, COLS), seed), 0, blurred).deletion_auc
              for seed in range(20)]
    assert good.deletion_auc <= min(floors) and good.deletion_auc < np.mean(floors) - 0.1  # a random order is the floor


def test_frame_deletion_ranks_the_evidence_frame_first():
    pixels, blurred = _clip()
    predict = _tubelet_predictor(2, 1, 2)
    right, _ = frame_deletion(predict, pixels, np.array([0.1, 0.1, 0.7, 0.1]), 0, blurred, (ROWS, COLS))
    wrong, curve = frame_deletion(predict, pixels, np.array([0.7, 0.1, 0.1, 0.1]), 0, blurred, (ROWS, COLS))
    assert right < wrong and len(curve) == FRAMES + 1


def test_area_under_evenly_sampled_curves():
    assert area_under(np.ones(17)) == 1.0
    assert np.isclose(area_under(np.linspace(1, 0, 11)), 0.5)


def test_rank_agreement_of_identical_reversed_and_constant_maps():
    values = np.arange(24.0).reshape(2, 3, 4)
    assert np.isclose(rank_agreement(values, values), 1.0)
    assert np.isclose(rank_agreement(values, -values), -1.0)
    assert np.isnan(rank_agreement(values, np.ones_like(values)))


def test_pointing_game_is_one_when_the_map_is_the_mask_and_mass_is_the_area_for_uniform_noise():
    rng = np.random.default_rng(0)
    masks = np.zeros((FRAMES, 8, 8), bool)
    masks[1:3, 2:5, 3:6] = True  # 9 of 64 tokens in frames 1 and 2
    in_action = np.array([False, True, True, False])
    exact = masks / np.maximum(masks.sum(axis=(1, 2), keepdims=True), 1)
    scores = score_window(exact, np.array([0.0, 0.5, 0.5, 0.0]), masks, in_action)
    assert scores.pointing_spatial == 1.0 and scores.mass_spatial == 1.0
    assert scores.pointing_temporal == 1.0 and scores.mass_temporal == 1.0
    masses = []
    for _ in range(200):
        noise = rng.random((FRAMES, 8, 8))
        noise /= noise.sum(axis=(1, 2), keepdims=True)
        masses.append(score_window(noise, np.full(FRAMES, 0.25), masks, in_action).mass_spatial)
    assert abs(np.mean(masses) - 9 / 64) < 0.01  # the mask's area fraction
    assert scores.floor_mass_spatial == 9 / 64


def test_blurred_copy_keeps_shape_and_removes_detail():
    pixels = torch.zeros(2, 3, 16, 16)
    pixels[:, :, ::2] = 1.0  # stripes
    blurred = blurred_copy(pixels, sigma=2.0)
    assert blurred.shape == pixels.shape and blurred.std() < 0.2 * pixels.std()


def test_randomised_weights_are_new_weights(tiny_model_dir):
    from staa_serve.models.registry import load_model

    loaded = load_model(str(tiny_model_dir))
    fresh = with_random_weights(loaded, seed=1)
    first = next(iter(loaded.model.state_dict().values()))
    assert fresh.random_weights and not torch.equal(next(iter(fresh.model.state_dict().values())), first)


def test_cascading_randomisation_grows_from_the_head_down(tiny_model_dir):
    from staa_serve.models.registry import load_model
    from staa_serve.models.xai.metrics import cascading_randomisations

    loaded = load_model(str(tiny_model_dir))  # 2 blocks
    trained = loaded.model.state_dict()
    stages = cascading_randomisations(loaded)
    assert [name for name, _ in stages] == ["classifier + final norm", "+ block 2", "+ block 1", "+ embeddings"]
    changed = [{name for name, tensor in stage.model.state_dict().items() if not torch.equal(tensor, trained[name])}
               for _, stage in stages]
    assert changed[0] and all(name.startswith(("classifier.", "timesformer.layernorm.")) for name in changed[0])
    assert all(earlier < later for earlier, later in zip(changed, changed[1:]))  # each stage keeps the last one's
    assert all(".encoder.layer.1." in name for name in changed[1] - changed[0])
    assert all(".encoder.layer.0." in name for name in changed[2] - changed[1])
    assert all(".embeddings." in name for name in changed[3] - changed[2])
    assert all(stage.adapter.model is stage.model for _, stage in stages)
