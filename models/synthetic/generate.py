"""One synthetic clip: draw every random choice into a ClipSpec, then render frames and masks.

``sample_clip_spec(seed, ...)`` is the only place randomness enters; ``render_clip`` is a pure
function of the spec, so the same seed gives the same bytes and any subset of frames can be
rendered alone (training renders only the frames a window samples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from staa_serve.models.synthetic.actions import ACTIONS
from staa_serve.models.synthetic.figure import LIMBS, PARTS, draw_parts, idle_pose, joint_segments
from staa_serve.models.synthetic.scene import (Distractor, draw_distractors, jitter_offsets, lighting, make_background,
                                               make_distractors, shift)

FIXED_FIGURE = (230, 230, 230)  # every part's colour at palette 0 (training curriculum only)

DEFAULT_FPS = 16.0
DEFAULT_FRAMES = 32
DEFAULT_SIZE = 128


@dataclass(frozen=True)
class ClipSpec:
    seed: int
    class_id: int
    side: int
    num_frames: int
    height: int
    width: int
    fps: float
    action_frames: tuple[int, int]  # first, last (inclusive)
    period: float  # source frames per motion cycle
    phase0: float
    figure_height: float
    hip: tuple[float, float]
    walk_speed: float  # px per frame, signed
    thickness: int
    colours: dict
    difficulty: float
    background: np.ndarray
    distractors: tuple[Distractor, ...]
    jitter: np.ndarray  # [F, 2]
    gain: np.ndarray  # [F]
    noise_sigma: float

    @property
    def label(self) -> str:
        return ACTIONS[self.class_id].name


@dataclass
class SyntheticClip:
    frames: np.ndarray  # uint8 [K, H, W, 3]
    masks: np.ndarray  # bool [K, H, W]: pixels of the acting body parts, empty outside the action
    indices: list[int]
    spec: ClipSpec

    def metadata(self) -> dict:
        spec = self.spec
        return {"label": spec.label, "class_id": spec.class_id, "fps": spec.fps, "num_frames": spec.num_frames,
                "action_frames": list(spec.action_frames), "width": spec.width, "height": spec.height,
                "seed": spec.seed, "difficulty": round(spec.difficulty, 4), "side": spec.side}


def _distinct_colour(rng: np.random.Generator, background_mean: np.ndarray, palette: float) -> tuple[int, int, int]:
    colour = 255 - background_mean
    for _ in range(50):
        drawn = rng.integers(0, 256, size=3)
        if np.abs(drawn - background_mean).sum() > 150:
            colour = drawn
            break
    blended = (1 - palette) * np.asarray(FIXED_FIGURE, np.float64) + palette * colour
    return tuple(int(value) for value in blended)


def sample_clip_spec(seed: int, difficulty: float | None = None, class_id: int | None = None,
                     num_frames: int = DEFAULT_FRAMES, size: int = DEFAULT_SIZE, fps: float = DEFAULT_FPS,
                     action_length: tuple[int, int] = (12, 20), placement: float = 1.0,
                     palette: float = 1.0) -> ClipSpec:
    """Draw every random choice of one clip from ``seed``. Appearance is drawn independently of the class.

    ``placement`` in [0, 1] scales how far the figure's size and position vary around the centre
    (0: centred, fixed size) and ``palette`` how far colours vary (0: a white figure on grey; 1:
    random background and limb colours). Both are below 1 only in the training curriculum: a
    Transformer trained from scratch on random colours sits at chance, and learns within a few
    hundred steps when colours are fixed first and then widened.
    """
    rng = np.random.default_rng(seed)
    class_id = int(rng.integers(len(ACTIONS))) if class_id is None else class_id
    difficulty = float(rng.random()) if difficulty is None else difficulty
    side = int(rng.choice([-1, 1]))
    length = int(rng.integers(action_length[0], min(action_length[1], num_frames) + 1))
    start = int(rng.integers(0, num_frames - length + 1))
    figure_height = float((0.68 + placement * rng.uniform(-0.1, 0.1)) * size)
    hip_x = float((0.5 + placement * rng.uniform(-0.2, 0.2)) * size)
    low, high = 0.72 * figure_height, size - 0.5 * figure_height
    hip_y = float((low + high) / 2 + placement * rng.uniform(-0.5, 0.5) * (high - low))
    room = min(hip_x - 0.2 * size, 0.8 * size - hip_x)
    walk_speed = side * min(float(rng.uniform(0.6, 1.4)), max(room, 0.0) / length)
    background = make_background(rng, size, size, difficulty, palette)
    background_mean = background.reshape(-1, 3).mean(axis=0)
    body = _distinct_colour(rng, background_mean, palette)
    colours = {part: body for part in PARTS}
    for limb in LIMBS:  # limbs may differ from the body, at random, never by class
        if rng.random() < 0.5:
            colours[limb] = _distinct_colour(rng, background_mean, palette)
    return ClipSpec(
        seed=seed, class_id=class_id, side=side, num_frames=num_frames, height=size, width=size, fps=fps,
        action_frames=(start, start + length - 1), period=float(rng.uniform(12, 18)),
        phase0=float(rng.uniform(0, 0.5)), figure_height=figure_height, hip=(hip_x, hip_y),
        walk_speed=walk_speed, thickness=int(rng.integers(max(2, size // 32), max(3, size // 14) + 1)),
        colours=colours, difficulty=difficulty, background=background,
        distractors=tuple(make_distractors(rng, size, size, difficulty)),
        jitter=jitter_offsets(rng, num_frames, difficulty), gain=lighting(rng, num_frames, difficulty),
        noise_sigma=4.0 * difficulty,
    )


def _pose_at(spec: ClipSpec, frame: int):
    first, last = spec.action_frames
    if frame < first or frame > last:
        return idle_pose(0.03 * math.sin(2 * math.pi * frame / 24.0))  # idle, breathing slightly
    phase = spec.phase0 + 2 * math.pi * (frame - first) / spec.period
    return ACTIONS[spec.class_id].pose(phase, spec.side)


def _hip_at(spec: ClipSpec, frame: int) -> tuple[float, float]:
    if not ACTIONS[spec.class_id].translates:
        return spec.hip
    first, last = spec.action_frames
    travelled = spec.walk_speed * (min(max(frame, first), last) - first)
    return spec.hip[0] + travelled, spec.hip[1]


def render_frame(spec: ClipSpec, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``frame`` of the clip: RGB uint8 ``[H, W, 3]`` and its acting-parts mask bool ``[H, W]``."""
    canvas = spec.background.copy()
    draw_distractors(canvas, list(spec.distractors), frame)
    pose = _pose_at(spec, frame)
    segments = joint_segments(pose, _hip_at(spec, frame), spec.figure_height)
    draw_parts(canvas, segments, PARTS, spec.colours, spec.thickness, spec.figure_height)
    mask = np.zeros(canvas.shape[:2], np.uint8)
    first, last = spec.action_frames
    if first <= frame <= last:
        acting = ACTIONS[spec.class_id].acting_parts(spec.side)
        draw_parts(mask, segments, acting, {part: 255 for part in acting}, spec.thickness, spec.figure_height)
    offset = spec.jitter[frame]
    canvas, mask = shift(canvas, offset), shift(mask, offset, nearest=True)
    rng = np.random.default_rng((spec.seed, frame))  # per-frame noise, reproducible in any order
    pixels = canvas.astype(np.float32) * spec.gain[frame] + rng.normal(0, spec.noise_sigma, canvas.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8), mask > 127


def render_clip(spec: ClipSpec, indices: list[int] | None = None) -> SyntheticClip:
    """Render the frames ``indices`` (all by default) of a clip."""
    indices = list(range(spec.num_frames)) if indices is None else list(indices)
    rendered = [render_frame(spec, index) for index in indices]
    return SyntheticClip(np.stack([frame for frame, _ in rendered]), np.stack([mask for _, mask in rendered]), indices, spec)
