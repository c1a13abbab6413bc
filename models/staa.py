"""Spatio-Temporal Attention Attribution (STAA), ARCHITECTURE §4.

From attention the forward pass computes anyway (read by the adapter's hooks):
- spatial, per layer:  s^l[t, p] = mean_h A_s^l[t, h, 0, 1+p]  (CLS copy of frame t -> patch p);
  aggregated over layers, then normalised per frame (each frame's map sums to 1);
- temporal, per layer: tau^l[t] = sum_p w[p] * mean_h mean_t' A_t^l[p, h, t', t], with
  w[p] = mean_t s[t, p] normalised; aggregated over layers and normalised to sum 1;
- joint map: E[t, p] = tau[t] * s[t, p].
One forward pass, no gradient.

Every layer aggregation is a sum over a slice of layers (``layer_slice``) and the weighting is
linear, so layers are aggregated first, where the attention is read (the adapters' ``capture``
takes the two slices), and the functions below take the aggregated ``[B, T, N]`` and ``[B, N, T]``.

Letters: B batch, T frames, N = h*w patches, L layers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import torch

from kernels.threshold_focus import DEFAULT_GAMMA, DEFAULT_KAPPA, DEFAULT_PERCENTILE
from kernels.threshold_focus import MODES as THRESHOLD_MODES

LAYER_AGGREGATIONS = ("last", "mean", "mean_last_k")
TEMPORAL_WEIGHTINGS = ("cls", "uniform")  # w[p] from the CLS rows, or every patch alike
ALL_LAYERS = slice(None)


@dataclass(frozen=True)
class StaaParams:
    """STAA and post-processing parameters. Defaults chosen with the quality harness
    (``staa-bench compare``, benchmarks/reports/compare.md): mean over all layers for both maps,
    CLS-weighted temporal curve, kappa 2 and gamma 2; the README says why."""

    spatial_aggregation: str = "mean"
    temporal_aggregation: str = "mean"  # the prototype's best: all layers (sum and mean rank alike)
    last_k: int = 2
    temporal_weighting: str = "cls"
    threshold_mode: str = "mean_std"
    kappa: float = DEFAULT_KAPPA
    percentile: float = DEFAULT_PERCENTILE
    gamma: float = DEFAULT_GAMMA
    smooth: bool = False

    def __post_init__(self):
        for name in ("spatial_aggregation", "temporal_aggregation"):
            value = getattr(self, name)
            if value not in LAYER_AGGREGATIONS:
                raise ValueError(f"StaaParams.{name} must be one of {LAYER_AGGREGATIONS}, got {value!r}")
        if self.temporal_weighting not in TEMPORAL_WEIGHTINGS:
            raise ValueError(f"StaaParams.temporal_weighting must be one of {TEMPORAL_WEIGHTINGS}, got {self.temporal_weighting!r}")
        if self.threshold_mode not in THRESHOLD_MODES:
            raise ValueError(f"StaaParams.threshold_mode must be one of {THRESHOLD_MODES}, got {self.threshold_mode!r}")
        _check_range("last_k", self.last_k, 1, 1024)
        _check_range("kappa", self.kappa, -10.0, 10.0)
        _check_range("percentile", self.percentile, 0.0, 100.0)
        _check_range("gamma", self.gamma, 1.0, 16.0)

    def digest(self) -> str:
        """A short stable hash of the parameters (part of each explanation's provenance)."""
        canonical = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _check_range(name: str, value, low, high) -> None:
    if not (low <= value <= high):  # also false for NaN
        raise ValueError(f"StaaParams.{name} must be in [{low}, {high}], got {value}")


def layer_slice(how: str, last_k: int) -> slice:
    """The layers an aggregation option sums: the last, the last k (``mean_last_k``) or all (``mean``)."""
    if how == "last":
        return slice(-1, None)
    return slice(-last_k, None) if how == "mean_last_k" else slice(None)


def sum_layers(per_layer: torch.Tensor | list[torch.Tensor], layers: slice = ALL_LAYERS) -> torch.Tensor:
    """The sum of the ``layers`` of L same-shaped per-layer tensors (stacked ``[L, ...]``, or a non-empty
    selection of a list) -> ``[...]``."""
    chosen = per_layer[layers]
    return (chosen if isinstance(chosen, torch.Tensor) else torch.stack(chosen)).sum(dim=0)


def aggregate_layers(per_layer: torch.Tensor | list[torch.Tensor], how: str, last_k: int) -> torch.Tensor:
    """Combine L same-shaped per-layer tensors (stacked ``[L, ...]``, or a list) into one ``[...]``:
    the sum over the layers ``layer_slice`` picks.

    A sum where the option says mean: every STAA map is normalised afterwards, where the constant
    1/L cancels, and on CPU a scalar divide costs five operator calls per explanation.
    """
    return sum_layers(per_layer, layer_slice(how, last_k))


def normalise(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum to 1 along ``dim``; a slice summing to 0 becomes uniform."""
    total = values.sum(dim=dim, keepdim=True)
    # The usual case in fewer ops (this runs on every explanation; min() is 3 operator calls where
    # (total > 0).all() is 11); on a GPU the check would be a host-device sync per call, so there the
    # one-pass form below serves every case. A NaN total fails the check, as it should.
    if values.device.type == "cpu" and total.min().item() > 0:
        return values / total
    uniform = torch.full_like(values, 1.0 / values.shape[dim])
    return torch.where(total > 0, values / total.clamp_min(1e-30), uniform)


def staa_spatial(spatial_cls: torch.Tensor) -> torch.Tensor:
    """Layer-aggregated CLS rows ``[B, T, N]`` -> spatial map ``[B, T, N]``, each frame summing to 1."""
    return normalise(spatial_cls, dim=-1)


def staa_temporal(temporal_received: torch.Tensor, spatial: torch.Tensor, params: StaaParams) -> torch.Tensor:
    """Layer-aggregated received attention ``[B, N, T]`` weighted by ``spatial`` ``[B, T, N]`` -> ``[B, T]`` summing to 1."""
    # w[p] = mean_t s[t, p]: a sum here, as the constant 1/T cancels in the final normalise.
    patch_weights = spatial.sum(dim=1, keepdim=True)  # [B, T, N] -> [B, 1, N], sums to T
    if params.temporal_weighting == "uniform":
        patch_weights = torch.ones_like(patch_weights)
    weighted = torch.bmm(patch_weights, temporal_received).squeeze(1)  # [B, 1, N] @ [B, N, T] -> [B, 1, T] -> [B, T]
    return normalise(weighted, dim=-1)


def staa_joint(spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
    """E[t, p] = tau[t] * s[t, p]: ``[B, T, N]``, summing to 1 over (T, N)."""
    return temporal.unsqueeze(-1) * spatial  # [B, T] -> [B, T, 1] * [B, T, N]
