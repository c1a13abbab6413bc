"""How far an explanation moved under attack: STAA(x) against STAA(x') (ARCHITECTURE §6).

For one window, with spatial maps s, s' ``[T, N]`` (each frame summing to 1, on the h x w grid)
and temporal curves tau, tau' ``[T]``:

- ``spatial_top10_iou``: IoU of the top 10 % tokens (at least one, never a zero) of the joint maps
  E = tau * s over all T*N tokens;
- ``spearman``: Spearman's rho between E and E' over all T*N tokens;
- ``kendall_tau``: Kendall's tau-b between tau and tau';
- ``com_shift``: per frame, the distance between the centres of mass of s and s' on the grid,
  averaged over frames and divided by the grid's diagonal (0 = same place, 1 = opposite corners);
- ``explanation_resilience`` = mean(IoU, (rho + 1) / 2, (tau_K + 1) / 2, 1 - com_shift), in [0, 1]:
  1 for identical explanations, about 0.5 or less when the explanation no longer resembles itself.

A rank correlation of a constant map is undefined; it counts as 1 when both maps are constant
(nothing to rank, nothing moved) and 0 when only one is.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

TOP_FRACTION = 0.10


def _rank_correlation(method, a: np.ndarray, b: np.ndarray) -> float:
    a_constant, b_constant = np.ptp(a) == 0, np.ptp(b) == 0
    if a_constant or b_constant:
        return 1.0 if a_constant and b_constant else 0.0
    value = method(a, b)[0]
    return float(value) if math.isfinite(value) else 0.0


def top_iou(a: np.ndarray, b: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """IoU of the ``fraction`` highest entries (at least one) of two same-sized maps; zero-valued
    entries never count as "top" (ties broken by position). Two empty top sets agree (1)."""
    count = max(1, int(round(fraction * a.size)))

    def top(values: np.ndarray) -> set[int]:
        order = np.argsort(-values.ravel(), kind="stable")[:count]
        return {int(index) for index in order if values.flat[index] > 0}

    top_a, top_b = top(a), top(b)
    return len(top_a & top_b) / len(top_a | top_b) if top_a | top_b else 1.0


def centre_of_mass_shift(spatial: np.ndarray, other: np.ndarray, grid: tuple[int, int]) -> float:
    """Mean over frames of the distance between centres of mass, over the grid diagonal."""
    height, width = grid
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)

    def centres(maps: np.ndarray) -> np.ndarray:  # [T, N] -> [T, 2]
        weights = maps.reshape(-1, height, width).astype(np.float64)
        total = weights.sum(axis=(1, 2))
        safe = np.where(total > 0, total, 1.0)
        centre = np.stack([(weights * ys).sum(axis=(1, 2)) / safe, (weights * xs).sum(axis=(1, 2)) / safe], axis=1)
        middle = np.array([(height - 1) / 2, (width - 1) / 2])
        return np.where(total[:, None] > 0, centre, middle)  # an empty frame sits in the middle

    diagonal = math.hypot(height - 1, width - 1) or 1.0
    return float(np.linalg.norm(centres(spatial) - centres(other), axis=1).mean() / diagonal)


def explanation_deviation(spatial: np.ndarray, temporal: np.ndarray, spatial_adv: np.ndarray,
                          temporal_adv: np.ndarray, grid: tuple[int, int]) -> dict[str, float]:
    """The four deviation figures and the resilience for one window (spatial ``[T, N]``, temporal ``[T]``)."""
    joint, joint_adv = temporal[:, None] * spatial, temporal_adv[:, None] * spatial_adv  # [T, N]
    scores = {
        "spatial_top10_iou": top_iou(joint, joint_adv),
        "spearman": _rank_correlation(stats.spearmanr, joint.ravel(), joint_adv.ravel()),
        "kendall_tau": _rank_correlation(stats.kendalltau, temporal, temporal_adv),
        "com_shift": centre_of_mass_shift(spatial, spatial_adv, grid),
    }
    scores["explanation_resilience"] = resilience(scores)
    return scores


def resilience(scores: dict[str, float]) -> float:
    """mean(IoU, (rho + 1) / 2, (tau_K + 1) / 2, 1 - com_shift), clipped to [0, 1]."""
    parts = (scores["spatial_top10_iou"], (scores["spearman"] + 1) / 2, (scores["kendall_tau"] + 1) / 2,
             1 - scores["com_shift"])
    return float(min(1.0, max(0.0, sum(parts) / len(parts))))
