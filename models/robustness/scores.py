"""Robustness scores of windows: attack, explain the attacked window by the same STAA path, compare.

Plain module (no gRPC): the server's robustness lane, the CLI and the benchmark all call
``RobustnessScorer.score``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from staa_serve.models.pipeline import Staa
from staa_serve.models.preprocess import from_unit_range, to_unit_range
from staa_serve.models.registry import LoadedModel
from staa_serve.models.robustness.attacks import AttackSpec, perturb, run_here
from staa_serve.models.robustness.deviation import explanation_deviation
from staa_serve.models.staa import StaaParams


@dataclass
class RobustnessResult:
    """One window's scores (ARCHITECTURE §6); probabilities are of the clean top-1 class."""

    window_index: int
    attack: str
    epsilon: float  # /255
    steps: int
    flipped: bool
    clean_class: int
    adversarial_class: int
    p_clean: float
    p_adv: float
    prediction_robustness: float
    spatial_top10_iou: float
    spearman: float
    kendall_tau: float
    com_shift: float
    explanation_resilience: float
    passes: int
    ms: float

    def as_dict(self) -> dict:
        return asdict(self)


class RobustnessScorer:
    """Scores a batch of prepared windows under one attack."""

    def __init__(self, loaded: LoadedModel, params: StaaParams = StaaParams()):
        self.loaded = loaded
        self.staa = Staa(loaded, params)

    def _logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels ``[B, T, 3, H, W]`` -> logits ``[B, C]``, differentiable (normalised inside)."""
        return self.loaded.adapter.forward(from_unit_range(pixels, self.loaded.processor))

    def attacked_input(self, pixel_values: torch.Tensor, target: torch.Tensor, spec: AttackSpec,
                       run_pass=run_here) -> torch.Tensor:
        """Normalised model input ``[B, T, 3, H, W]`` -> the attacked window, normalised the same way."""
        unit = to_unit_range(pixel_values, self.loaded.processor)  # [0, 1] pixels: attacks live there
        return from_unit_range(perturb(self._logits, unit, target, spec, run_pass), self.loaded.processor)

    def score(self, pixel_values: torch.Tensor, spec: AttackSpec, window_indices: list[int] | None = None,
              params: StaaParams | None = None, run_pass=run_here) -> list[RobustnessResult]:
        """``pixel_values``: normalised model input ``[B, T, 3, H, W]`` (as ``models.preprocess.model_input`` makes it);
        ``params``: the STAA parameters of the explanations being scored (default: the scorer's);
        ``run_pass(work)``: runs every model pass (see ``perturb``)."""
        started = time.perf_counter()
        params = params or self.staa.params
        pixel_values = pixel_values.to(self.loaded.device, non_blocking=True)  # float32: the attack's maths stay precise
        batch = pixel_values.shape[0]
        clean = run_pass(lambda: self.staa.attribute_batch(pixel_values, params))  # [B, T, h, w], [B, T], [B, C]
        target = clean.logits.argmax(dim=-1)  # [B]
        adversarial = self.attacked_input(pixel_values, target, spec, run_pass)
        attacked = run_pass(lambda: self.staa.attribute_batch(adversarial, params))
        elapsed_ms = (time.perf_counter() - started) * 1e3
        p_clean = clean.logits.softmax(dim=-1).gather(1, target[:, None]).squeeze(1)  # [B]
        p_adv = attacked.logits.softmax(dim=-1).gather(1, target[:, None]).squeeze(1)  # [B]
        adversarial_class = attacked.logits.argmax(dim=-1)
        passes = 2 + spec.gradient_passes  # clean STAA forward, attack, STAA forward of x'
        results = []
        for row in range(batch):
            deviation = explanation_deviation(
                clean.spatial[row].flatten(1).cpu().numpy(), clean.temporal[row].cpu().numpy(),  # [T, h, w] -> [T, N]
                attacked.spatial[row].flatten(1).cpu().numpy(), attacked.temporal[row].cpu().numpy(), self.loaded.grid)
            results.append(RobustnessResult(
                window_index=window_indices[row] if window_indices is not None else row,
                attack=spec.kind, epsilon=spec.epsilon, steps=spec.steps if spec.kind == "pgd" else 0,
                flipped=bool(adversarial_class[row] != target[row]),
                clean_class=int(target[row]), adversarial_class=int(adversarial_class[row]),
                p_clean=float(p_clean[row]), p_adv=float(p_adv[row]),
                prediction_robustness=float(min(1.0, p_adv[row] / p_clean[row])) if p_clean[row] > 0 else 0.0,
                passes=passes, ms=elapsed_ms / batch, **deviation))
        return results
