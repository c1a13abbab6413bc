"""Explanations as plain JSON (the ``explanations.json`` schema) and back to arrays."""

from __future__ import annotations

import numpy as np
from google.protobuf.json_format import MessageToDict

from staa.v1 import explainer_pb2 as pb


def heatmaps(explanation: pb.Explanation) -> np.ndarray:
    """uint8 ``[T, h, w]`` from the wire grid."""
    grid = explanation.spatial
    return np.frombuffer(grid.data, np.uint8).reshape(grid.frames, grid.height, grid.width)


def explanation_to_dict(explanation: pb.Explanation) -> dict:
    crop = explanation.crop
    return {
        "index": explanation.window_index,
        "frames": list(explanation.source_frames),
        "pts": [round(value, 6) for value in explanation.pts],
        "padded": explanation.padded,
        "topk": [{"class_id": score.class_id, "label": score.label, "prob": round(score.probability, 6)}
                 for score in explanation.topk],
        "temporal": [round(value, 6) for value in explanation.temporal],
        "spatial": heatmaps(explanation).tolist(),
        "scale": list(explanation.spatial.scale),
        "crop": [crop.x0, crop.y0, crop.x1, crop.y1],
        "source_size": [explanation.source_width, explanation.source_height],
        "params": MessageToDict(explanation.params, preserving_proto_field_name=True,
                                always_print_fields_with_no_presence=True),
        "timings_ms": {name: round(value, 3) for name, value in MessageToDict(
            explanation.timings, preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True).items()},
        "provenance": MessageToDict(explanation.provenance, preserving_proto_field_name=True),
    }


def robustness_to_dict(robustness: pb.Robustness) -> dict:
    """One Robustness event as the ``"robustness"`` entry of its window in explanations.json."""
    fields = MessageToDict(robustness, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    fields["attack"] = pb.Attack.Name(robustness.attack).removeprefix("ATTACK_").lower()
    return {name: round(value, 6) if isinstance(value, float) else value for name, value in fields.items()}


def model_to_dict(info: pb.ModelInfo) -> dict:
    return MessageToDict(info, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
