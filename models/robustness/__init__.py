"""Attack robustness of predictions and explanations (ARCHITECTURE §6)."""

from models.robustness.attacks import ATTACKS, DEFAULT_EPSILON, DEFAULT_PGD_STEPS, AttackSpec, perturb
from models.robustness.deviation import explanation_deviation, resilience
from models.robustness.scores import RobustnessResult, RobustnessScorer

__all__ = ["ATTACKS", "DEFAULT_EPSILON", "DEFAULT_PGD_STEPS", "AttackSpec", "RobustnessResult", "RobustnessScorer",
           "explanation_deviation", "perturb", "resilience"]
