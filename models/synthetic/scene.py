"""Scene nuisances, all independent of the action: textured background, moving distractors,
camera jitter, lighting drift and sensor noise. ``difficulty`` in [0, 1] scales every one of them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Distractor:
    shape: str  # "circle" | "rectangle" | "triangle"
    colour: tuple[int, int, int]
    size: float
    start: tuple[float, float]
    velocity: tuple[float, float]  # pixels per frame; bounces off the frame edges


FIXED_BACKGROUND = (90.0, 90.0, 90.0)  # the base colour at palette 0 (training curriculum only)


def make_background(rng: np.random.Generator, height: int, width: int, difficulty: float,
                    palette: float = 1.0) -> np.ndarray:
    """uint8 ``[H, W, 3]``: a base colour, low-frequency colour noise and optional stripes.

    ``palette`` in [0, 1] blends the base colour from a fixed grey (0) to a random one (1).
    """
    drawn = rng.integers(40, 216, size=3).astype(np.float32)
    base = (1 - palette) * np.asarray(FIXED_BACKGROUND, np.float32) + palette * drawn
    cells = rng.integers(3, 9)
    noise = rng.normal(0, 1, size=(cells, cells, 3)).astype(np.float32)
    texture = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    image = base + (10 + 45 * difficulty) * texture
    if rng.random() < 0.5 * difficulty + 0.1:
        angle, period = rng.uniform(0, math.pi), rng.uniform(6, 24)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        stripes = np.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 2 * math.pi / period)
        image += (25 * difficulty * stripes)[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_distractors(rng: np.random.Generator, height: int, width: int, difficulty: float) -> list[Distractor]:
    count = int(rng.integers(0, 1 + round(2 * difficulty)))
    return [Distractor(
        shape=str(rng.choice(["circle", "rectangle", "triangle"])),
        colour=tuple(int(value) for value in rng.integers(0, 256, size=3)),
        size=float(rng.uniform(5, 12)),
        start=(float(rng.uniform(0, width)), float(rng.uniform(0, height))),
        velocity=(float(rng.uniform(-1.5, 1.5)), float(rng.uniform(-1.5, 1.5))),
    ) for _ in range(count)]


def _bounce(value: float, limit: float) -> float:
    period = 2 * limit
    value = value % period
    return value if value <= limit else period - value


def draw_distractors(canvas: np.ndarray, distractors: list[Distractor], frame: int) -> None:
    height, width = canvas.shape[:2]
    for item in distractors:
        x = _bounce(item.start[0] + item.velocity[0] * frame, width - 1)
        y = _bounce(item.start[1] + item.velocity[1] * frame, height - 1)
        size = item.size
        if item.shape == "circle":
            cv2.circle(canvas, (int(x), int(y)), int(size), item.colour, -1, cv2.LINE_AA)
        elif item.shape == "rectangle":
            cv2.rectangle(canvas, (int(x - size), int(y - size * 0.6)), (int(x + size), int(y + size * 0.6)), item.colour, -1)
        else:
            points = np.array([[x, y - size], [x - size, y + size], [x + size, y + size]], np.int32)
            cv2.fillConvexPoly(canvas, points, item.colour, cv2.LINE_AA)


def jitter_offsets(rng: np.random.Generator, num_frames: int, difficulty: float) -> np.ndarray:
    """``[F, 2]`` small smooth camera shake in pixels."""
    steps = rng.normal(0, 0.8 * difficulty, size=(num_frames, 2))
    return np.clip(np.cumsum(steps, axis=0), -4 * difficulty, 4 * difficulty)


def shift(image: np.ndarray, offset: np.ndarray, nearest: bool = False) -> np.ndarray:
    if not offset.any():
        return image
    matrix = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]), flags=flags, borderMode=cv2.BORDER_REFLECT)


def lighting(rng: np.random.Generator, num_frames: int, difficulty: float) -> np.ndarray:
    """``[F]`` brightness gain drifting slowly over the clip."""
    amplitude, period, phase = 0.25 * difficulty * rng.random(), rng.uniform(16, 64), rng.uniform(0, 2 * math.pi)
    level = 1 + 0.15 * difficulty * rng.uniform(-1, 1)
    return level + amplitude * np.sin(2 * math.pi * np.arange(num_frames) / period + phase)
