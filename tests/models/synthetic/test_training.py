"""The training code stays alive: a few steps on a small fixed set lower its loss; saved weights load."""

import numpy as np
import pytest
import torch
from transformers import TimesformerForVideoClassification

from staa_serve.models.preprocess import ProcessorSettings
from staa_serve.models.registry import load_model
from staa_serve.models.random_weights import processor_config_for
from staa_serve.models.synthetic.dataset import WindowSet, build_windows
from staa_serve.models.synthetic.train import (FRAMES, IMAGE_SIZE, STRIDE, build_parser, curriculum, distillation_loss,
                                               ensemble_logits, model_config, recipe_flags, save, seeds, train)


def mean_loss(model, windows, settings) -> float:
    model.eval()
    with torch.no_grad():
        pixels, labels = windows.batch(np.arange(len(windows.labels)), settings)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=pixels).logits, labels).item()
    model.train()
    return loss


def test_a_few_steps_lower_the_loss_and_the_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    settings = ProcessorSettings.from_dict(processor_config_for(IMAGE_SIZE))
    windows = build_windows(seeds(12345, 16), (0.0, 0.2), FRAMES, STRIDE, settings, workers=1)
    assert windows.pixels.shape == (16, FRAMES, IMAGE_SIZE, IMAGE_SIZE, 3)
    model = TimesformerForVideoClassification(model_config(hidden=32, layers=2, heads=2))
    before = mean_loss(model, windows, settings)
    model, history = train(model, [(windows, 25)], windows, settings, peak_lr=2e-3, warmup=3, batch=16,
                    evaluate_every=25, log=lambda line: None)
    after = mean_loss(model, windows, settings)
    assert after < before - 0.3, (before, after)
    assert history[-1]["step"] == 25
    save(model, tmp_path / "ckpt", history, {"test": True})
    loaded = load_model(str(tmp_path / "ckpt"))
    assert not loaded.random_weights and loaded.labels[0] == "waving" and loaded.default_stride == STRIDE


def test_cached_windows_come_back_identical_and_flip_mirrors_width(tmp_path):
    settings = ProcessorSettings.from_dict(processor_config_for(IMAGE_SIZE))
    windows = build_windows(seeds(777, 3), (0.0, 1.0), FRAMES, STRIDE, settings, workers=1)
    windows.save(tmp_path / "windows.npz")
    again = WindowSet.load(tmp_path / "windows.npz")
    assert torch.equal(again.pixels, windows.pixels) and torch.equal(again.labels, windows.labels)
    assert np.array_equal(again.in_action, windows.in_action)
    plain, labels = windows.batch([2, 0], settings)
    mirrored, _ = windows.batch([2, 0], settings, flip=np.array([True, False]))
    assert plain.shape == (2, FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE) and labels.tolist() == windows.labels[[2, 0]].tolist()
    assert torch.equal(mirrored[0], plain[0].flip(-1)) and torch.equal(mirrored[1], plain[1])


def test_augmented_steps_with_label_smoothing_and_dropout_run():
    torch.manual_seed(1)
    settings = ProcessorSettings.from_dict(processor_config_for(IMAGE_SIZE))
    windows = build_windows(seeds(4321, 8), (0.0, 0.5), FRAMES, STRIDE, settings, workers=1)
    model = TimesformerForVideoClassification(model_config(hidden=32, layers=1, heads=2, dropout=0.1))
    before = [parameter.clone() for parameter in model.parameters()]
    model, history = train(model, [(windows, 3)], windows, settings, peak_lr=1e-3, warmup=1, batch=4,
                           evaluate_every=3, log=lambda line: None, augment=True, label_smoothing=0.1)
    assert [record["step"] for record in history] == [3] and np.isfinite(history[0]["loss"])
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters()))


def test_recipe_flags_name_what_a_run_changed_from_the_defaults():
    defaults = vars(build_parser().parse_args(["--out", "x"]))
    assert recipe_flags(defaults) == []
    changed = vars(build_parser().parse_args(["--out", "x", "--augment", "--final-clips", "36000", "--threads", "8"]))
    assert recipe_flags(changed) == ["--final-clips 36000", "--augment"]  # threads do not change what is learnt
    logged = vars(build_parser().parse_args(["--out", "x", "--final-difficulty", "0.15", "1"]))
    logged["final_difficulty"] = list(logged["final_difficulty"])  # as training_log.json gives it back
    assert recipe_flags(logged) == ["--final-difficulty 0.15 1"]
    assert recipe_flags(logged | {"final_difficulty": [0.0, 1.0]}) == []


def test_the_last_stage_draws_difficulty_from_the_range_asked_for():
    stages = curriculum(2.0, final_difficulty=(0.15, 1.0))
    assert stages[-1].difficulty == (0.15, 1.0)
    assert [stage.difficulty for stage in stages[:-1]] == [stage.difficulty for stage in curriculum(2.0)[:-1]]


def test_distillation_pulls_the_model_towards_its_teachers_mean():
    torch.manual_seed(2)
    settings = ProcessorSettings.from_dict(processor_config_for(IMAGE_SIZE))
    windows = build_windows(seeds(2468, 8), (0.0, 0.5), FRAMES, STRIDE, settings, workers=1)
    teachers = [TimesformerForVideoClassification(model_config(hidden=32, layers=1, heads=2)) for _ in range(2)]
    targets = ensemble_logits(teachers, windows, settings, batch=3)  # batches of 3 over 8 windows: a ragged end
    pixels, _ = windows.batch(np.arange(len(windows)), settings)
    with torch.no_grad():
        expected = (teachers[0](pixel_values=pixels).logits + teachers[1](pixel_values=pixels).logits) / 2
    assert targets.shape == expected.shape == (8, len(teachers[0].config.id2label))
    torch.testing.assert_close(targets, expected, rtol=1e-4, atol=1e-5)
    assert distillation_loss(targets, targets, 2.0).item() == pytest.approx(0.0, abs=1e-6)

    student = TimesformerForVideoClassification(model_config(hidden=32, layers=1, heads=2))

    def gap(model) -> float:
        model.eval()
        with torch.no_grad():
            return distillation_loss(model(pixel_values=pixels).logits, targets, 2.0).item()

    before = gap(student)
    student, _ = train(student, [(windows, 20)], windows, settings, peak_lr=2e-3, warmup=2, batch=8, evaluate_every=20,
                       log=lambda line: None, soft_targets=[targets], distil_weight=1.0, temperature=2.0)
    assert before > 0 and gap(student) < 0.5 * before, (before, gap(student))
