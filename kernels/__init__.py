"""STAA kernels: each beside its PyTorch reference, one dispatch entry point per kernel family.

- ``threshold_focus``: dynamic thresholding + focusing + quantisation of maps (ARCHITECTURE §5).
- ``column_sum`` / ``query_row``: the rows of a layer's attention STAA reads, recomputed beside a
  fused attention (§4).
"""

from staa_serve.kernels.attention_rows import column_sum, query_row
from staa_serve.kernels.threshold_focus import FocusedMaps, threshold_focus, threshold_focus_reference

__all__ = ["FocusedMaps", "column_sum", "query_row", "threshold_focus", "threshold_focus_reference"]
