"""Kinetics-style window sampling by frame index (never by timestamp).

A window is T frames taken every ``stride`` source frames, so it spans
``(T - 1) * stride + 1`` source frames; consecutive windows start ``hop`` frames apart.
A clip shorter than one span gets a single *padded* window: T indices spread evenly
over the frames it has, so some frames repeat (and the explanation says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry in source frames. ``hop`` defaults to the span (no overlap)."""

    num_frames: int
    stride: int = 1
    hop: int = 0

    def __post_init__(self):
        for field, value in (("num_frames", self.num_frames), ("stride", self.stride)):
            if value < 1:
                raise ValueError(f"WindowSpec.{field} must be >= 1, got {value}")
        if self.hop < 0:
            raise ValueError(f"WindowSpec.hop must be >= 0, got {self.hop}")
        if self.hop == 0:
            object.__setattr__(self, "hop", self.span)

    @property
    def span(self) -> int:
        return (self.num_frames - 1) * self.stride + 1


@dataclass(frozen=True)
class WindowPlan:
    """Which source frames one window reads. ``frames`` has exactly T entries."""

    index: int
    frames: tuple[int, ...]
    padded: bool = False
    aligned_to_end: bool = False  # the tail window: its last frame is the source's last


def tail_window(window_index: int, num_source_frames: int, spec: WindowSpec) -> WindowPlan | None:
    """The window ending on the source's last frame, when the full windows before ``window_index``
    left frames after their end uncovered (None when they cover every frame)."""
    if window_index == 0 or (window_index - 1) * spec.hop + spec.span >= num_source_frames:
        return None
    return WindowPlan(window_index, sample_window(num_source_frames - spec.span, spec), aligned_to_end=True)


def sample_window(start: int, spec: WindowSpec) -> tuple[int, ...]:
    return tuple(start + step * spec.stride for step in range(spec.num_frames))


def padded_window(num_source_frames: int, spec: WindowSpec) -> WindowPlan:
    """T indices spread evenly over a clip too short for one span (frames repeat)."""
    if num_source_frames < 1:
        raise ValueError("a window needs at least one source frame")
    positions = np.linspace(0, num_source_frames - 1, spec.num_frames)
    return WindowPlan(0, tuple(int(round(position)) for position in positions), padded=True)


def window_is_complete(window_index: int, frames_seen: int, spec: WindowSpec) -> bool:
    return window_index * spec.hop + spec.span <= frames_seen


def plan_windows(num_source_frames: int, spec: WindowSpec) -> list[WindowPlan]:
    """Every full window of a clip of ``num_source_frames`` frames and the tail window when the
    last full one ends before the clip does (every frame is then in some window's span), or one
    padded window."""
    if num_source_frames < spec.span:
        return [padded_window(num_source_frames, spec)]
    count = (num_source_frames - spec.span) // spec.hop + 1
    tail = tail_window(count, num_source_frames, spec)
    return [WindowPlan(index, sample_window(index * spec.hop, spec)) for index in range(count)] + ([tail] if tail else [])


def frames_for_length(num_source_frames: int, spec: WindowSpec) -> set[int]:
    """Every source frame some window of a clip of known length reads (its full, tail or padded windows)."""
    return {index for plan in plan_windows(num_source_frames, spec) for index in plan.frames}


def frame_is_needed(index: int, spec: WindowSpec) -> bool:
    """Whether any window (full or padded) can read source frame ``index``.

    Computable before the clip's length is known, so decoders can skip the rest.
    """
    if index < spec.span:  # a padded window may read any frame of a short clip
        return True
    last_window = index // spec.hop
    first_window = max(0, (index - spec.span) // spec.hop)
    for window in range(first_window, last_window + 1):
        offset = index - window * spec.hop
        if 0 <= offset < spec.span and offset % spec.stride == 0:
            return True
    return False
