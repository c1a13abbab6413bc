"""The actions: each a pose as a function of phase, and the body parts that perform it.

Phase runs 0 -> 2*pi per motion period. ``side`` (+1 / -1) mirrors one-sided actions (wave,
punch, kick) and sets the walking direction, drawn at random and independent of the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from staa_serve.models.synthetic.figure import Pose


def _rise(phase: float) -> float:
    """0 -> 1 -> 0 over one period, smooth."""
    return 0.5 - 0.5 * math.cos(phase)


def _mirror(angles: dict, side: int) -> dict:
    if side > 0:
        return angles
    swap = {"left_arm": "right_arm", "right_arm": "left_arm", "left_leg": "right_leg", "right_leg": "left_leg"}
    return {swap[limb]: (-upper, -lower) for limb, (upper, lower) in angles.items()}


def wave(phase, side):
    return Pose(_mirror({"right_arm": (2.5, 0.7 * math.sin(phase)), "left_arm": (-0.18, 0.05),
                         "left_leg": (-0.09, 0.0), "right_leg": (0.09, 0.0)}, side))


def clap(phase, side):
    bend = 0.4 + 1.3 * _rise(phase)  # elbows fold the hands together at the midline
    return Pose({"right_arm": (1.45, bend), "left_arm": (-1.45, -bend),
                 "left_leg": (-0.09, 0.0), "right_leg": (0.09, 0.0)})


def jumping_jack(phase, side):
    spread = _rise(phase)
    arms, legs = 0.2 + 2.6 * spread, 0.08 + 0.38 * spread
    return Pose({"right_arm": (arms, 0.0), "left_arm": (-arms, 0.0), "right_leg": (legs, 0.0), "left_leg": (-legs, 0.0)},
                (0.0, -0.06 * math.sin(phase) ** 2))


def squat(phase, side):
    depth = _rise(phase)
    return Pose({"right_arm": (0.18 + 1.2 * depth, 0.0), "left_arm": (-0.18 - 1.2 * depth, 0.0),
                 "right_leg": (0.09 + 0.75 * depth, -1.5 * depth), "left_leg": (-0.09 - 0.75 * depth, 1.5 * depth)},
                (0.0, 0.16 * depth))


def punch(phase, side):
    reach = _rise(phase) ** 2  # quick extension, slower recoil
    return Pose(_mirror({"right_arm": (1.55, -2.3 * (1 - reach)), "left_arm": (-0.9, 2.0),
                         "left_leg": (-0.12, 0.0), "right_leg": (0.12, 0.0)}, side))


def kick(phase, side):
    lift = _rise(phase)
    return Pose(_mirror({"right_leg": (0.1 + 1.25 * lift, -0.9 * (1 - lift) * lift * 4), "left_leg": (-0.1, 0.0),
                         "right_arm": (0.5, 0.0), "left_arm": (-0.5, 0.0)}, side))


def arm_circles(phase, side):
    turn = side * phase  # full turns of both straight arms, mirrored
    return Pose({"right_arm": (turn, 0.0), "left_arm": (-turn, 0.0), "left_leg": (-0.09, 0.0), "right_leg": (0.09, 0.0)})


def walk(phase, side):
    swing = 0.38 * math.sin(phase)
    return Pose({"left_leg": (swing, -0.5 * max(0.0, -math.sin(phase))), "right_leg": (-swing, -0.5 * max(0.0, math.sin(phase))),
                 "left_arm": (-0.15 - 0.3 * swing, 0.0), "right_arm": (0.15 - 0.3 * swing, 0.0)})


@dataclass(frozen=True)
class Action:
    name: str
    pose: Callable[[float, int], Pose]
    acting_parts: Callable[[int], tuple[str, ...]]  # side -> body parts that perform it
    translates: bool = False  # walking moves the whole figure along x


def _one(part: str) -> Callable[[int], tuple[str, ...]]:
    other = part.replace("right", "left")
    return lambda side: (part,) if side > 0 else (other,)


ARMS = lambda side: ("left_arm", "right_arm")  # noqa: E731
LEGS = lambda side: ("left_leg", "right_leg")  # noqa: E731

ACTIONS: tuple[Action, ...] = (
    Action("waving", wave, _one("right_arm")),
    Action("clapping", clap, ARMS),
    Action("jumping_jacks", jumping_jack, lambda side: ("left_arm", "right_arm", "left_leg", "right_leg")),
    Action("squatting", squat, LEGS),
    Action("punching", punch, _one("right_arm")),
    Action("kicking", kick, _one("right_leg")),
    Action("arm_circles", arm_circles, ARMS),
    Action("walking", walk, LEGS, translates=True),
)
