"""Turn a stream of (index, frame) into prepared model windows; the same code serves clips and live streams.

Only frames some window can read are resized, cropped and kept (``frame_is_needed``), and a
frame is dropped as soon as no later window can read it, so memory stays at about one
window whatever the clip length. Windows carry uint8 crops: normalising to the model's float
input happens where the model runs (``models.preprocess.model_input``), so a window is a quarter
of the float bytes in memory, over Ray and over PCIe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from staa_serve.models.errors import InvalidInput, VideoDecodeError
from staa_serve.models.preprocess import CropBox, ProcessorSettings, crop_box, resize_and_crop
from staa_serve.models.sampling import (WindowPlan, WindowSpec, frame_is_needed, frames_for_length, padded_window, sample_window,
                                        tail_window, window_is_complete)
from staa_serve.models.video import ClipEnd, DecodeLimits, StreamInfo, VideoSource, iter_frames


@dataclass
class PreparedWindow:
    """One window ready for the model.

    Attributes:
        plan: window index, the T source frame indices, padded flag.
        frames: uint8 ``[T, crop_h, crop_w, 3]`` RGB, resized and cropped (not normalised).
        crop: source pixels the model input covers.
        source_size: ``(width, height)`` of the source frames.
        fps: average source frame rate (pts = index / fps).
        decode_ms: time spent decoding, resizing and cropping the frames this window added.
    """

    plan: WindowPlan
    frames: torch.Tensor
    crop: CropBox
    source_size: tuple[int, int]
    fps: float
    decode_ms: float


class WindowAssembler:
    """Accepts frames in increasing index order; emits each window once all its frames arrived.

    Indices may skip (a live stream under backpressure drops frames): a window that needs a
    missing frame is not emitted and is counted in ``windows_skipped``. At the end, a tail window
    aligned to the last frame covers the frames after the last full window.

    ``needed``: the frames worth resizing (None: every frame, as the source's length is unknown and
    the tail window may read any of the last span's).
    """

    def __init__(self, spec: WindowSpec, settings: ProcessorSettings, fps: float, needed=None):
        self.spec, self.settings, self.fps = spec, settings, fps
        self.needed = needed
        self.frames: dict[int, np.ndarray] = {}  # index -> uint8 [crop_h, crop_w, 3]
        self.frames_seen = 0
        self.next_window = 0
        self.source_size: tuple[int, int] | None = None
        self.crop: CropBox | None = None
        self.pending_ms = 0.0
        self.windows_skipped = 0

    def push(self, index: int, frame: np.ndarray, decode_ms: float = 0.0) -> list[PreparedWindow]:
        """Add source frame ``index`` (RGB uint8 ``[H, W, 3]``); return the windows it completes."""
        started = time.perf_counter()
        height, width = frame.shape[:2]
        if self.source_size is None:
            self.source_size = (width, height)
            self.crop = crop_box(height, width, self.settings)
        elif self.source_size != (width, height):
            raise InvalidInput(
                f"frame {index} is {width}x{height} but the stream started at {self.source_size[0]}x{self.source_size[1]}"
            )
        # Frames off the window grid are resized too unless the source's length is known: a clip that
        # ends before one span gets a padded window that may read any of them, and the tail window
        # any of the last span's. Keeping those raw instead would cost far more memory (up to ~1 GB
        # at the frame-size limit) than the one-time resizes.
        if self.needed is None or self.needed(index):
            self.frames[index] = np.ascontiguousarray(resize_and_crop(frame, self.settings))
        self.frames_seen = max(self.frames_seen, index + 1)
        self.pending_ms += decode_ms + (time.perf_counter() - started) * 1e3
        ready = []
        while window_is_complete(self.next_window, self.frames_seen, self.spec):
            plan = WindowPlan(self.next_window, sample_window(self.next_window * self.spec.hop, self.spec))
            if self._has_frames(plan):
                ready.append(self._emit(plan))
            else:
                self.windows_skipped += 1
            self.next_window += 1
        # Frames the next windows read, and the last span's (the tail window may read them).
        self._forget_before(min(self.next_window * self.spec.hop, self.frames_seen - self.spec.span))
        return ready

    def finish(self) -> list[PreparedWindow]:
        """End of input: a source shorter than one window gets one padded window; a longer one whose
        last full window ends before its last frame gets the tail window (``aligned_to_end``)."""
        if self.frames_seen == 0:
            return []
        plan = padded_window(self.frames_seen, self.spec) if self.next_window == 0 else \
            tail_window(self.next_window, self.frames_seen, self.spec)
        if plan is None:
            return []
        self.next_window += 1
        if not self._has_frames(plan):
            self.windows_skipped += 1
            return []
        return [self._emit(plan)]

    def _has_frames(self, plan: WindowPlan) -> bool:
        return all(index in self.frames for index in plan.frames)

    def _emit(self, plan: WindowPlan) -> PreparedWindow:
        frames = torch.from_numpy(np.stack([self.frames[index] for index in plan.frames]))  # [T, h, w, 3]
        window = PreparedWindow(plan, frames, self.crop, self.source_size, self.fps, self.pending_ms)
        self.pending_ms = 0.0
        return window

    def _forget_before(self, first_kept: int) -> None:
        if self.next_window == 0:  # no full window yet: a padded window may read any frame
            return
        for index in [index for index in self.frames if index < first_kept]:
            del self.frames[index]


def iter_clip_windows(
    source: VideoSource,
    spec: WindowSpec,
    settings: ProcessorSettings,
    backend: str = "auto",
    limits: DecodeLimits = DecodeLimits(),
) -> Iterator[PreparedWindow]:
    """Decode a clip and yield its windows as they complete (runs on a worker thread).

    A clip whose container declared more frames than decode ends, after the windows its frames
    allow, with VideoDecodeError naming the last frame decoded: a cut-short clip never passes
    for a whole one."""
    assembler, wanted = None, None
    started = time.perf_counter()

    def needed(index: int) -> bool:  # frames on the grid, and the tail window's once the length is known
        return wanted is None or frame_is_needed(index, spec) or index in wanted

    for item in iter_frames(source, backend, needed, limits):
        if isinstance(item, StreamInfo):
            wanted = frames_for_length(item.declared_frames, spec) if item.declared_frames > 0 else None
            assembler = WindowAssembler(spec, settings, item.fps, needed)
        elif isinstance(item, ClipEnd):
            yield from assembler.finish()
            if item.truncated:
                raise VideoDecodeError(
                    f"clip is cut short: its container declares {item.declared_frames} frames but decoding ended "
                    f"after frame {item.num_frames - 1}; the windows up to that frame were explained")
        else:
            decode_ms = (time.perf_counter() - started) * 1e3
            yield from assembler.push(item[0], item[1], decode_ms)
        started = time.perf_counter()


def iter_array_windows(frames, spec: WindowSpec, settings: ProcessorSettings, fps: float) -> Iterator[PreparedWindow]:
    """Windows over frames already in memory (an iterable of RGB uint8 ``[H, W, 3]``)."""
    assembler = WindowAssembler(spec, settings, fps)
    started = time.perf_counter()
    for index, frame in enumerate(frames):
        yield from assembler.push(index, frame, (time.perf_counter() - started) * 1e3)
        started = time.perf_counter()
    yield from assembler.finish()
