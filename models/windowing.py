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

from models.errors import InvalidInput
from models.preprocess import CropBox, ProcessorSettings, crop_box, resize_and_crop
from models.sampling import WindowPlan, WindowSpec, frame_is_needed, padded_window, sample_window, window_is_complete
from models.video import ClipEnd, DecodeLimits, StreamInfo, VideoSource, iter_frames


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
    missing frame is not emitted and is counted in ``windows_skipped``.
    """

    def __init__(self, spec: WindowSpec, settings: ProcessorSettings, fps: float):
        self.spec, self.settings, self.fps = spec, settings, fps
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
        # Every frame of the first span is resized, even off the window grid: a clip that ends
        # before one span gets a padded window that may read any of them. Keeping those raw instead
        # would cost far more memory (up to ~1 GB at the frame-size limit) than the one-time resizes.
        if frame_is_needed(index, self.spec):
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
            self._forget_before(self.next_window * self.spec.hop)
        return ready

    def finish(self) -> list[PreparedWindow]:
        """End of input: a source shorter than one window gets one padded window."""
        if self.next_window > 0 or self.frames_seen == 0:
            return []
        self.next_window = 1
        plan = padded_window(self.frames_seen, self.spec)
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
        # Called only after a full window: the clip is long enough, no padded window will come.
        for index in [index for index in self.frames if index < first_kept]:
            del self.frames[index]


def iter_clip_windows(
    source: VideoSource,
    spec: WindowSpec,
    settings: ProcessorSettings,
    backend: str = "auto",
    limits: DecodeLimits = DecodeLimits(),
) -> Iterator[PreparedWindow]:
    """Decode a clip and yield its windows as they complete (runs on a worker thread)."""
    assembler = None
    started = time.perf_counter()
    for item in iter_frames(source, backend, lambda index: frame_is_needed(index, spec), limits):
        if isinstance(item, StreamInfo):
            assembler = WindowAssembler(spec, settings, item.fps)
        elif isinstance(item, ClipEnd):
            yield from assembler.finish()
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
