"""Attack robustness of predictions and explanations (ARCHITECTURE §6)."""

from staa_serve.models.robustness.attacks import ATTACKS, DEFAULT_EPSILON, DEFAULT_PGD_STEPS, AttackSpec, perturb
from staa_serve.models.robustness.deviation import explanation_deviation, resilience
from staa_serve.models.robustness.scores import RobustnessResult, RobustnessScorer

__all__ = ["ATTACKS", "DEFAULT_EPSILON", "DEFAULT_PGD_STEPS", "AttackSpec", "RobustnessResult", "RobustnessScorer",
           "explanation_deviation", "perturb", "resilience"]
