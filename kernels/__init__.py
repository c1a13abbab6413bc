"""STAA kernels: each beside its PyTorch reference, one dispatch entry point per kernel family.

- ``threshold_focus``: dynamic thresholding + focusing + quantisation of maps (ARCHITECTURE §5).
- ``cls_row_sum`` / ``received_sum``: reduce a layer's attention to what STAA reads (§4).
"""

from kernels.attention_reduce import cls_row_sum, received_sum
from kernels.threshold_focus import FocusedMaps, threshold_focus, threshold_focus_reference

__all__ = ["FocusedMaps", "cls_row_sum", "received_sum", "threshold_focus", "threshold_focus_reference"]
