"""An articulated figure: a pose (joint angles + body offset), its forward kinematics, and drawing.

Angles are in radians from "pointing straight down", positive towards +x (image right), for the
upper limb segment; the lower segment's angle is relative to the upper one. Lengths are in units
of the figure's height. Body parts are named so that actions can say which parts perform them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# Segment lengths as fractions of the figure height (hip to head top is ~0.53).
TORSO, NECK_TO_HEAD, HEAD_RADIUS = 0.30, 0.09, 0.075
UPPER_ARM, FOREARM, THIGH, SHIN = 0.16, 0.15, 0.22, 0.22
LIMBS = ("left_arm", "right_arm", "left_leg", "right_leg")
PARTS = ("head", "torso", *LIMBS)


@dataclass
class Pose:
    """Joint angles per limb: (upper segment, lower segment relative), body offset in figure units."""

    angles: dict[str, tuple[float, float]] = field(default_factory=dict)
    offset: tuple[float, float] = (0.0, 0.0)


def idle_pose(sway: float = 0.0) -> Pose:
    """Standing still: arms a little out, legs a little apart; ``sway`` is a tiny breathing motion."""
    return Pose({
        "left_arm": (-0.18 - sway, 0.05), "right_arm": (0.18 + sway, -0.05),
        "left_leg": (-0.09, 0.0), "right_leg": (0.09, 0.0),
    }, (0.0, 0.0))


def _segment_end(start: np.ndarray, angle: float, length: float) -> np.ndarray:
    return start + length * np.array([math.sin(angle), math.cos(angle)])


def joint_segments(pose: Pose, hip: tuple[float, float], height: float) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Pixel line segments per body part (the head is a degenerate segment: its centre twice)."""
    origin = np.array(hip, dtype=np.float64) + height * np.array(pose.offset)
    neck = origin + height * np.array([0.0, -TORSO])
    head = neck + height * np.array([0.0, -NECK_TO_HEAD])
    segments = {"torso": [(origin, neck)], "head": [(head, head)]}
    for limb, (upper, lower) in pose.angles.items():
        root = neck if limb.endswith("arm") else origin
        first, second = (UPPER_ARM, FOREARM) if limb.endswith("arm") else (THIGH, SHIN)
        middle = _segment_end(root, upper, height * first)
        end = _segment_end(middle, upper + lower, height * second)
        segments[limb] = [(root, middle), (middle, end)]
    return segments


def draw_parts(canvas: np.ndarray, segments: dict, parts, colours: dict, thickness: int, height: float) -> None:
    """Draw ``parts`` of a figure on ``canvas`` (uint8 [H, W, C]); colours maps part -> colour."""
    scale = 16  # fixed-point sub-pixel precision for anti-aliased lines
    for part in parts:
        colour = colours[part]
        for start, end in segments[part]:
            if part == "head":
                centre = tuple(int(round(value * scale)) for value in start)
                cv2.circle(canvas, centre, int(round(HEAD_RADIUS * height * scale)), colour, -1, cv2.LINE_AA, 4)
            else:
                cv2.line(canvas, tuple(int(round(v * scale)) for v in start), tuple(int(round(v * scale)) for v in end),
                         colour, thickness, cv2.LINE_AA, 4)
