"""Protobuf <-> plain Python, in exactly one place. Invalid option values become InvalidInput."""

from __future__ import annotations

import sys
from dataclasses import asdict
from importlib import metadata

import numpy as np
import torch
import transformers

from staa_serve.models.errors import InvalidInput
from staa import quoted
from staa_serve.models.pipeline import WindowExplanation, code_version
from staa_serve.models.registry import LoadedModel
from staa_serve.models.robustness import DEFAULT_EPSILON, DEFAULT_PGD_STEPS, AttackSpec, RobustnessResult
from staa_serve.models.staa import METHODS as STAA_METHODS
from staa_serve.models.staa import StaaParams
from staa_serve.server.config import ServerConfig
from staa_serve.server.robustness_lane import RobustnessPlan, SkippedRobustness
from staa_serve.server.session import (ExplainOptions, FrameInput, check_fps, resolve_top_k,
                                       resolve_window)
from staa.v1 import explainer_pb2 as pb

_AGGREGATION_TO_NAME = {pb.LAYER_AGGREGATION_LAST: "last", pb.LAYER_AGGREGATION_MEAN: "mean",
                        pb.LAYER_AGGREGATION_MEAN_LAST_K: "mean_last_k"}
_AGGREGATION_FROM_NAME = {name: value for value, name in _AGGREGATION_TO_NAME.items()}
_MODE_TO_NAME = {pb.THRESHOLD_MODE_MEAN_STD: "mean_std", pb.THRESHOLD_MODE_PERCENTILE: "percentile"}
_MODE_FROM_NAME = {name: value for value, name in _MODE_TO_NAME.items()}
_ATTACK_TO_NAME = {pb.ATTACK_NOISE: "noise", pb.ATTACK_FGSM: "fgsm", pb.ATTACK_PGD: "pgd"}
_ATTACK_FROM_NAME = {name: value for value, name in _ATTACK_TO_NAME.items()}
_METHOD_TO_NAME = {pb.METHOD_STAA: "staa", pb.METHOD_STAA_CLASS: "staa_class", pb.METHOD_SALIENCY: "saliency",
                   pb.METHOD_INPUT_X_GRADIENT: "input_x_gradient",
                   pb.METHOD_INTEGRATED_GRADIENTS_8: "integrated_gradients_8"}
_METHOD_FROM_NAME = {name: value for value, name in _METHOD_TO_NAME.items()}


def _enum_name(table: dict, value: int, field: str, default: str) -> str:
    if value == 0:
        return default
    if value not in table:
        raise InvalidInput(f"{field}={value} is not a known value")
    return table[value]


def method_value(name: str) -> int:
    """A method's name (``staa``, ``staa_class``, ``saliency``...) -> its ``Method`` enum value."""
    if name not in _METHOD_FROM_NAME:
        raise InvalidInput(f"method {quoted(name)} is not one of {', '.join(_METHOD_FROM_NAME)}")
    return _METHOD_FROM_NAME[name]


def method_name(options: pb.StaaOptions) -> str:
    return _enum_name(_METHOD_TO_NAME, options.method, "StaaOptions.method", StaaParams().method)


def staa_params(options: pb.StaaOptions, num_labels: int) -> StaaParams:
    defaults = StaaParams()
    method = method_name(options)
    target = options.target_class if options.HasField("target_class") else None
    if target is not None and method == "staa":
        raise InvalidInput("StaaOptions.target_class needs a class-sensitive method (STAA's maps do not depend on the "
                           "class): METHOD_STAA_CLASS or a gradient method")
    if target is not None and target >= num_labels:
        raise InvalidInput(f"StaaOptions.target_class={target} is not a class of this model (0..{num_labels - 1})")
    values = dict(
        spatial_aggregation=_enum_name(_AGGREGATION_TO_NAME, options.spatial_aggregation,
                                       "StaaOptions.spatial_aggregation", defaults.spatial_aggregation),
        temporal_aggregation=_enum_name(_AGGREGATION_TO_NAME, options.temporal_aggregation,
                                        "StaaOptions.temporal_aggregation", defaults.temporal_aggregation),
        last_k=options.last_k or defaults.last_k,
        threshold_mode=_enum_name(_MODE_TO_NAME, options.threshold_mode, "StaaOptions.threshold_mode",
                                  defaults.threshold_mode),
        method=method if method in STAA_METHODS else defaults.method,  # gradient methods: ExplainOptions.method
        target_class=target,
    )
    for name in ("kappa", "percentile", "gamma", "smooth"):
        values[name] = getattr(options, name) if options.HasField(name) else getattr(defaults, name)
    try:
        return StaaParams(**values)
    except ValueError as error:  # StaaParams names the field and range; make it a client error
        raise InvalidInput(str(error).replace("StaaParams.", "StaaOptions.")) from error


def robustness_plan(options: pb.RobustnessOptions, config: ServerConfig) -> RobustnessPlan | None:
    """None when the request asks for no robustness scores (attack unset or OFF)."""
    if options.attack in (pb.ATTACK_UNSPECIFIED, pb.ATTACK_OFF):
        return None
    kind = _enum_name(_ATTACK_TO_NAME, options.attack, "RobustnessOptions.attack", "")
    epsilon = options.epsilon if options.HasField("epsilon") else DEFAULT_EPSILON
    if not 0 < epsilon <= config.max_robustness_epsilon:
        raise InvalidInput(f"RobustnessOptions.epsilon must be in (0, {config.max_robustness_epsilon}] "
                           f"(/255 units), got {epsilon}")
    steps = options.steps or DEFAULT_PGD_STEPS
    if steps > config.max_robustness_steps:
        raise InvalidInput(f"RobustnessOptions.steps={steps} exceeds max_robustness_steps={config.max_robustness_steps}")
    try:
        spec = AttackSpec(kind, float(epsilon), steps, options.step_size if options.HasField("step_size") else None,
                          seed=options.seed)
    except ValueError as error:
        raise InvalidInput(f"RobustnessOptions: {error}") from error
    return RobustnessPlan(spec, options.every or config.default_robustness_every)


def explain_options(window: pb.WindowSpec, staa: pb.StaaOptions, robustness: pb.RobustnessOptions,
                    loaded: LoadedModel, config: ServerConfig) -> ExplainOptions:
    return ExplainOptions(
        window=resolve_window(loaded, config, window.num_frames, window.stride, window.hop),
        params=staa_params(staa, len(loaded.labels)),
        top_k=resolve_top_k(config, staa.top_k),
        robustness=robustness_plan(robustness, config),
        method=method_name(staa),
    )


def stream_options(request: pb.StreamConfig, loaded: LoadedModel, config: ServerConfig) -> ExplainOptions:
    check_fps(request.fps, "StreamConfig.fps")
    return explain_options(request.window, request.staa, request.robustness, loaded, config)


def clip_options(request: pb.ClipRequest, loaded: LoadedModel, config: ServerConfig) -> ExplainOptions:
    return explain_options(request.window, request.staa, request.robustness, loaded, config)


def frame_input(frame: pb.Frame) -> FrameInput:
    kind = frame.WhichOneof("data") or ""
    return FrameInput(kind, getattr(frame, kind) if kind else b"", frame.width, frame.height, frame.sequence, frame.pts)


def applied_params(params: StaaParams, method: str, target_class: int) -> pb.StaaParams:
    """The settings that made a window's maps; those that did not apply stay 0 / UNSPECIFIED."""
    echoed = pb.StaaParams(threshold_mode=_MODE_FROM_NAME[params.threshold_mode], gamma=params.gamma,
                           smooth=params.smooth, method=_METHOD_FROM_NAME[method], target_class=target_class)
    if method == "staa":
        echoed.spatial_aggregation = _AGGREGATION_FROM_NAME[params.spatial_aggregation]
        echoed.temporal_aggregation = _AGGREGATION_FROM_NAME[params.temporal_aggregation]
        if "mean_last_k" in (params.spatial_aggregation, params.temporal_aggregation):
            echoed.last_k = params.last_k
    if params.threshold_mode == "percentile":
        echoed.percentile = params.percentile
    else:
        echoed.kappa = params.kappa
    return echoed


def explanation(result: WindowExplanation) -> pb.Explanation:
    frames, height, width = result.heatmaps.shape
    params, timings = result.params, result.timings
    return pb.Explanation(
        window_index=result.index,
        source_frames=result.source_frames,
        pts=result.pts,
        padded=result.padded,
        aligned_to_end=result.aligned_to_end,
        topk=[pb.ClassScore(class_id=score.class_id, label=score.label, probability=score.probability)
              for score in result.topk],
        spatial=pb.HeatmapGrid(frames=frames, height=height, width=width,
                               data=np.ascontiguousarray(result.heatmaps, np.uint8).tobytes(),
                               scale=result.scale.tolist(), mass=result.mass.tolist()),
        temporal=result.temporal.tolist(),
        crop=pb.CropBox(x0=result.crop.x0, y0=result.crop.y0, x1=result.crop.x1, y1=result.crop.y1),
        source_width=result.source_size[0],
        source_height=result.source_size[1],
        params=applied_params(params, result.method, result.target_class),
        timings=pb.Timings(decode_ms=timings.decode_ms, queue_ms=timings.queue_ms, forward_ms=timings.forward_ms,
                           attribution_ms=timings.attribution_ms, postprocess_ms=timings.postprocess_ms,
                           total_ms=timings.total_ms),
        provenance=pb.Provenance(**asdict(result.provenance)),
    )


def robustness(result: RobustnessResult | SkippedRobustness) -> pb.Robustness:
    if isinstance(result, SkippedRobustness):
        return pb.Robustness(window_index=result.window_index, attack=_ATTACK_FROM_NAME[result.spec.kind],
                             epsilon=result.spec.epsilon, skipped=True, reason=result.reason)
    fields = result.as_dict()
    fields["attack"] = _ATTACK_FROM_NAME[fields["attack"]]
    return pb.Robustness(**fields)


def model_info(loaded: LoadedModel, name: str, served: list[str]) -> pb.ModelInfo:
    """``name``: what requests choose this model by; ``served``: every served name, the default first."""
    settings = loaded.processor
    height, width = loaded.grid
    return pb.ModelInfo(
        model_id=loaded.model_id,
        architecture=loaded.architecture,
        labels=loaded.labels,
        num_frames=loaded.num_frames,
        default_stride=loaded.default_stride,
        image_size=loaded.image_size,
        patch_size=loaded.patch_size,
        grid_height=height,
        grid_width=width,
        processor=pb.ProcessorSettings(
            shortest_edge=settings.shortest_edge or 0, crop_height=settings.crop_height,
            crop_width=settings.crop_width, image_mean=settings.image_mean, image_std=settings.image_std,
            rescale_factor=settings.rescale_factor,
        ),
        weights_sha256=loaded.weights_sha256,
        attention=loaded.adapter.implementation,
        device=str(loaded.device),
        dtype=str(loaded.dtype).removeprefix("torch."),
        versions={
            "staa-serve": code_version(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "grpcio": metadata.version("grpcio"),
        },
        random_weights=loaded.random_weights,
        name=name,
        served_models=served,
    )
