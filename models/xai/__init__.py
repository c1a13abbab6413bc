"""Every attribution method behind one interface: ``method.attribute(clip, target) -> Attribution``.

``build_methods(loaded)`` gives the benchmark's line-up by name; see ``base`` for the interface
and the one pooling rule that brings pixel-level methods to tokens and frames.
"""

from __future__ import annotations

from dataclasses import replace

from staa_serve.models.errors import UnsupportedModel
from staa_serve.models.registry import LoadedModel
from staa_serve.models.staa import StaaParams
from staa_serve.models.xai.attention import AttentionRollout, GradientWeightedStaa, OriginalStaa, StaaVariant, staa_variants
from staa_serve.models.xai.base import AttributionMethod, joint_map, pool_pixels
from staa_serve.models.xai.gradients import FrameAblation, GradCamTokens, PixelGradientMethod

METHOD_NAMES = ("staa", "staa_class", "staa_last_layer", "staa_last_2", "staa_uniform_temporal", "staa_gradient_weighted", "staa_original", "attention_rollout",
                "saliency", "input_x_gradient", "integrated_gradients_8", "integrated_gradients_50", "grad_cam",
                "frame_ablation")


# These read TimeSformer's divided attention or its block layout; VideoMAE gets the others.
TIMESFORMER_ONLY = ("staa_gradient_weighted", "staa_original", "attention_rollout", "grad_cam")


def supported_methods(loaded: LoadedModel, names=METHOD_NAMES) -> tuple[str, ...]:
    return tuple(name for name in names if loaded.architecture == "timesformer" or name not in TIMESFORMER_ONLY)


def build_method(loaded: LoadedModel, name: str, params: StaaParams = StaaParams()) -> AttributionMethod:
    """One attribution method by name (``METHOD_NAMES``)."""
    if name in TIMESFORMER_ONLY and loaded.architecture != "timesformer":
        raise UnsupportedModel(f"{name} needs a divided space-time TimeSformer; {loaded.model_id} is {loaded.architecture}")
    variants = {variant.name: variant for variant in staa_variants(loaded, params)}
    if name in variants:
        return variants[name]
    builders = {
        "staa_class": lambda: StaaVariant(loaded, "staa_class", replace(params, method="staa_class")),
        "staa_gradient_weighted": lambda: GradientWeightedStaa(loaded, params),
        "staa_original": lambda: OriginalStaa(loaded),
        "attention_rollout": lambda: AttentionRollout(loaded),
        "saliency": lambda: PixelGradientMethod(loaded, "saliency"),
        "input_x_gradient": lambda: PixelGradientMethod(loaded, "input_x_gradient"),
        "integrated_gradients_8": lambda: PixelGradientMethod(loaded, "integrated_gradients_8", n_steps=8),
        "integrated_gradients_50": lambda: PixelGradientMethod(loaded, "integrated_gradients_50", n_steps=50),
        "grad_cam": lambda: GradCamTokens(loaded),
        "frame_ablation": lambda: FrameAblation(loaded),
    }
    if name not in builders:
        raise ValueError(f"unknown attribution method {name!r}; known: {', '.join(METHOD_NAMES)}")
    return builders[name]()


def build_methods(loaded: LoadedModel, names=METHOD_NAMES, params: StaaParams = StaaParams()) -> list[AttributionMethod]:
    return [build_method(loaded, name, params) for name in names]


__all__ = ["METHOD_NAMES", "TIMESFORMER_ONLY", "supported_methods", "AttributionMethod", "build_method", "build_methods", "joint_map", "pool_pixels",
           "StaaVariant", "GradientWeightedStaa", "OriginalStaa", "AttentionRollout", "PixelGradientMethod",
           "GradCamTokens", "FrameAblation"]
