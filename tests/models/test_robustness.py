"""Attacks stay in their budget, deviation scores behave on known cases, and FGSM beats noise."""

import numpy as np
import pytest
import torch

from staa_serve.models.preprocess import from_unit_range, to_unit_range
from staa_serve.models.robustness import AttackSpec, RobustnessScorer, explanation_deviation, perturb
from staa_serve.models.robustness.deviation import centre_of_mass_shift, top_iou
from staa_serve.models.synthetic.__main__ import clip_seed
from staa_serve.models.synthetic.evaluate import EVALUATION_SEED, held_out_window

GRID = (4, 5)


@pytest.fixture(scope="module")
def windows(default_model):
    """Four held-out SynthKinetics windows as the server prepares them: ``[4, T, 3, H, W]`` normalised."""
    return torch.stack([torch.as_tensor(held_out_window(default_model, clip_seed(EVALUATION_SEED + 7, index), 0.3).pixels)
                        for index in range(4)])


def logits_of(loaded):
    return lambda pixels: loaded.model(pixel_values=from_unit_range(pixels, loaded.processor)).logits


@pytest.mark.parametrize("spec", [AttackSpec("noise", 4), AttackSpec("fgsm", 4), AttackSpec("pgd", 8, steps=3)])
def test_perturbation_stays_within_epsilon_and_the_unit_range(default_model, windows, spec):
    clean = to_unit_range(windows, default_model.processor)
    target = torch.zeros(len(windows), dtype=torch.long)
    adversarial = perturb(logits_of(default_model), clean, target, spec)
    assert adversarial.shape == clean.shape
    assert (adversarial - clean).abs().max().item() <= spec.epsilon / 255 + 1e-6
    assert adversarial.min().item() >= 0.0 and adversarial.max().item() <= 1.0
    assert (adversarial - clean).abs().max().item() > spec.epsilon / 255 * 0.5  # it did move


def test_unit_range_round_trip_recovers_the_model_input(default_model, windows):
    torch.testing.assert_close(from_unit_range(to_unit_range(windows, default_model.processor), default_model.processor),
                               windows, atol=1e-5, rtol=0)


def test_identical_explanations_deviate_by_nothing():
    generator = np.random.default_rng(0)
    spatial = generator.random((3, GRID[0] * GRID[1]))
    spatial /= spatial.sum(axis=1, keepdims=True)
    temporal = np.array([0.2, 0.5, 0.3])
    scores = explanation_deviation(spatial, temporal, spatial.copy(), temporal.copy(), GRID)
    assert scores == {"spatial_top10_iou": 1.0, "spearman": pytest.approx(1.0), "kendall_tau": pytest.approx(1.0),
                      "com_shift": 0.0, "explanation_resilience": pytest.approx(1.0)}


def test_opposite_explanations_score_low():
    spatial = np.zeros((2, GRID[0] * GRID[1]))
    spatial[:, 0] = 1.0  # top-left corner
    moved = np.zeros_like(spatial)
    moved[:, -1] = 1.0  # bottom-right corner
    assert top_iou(spatial, moved) == 0.0
    assert centre_of_mass_shift(spatial, moved, GRID) == pytest.approx(1.0)
    scores = explanation_deviation(spatial + np.linspace(0, 0.01, spatial.size).reshape(spatial.shape), np.array([0.9, 0.1]),
                                   moved + np.linspace(0.01, 0, moved.size).reshape(moved.shape), np.array([0.1, 0.9]), GRID)
    assert scores["kendall_tau"] == pytest.approx(-1.0) and scores["spearman"] < 0
    assert scores["explanation_resilience"] < 0.3


def test_constant_maps_count_as_unmoved_not_undefined():
    flat = np.full((2, GRID[0] * GRID[1]), 1.0 / (GRID[0] * GRID[1]))
    scores = explanation_deviation(flat, np.array([0.5, 0.5]), flat, np.array([0.5, 0.5]), GRID)
    assert scores["explanation_resilience"] == pytest.approx(1.0)


def test_fgsm_flips_the_default_model_where_noise_of_the_same_norm_does_not(default_model, windows):
    scorer = RobustnessScorer(default_model)
    fgsm = scorer.score(windows, AttackSpec("fgsm", 16, seed=1))
    noise = scorer.score(windows, AttackSpec("noise", 16, seed=1))
    assert sum(result.flipped for result in fgsm) >= 3, [(r.p_clean, r.p_adv) for r in fgsm]
    assert sum(result.flipped for result in noise) < sum(result.flipped for result in fgsm)
    assert np.mean([r.prediction_robustness for r in fgsm]) < np.mean([r.prediction_robustness for r in noise])
    for result in fgsm + noise:
        assert 0.0 <= result.explanation_resilience <= 1.0 and 0.0 <= result.prediction_robustness <= 1.0
        assert result.passes == (4 if result.attack == "fgsm" else 2) and result.ms > 0


def test_scores_name_their_windows_and_pgd_counts_its_passes(default_model, windows):
    results = RobustnessScorer(default_model).score(windows[:2], AttackSpec("pgd", 4, steps=2), window_indices=[7, 9])
    assert [result.window_index for result in results] == [7, 9]
    assert all(result.passes == 2 + 2 * 2 and result.steps == 2 for result in results)


@pytest.mark.parametrize("bad", [dict(kind="cw"), dict(epsilon=0), dict(epsilon=300), dict(kind="pgd", steps=0),
                                 dict(step_size=-1.0)])
def test_attack_spec_refuses_bad_settings(bad):
    with pytest.raises(ValueError):
        AttackSpec(**bad)
