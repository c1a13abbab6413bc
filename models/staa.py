"""Spatio-Temporal Attention Attribution (STAA), ARCHITECTURE §4: all of its maths.

Input, from one forward pass (``AttentionRows``, delivered by the model's adapter, see
``models/attention.py``): per layer l, the row of attention STAA reads for each frame slot t and
patch p, summed over heads (sums, not means: every map below is normalised, where the constant
factors 1/H, 1/L, 1/T cancel):
- spatial  r^l[t, p]: divided attention (TimeSformer): frame t's CLS query row over its patches;
  joint attention: the CLS row (ViViT) or the mean query row (VideoMAE), slot t's share of it;
- temporal c^l[p, t]: divided: the attention frame t receives at patch position p, over all
  queries (``AttentionRows.per_patch``); joint: the same row as the spatial one.
Maths:
- spatial map  s[t, p] = sum_{l in Ls} r^l[t, p], normalised per frame (each frame sums to 1);
- patch weight w[p] = mean_t s[t, p] for divided attention, where it says how much the CLS token
  looks at patch position p (or 1 for every patch: ``temporal_weighting="uniform"``); 1 for joint
  attention, whose row already is the CLS (or mean query) attention to each (t, p): tau sums it per slot;
- frame importance tau[t] = sum_p w[p] * sum_{l in Lt} c^l[p, t], normalised to sum 1;
- joint map E[t, p] = tau[t] * s[t, p].
Ls and Lt are the layers ``layer_slice`` picks for each map. A model whose tokens span several
frames (tubelets) gives rows per slot; every frame of a slot gets its slot's map and an equal share
of its importance. One forward pass, no gradient.

Class-sensitive STAA (``method="staa_class"``): STAA's maps ignore the class explained and, summed
over all layers, barely move when the top of the model is randomised (the cascading sanity check).
``staa_class`` keeps the attention that moved class c's log-probability: at each layer l's attention
into the pooled token (the CLS row, or the column sums of mean pooling), per head h,
e_c^l[t, p] = sum_h a_h^l[t, p] * (V_h^l[t, p] . w_h^l(c) - m_h^l), w^l(c) the direction of log p_c at
the classifier's input (W_c - sum_k p_k W_k) through the final LayerNorm and that attention's output
projection, m_h^l the head's attended mean of V . w: how much attending to token (t, p) rather than to
the head's average token moved log p_c through layer l, directly (``VideoAdapter.class_contributions``).
Then, with e_c = sum over the layers ``class_aggregation`` picks:
- spatial s[t, p] = e_c[t, p]^2, normalised per frame (evidence for and against c: on the held-out
  clips the positive part alone localised and deleted worse, see README);
- tau[t] = sum_p e_c[t, p]^2, normalised to sum 1 (squared rather than |e|: the frame curve goes
  to the frames with the strongest evidence, with the same ranks inside a frame).
Still one forward pass: each layer's pooling row per head and values, a product with one class direction.

Letters: B batch, T frames, T' frame slots (T / frames_per_slot), N = h*w patches, L layers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import torch

from staa_serve.kernels.threshold_focus import DEFAULT_GAMMA, DEFAULT_KAPPA, DEFAULT_PERCENTILE
from staa_serve.kernels.threshold_focus import MODES as THRESHOLD_MODES

METHODS = ("staa", "staa_class")
LAYER_AGGREGATIONS = ("last", "mean", "mean_last_k")
TEMPORAL_WEIGHTINGS = ("cls", "uniform")  # w[p] from the CLS rows, or every patch alike


@dataclass(frozen=True)
class StaaParams:
    """STAA and post-processing parameters. Defaults chosen with the quality harness
    (``staa-bench compare``, benchmarks/reports/compare.md): mean over all layers for both maps,
    CLS-weighted temporal curve, kappa 2 and gamma 2; the README says why."""

    spatial_aggregation: str = "mean"
    temporal_aggregation: str = "mean"  # the prototype's best: all layers (sum and mean rank alike)
    last_k: int = 2
    temporal_weighting: str = "cls"  # divided attention only (models with a joint row sum it per slot)
    threshold_mode: str = "mean_std"
    kappa: float = DEFAULT_KAPPA
    percentile: float = DEFAULT_PERCENTILE
    gamma: float = DEFAULT_GAMMA
    smooth: bool = False
    method: str = "staa"  # or "staa_class" (module docstring)
    target_class: int | None = None  # staa_class: the class explained (None: each window's predicted class)
    class_aggregation: str = "mean"  # staa_class: the layers whose direct contributions are summed

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"StaaParams.method must be one of {METHODS}, got {self.method!r}")
        if self.target_class is not None and self.target_class < 0:
            raise ValueError(f"StaaParams.target_class must be >= 0, got {self.target_class}")
        for name in ("spatial_aggregation", "temporal_aggregation", "class_aggregation"):
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


@dataclass
class AttentionRows:
    """The rows one forward's attention hands to STAA (head-sums, float32).

    Attributes:
        spatial: ``[L, B, T', N]``: r^l[t, p] of the module docstring.
        temporal: ``[L, B, N, T']``: c^l[p, t].
        per_patch: the temporal rows are attention received at each patch position (divided
            attention), which the CLS patch weights w[p] apply to; False for a joint row.
        frames_per_slot: frames each slot spans (1, or a tubelet's depth).
        class_contributions: ``[L, B, T', N]`` e_c^l of the module docstring, when the forward read them.
    """

    spatial: torch.Tensor | None  # None when the forward read class contributions instead
    temporal: torch.Tensor | None
    per_patch: bool = True
    frames_per_slot: int = 1
    class_contributions: torch.Tensor | None = None


def layer_slice(how: str, last_k: int) -> slice:
    """The layers an aggregation option sums: the last, the last k (``mean_last_k``) or all (``mean``)."""
    if how == "last":
        return slice(-1, None)
    return slice(-last_k, None) if how == "mean_last_k" else slice(None)


def aggregate_layers(per_layer: torch.Tensor, how: str, last_k: int) -> torch.Tensor:
    """``[L, ...]`` -> ``[...]``: the sum over the layers ``layer_slice`` picks (a sum where the option
    says mean: the 1/L cancels in the normalisation that follows every aggregation)."""
    return per_layer[layer_slice(how, last_k)].sum(dim=0)


def normalise(values: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum to 1 along ``dim``; a slice summing to 0 (or NaN) becomes uniform. No host sync: the same
    one pass on every device."""
    total = values.sum(dim=dim, keepdim=True)
    return torch.where(total > 0, values / total, 1.0 / values.shape[dim])


def staa_spatial(spatial_rows: torch.Tensor) -> torch.Tensor:
    """Layer-aggregated rows ``[B, T', N]`` -> spatial map ``[B, T', N]``, each frame summing to 1."""
    return normalise(spatial_rows, dim=-1)


def staa_temporal(temporal_rows: torch.Tensor, spatial: torch.Tensor, params: StaaParams,
                  per_patch: bool = True) -> torch.Tensor:
    """Layer-aggregated received attention ``[B, N, T']`` weighted by ``spatial`` ``[B, T', N]`` (when
    ``per_patch``, see ``AttentionRows``) -> ``[B, T']`` summing to 1."""
    # w[p] = mean_t s[t, p]: a sum here, as the constant 1/T cancels in the final normalise.
    patch_weights = spatial.sum(dim=1, keepdim=True)  # [B, T', N] -> [B, 1, N]
    if not per_patch or params.temporal_weighting == "uniform":
        patch_weights = torch.ones_like(patch_weights)
    weighted = torch.bmm(patch_weights, temporal_rows).squeeze(1)  # [B, 1, N] @ [B, N, T'] -> [B, 1, T'] -> [B, T']
    return normalise(weighted, dim=-1)


def staa_maps(rows: AttentionRows, params: StaaParams) -> tuple[torch.Tensor, torch.Tensor]:
    """STAA (or, with ``params.method == "staa_class"``, class-sensitive STAA) of one forward: spatial
    map ``[B, T, N]`` (each frame sums to 1) and frame importance ``[B, T]`` (sums to 1)."""
    if params.method == "staa_class":
        if rows.class_contributions is None:
            raise ValueError("staa_class needs the class contributions: read with class_sensitive=True")
        evidence = aggregate_layers(rows.class_contributions, params.class_aggregation, params.last_k)  # [B, T', N]
        evidence = evidence.square()  # for c and against it; squared: frame importance goes to the strongest evidence
        spatial, temporal = normalise(evidence, dim=-1), normalise(evidence.sum(dim=-1), dim=-1)  # [B, T', N], [B, T']
    else:
        spatial = staa_spatial(aggregate_layers(rows.spatial, params.spatial_aggregation, params.last_k))  # [B, T', N]
        temporal_rows = aggregate_layers(rows.temporal, params.temporal_aggregation, params.last_k)  # [B, N, T']
        temporal = staa_temporal(temporal_rows, spatial, params, rows.per_patch)  # [B, T']
    if rows.frames_per_slot == 1:
        return spatial, temporal
    repeat = rows.frames_per_slot  # every frame of a slot: its map, an equal share of its importance
    return spatial.repeat_interleave(repeat, dim=1), temporal.repeat_interleave(repeat, dim=1) / repeat  # [B, T, N], [B, T]


def staa_joint(spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
    """E[t, p] = tau[t] * s[t, p]: ``[B, T, N]``, summing to 1 over (T, N)."""
    return temporal.unsqueeze(-1) * spatial  # [B, T] -> [B, T, 1] * [B, T, N]
