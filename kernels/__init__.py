"""Post-processing kernels for STAA maps: each beside its PyTorch reference, one dispatch entry point."""

from kernels.threshold_focus import FocusedMaps, threshold_focus, threshold_focus_reference

__all__ = ["FocusedMaps", "threshold_focus", "threshold_focus_reference"]
