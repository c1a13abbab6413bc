"""Where the viewer's frames come from: a video file at its own fps, a camera, or the generator.

Each source yields RGB uint8 ``[H, W, 3]`` frames forever (a file loops; ``passes`` counts how
often it started over, so the viewer can open a fresh stream per pass of the file).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from staa_serve.models.synthetic.__main__ import clip_seed
from staa_serve.models.synthetic.generate import DEFAULT_FPS, render_clip, sample_clip_spec
from staa_serve.models.video import decode_clip

SYNTHETIC = "synthetic"
VIEWER_SEED = 9000  # synthetic clips of their own, never used in training


class FileSource:
    """A video file, decoded once and played at its own fps, looping."""

    def __init__(self, path: Path):
        decoded = decode_clip(path)
        self.frames, self.fps, self.name = decoded.frames, decoded.fps or 30.0, str(path)

    def passes(self) -> Iterator[Iterator[np.ndarray]]:
        while True:
            yield iter(self.frames)


class CameraSource:
    """A camera device (``/dev/videoN`` or its index)."""

    def __init__(self, device: str):
        self.capture = cv2.VideoCapture(int(device) if device.isdigit() else device)
        if not self.capture.isOpened():
            raise ValueError(f"no camera at {device!r} (and no such video file)")
        self.fps = self.capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.name = f"camera {device}"

    def _frames(self) -> Iterator[np.ndarray]:
        while True:
            ok, bgr = self.capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def passes(self) -> Iterator[Iterator[np.ndarray]]:
        yield self._frames()


class SyntheticSource:
    """SynthKinetics clips one after another (held-out seeds), at the generator's fps."""

    def __init__(self, clips_per_pass: int = 8):
        self.fps, self.name, self.clips_per_pass = DEFAULT_FPS, SYNTHETIC, clips_per_pass
        self._counter = itertools.count()

    def _frames(self) -> Iterator[np.ndarray]:
        for _ in range(self.clips_per_pass):
            yield from render_clip(sample_clip_spec(clip_seed(VIEWER_SEED, next(self._counter)))).frames

    def passes(self) -> Iterator[Iterator[np.ndarray]]:
        while True:
            yield self._frames()


def open_source(source: str):
    """``synthetic``, an existing video file, or a camera device (index or path)."""
    if source == SYNTHETIC:
        return SyntheticSource()
    if Path(source).is_file():
        return FileSource(Path(source))
    return CameraSource(source)
