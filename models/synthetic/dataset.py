"""Pre-generated training windows: only the T frames a window samples are rendered, then resized
and cropped exactly as the server does (``resize_and_crop``), and kept as uint8 in memory."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from staa_serve.models.preprocess import ProcessorSettings, normalise_tensor, resize_and_crop
from staa_serve.models.synthetic.generate import render_clip, sample_clip_spec


@dataclass
class WindowSet:
    pixels: torch.Tensor  # uint8 [K, T, h, w, 3], on the device that trains on it
    labels: torch.Tensor  # int64 [K]
    in_action: np.ndarray  # bool [K, T]: sampled frame inside the action interval

    def __post_init__(self):
        self.pixels, self.labels = torch.as_tensor(self.pixels), torch.as_tensor(self.labels)

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> WindowSet:
        """Keep the uint8 windows on ``device``, so a GPU step never waits for host-side normalising."""
        return WindowSet(self.pixels.to(device), self.labels.to(device), self.in_action)

    def head(self, count: int) -> WindowSet:
        return WindowSet(self.pixels[:count], self.labels[:count], self.in_action[:count])

    def batch(self, indices, settings: ProcessorSettings, flip: np.ndarray | None = None,
              augment=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``[B, T, 3, h, w]`` float32 and labels ``[B]``, on the windows' device.

        ``augment``, when given, maps the ``[B, T, h, w, 3]`` pixels (0-255) to new ones before normalising."""
        indices = torch.as_tensor(indices, device=self.pixels.device)
        pixels = self.pixels[indices]  # [B, T, h, w, 3]
        if flip is not None:  # mirror whole windows: left/right is a nuisance, never the class
            mirror = torch.as_tensor(flip, device=pixels.device)[:, None, None, None, None]
            pixels = torch.where(mirror, pixels.flip(3), pixels)
        if augment is not None:
            pixels = augment(pixels)
        return normalise_tensor(pixels, settings), self.labels[indices]

    def save(self, path) -> None:
        np.savez(path, pixels=self.pixels.cpu().numpy(), labels=self.labels.cpu().numpy(), in_action=self.in_action)

    @classmethod
    def load(cls, path) -> WindowSet:
        with np.load(path) as stored:
            return cls(stored["pixels"], stored["labels"], stored["in_action"])


def _render_window(job) -> tuple[np.ndarray, int, np.ndarray]:
    seed, difficulty, num_frames, stride, settings, action_length, placement, palette = job
    options = {"action_length": action_length} if action_length else {}
    spec = sample_clip_spec(seed, difficulty=difficulty, placement=placement, palette=palette, **options)
    offset = np.random.default_rng(seed + 1).integers(0, spec.num_frames - (num_frames - 1) * stride)
    indices = [int(offset) + step * stride for step in range(num_frames)]
    clip = render_clip(spec, indices)
    first, last = spec.action_frames
    pixels = np.stack([resize_and_crop(frame, settings) for frame in clip.frames])  # [T, h, w, 3]
    return pixels, spec.class_id, np.array([first <= index <= last for index in indices])


def build_windows(seeds, difficulty: tuple[float, float], num_frames: int, stride: int,
                  settings: ProcessorSettings, workers: int = 2, progress=None,
                  action_length: tuple[int, int] | None = None, placement: float = 1.0,
                  palette: tuple[float, float] = (1.0, 1.0)) -> WindowSet:
    """Render one window per seed; difficulty and palette drawn uniformly in their ranges per clip (from the seed).

    ``action_length`` (source frames, inclusive range) overrides the generator's and ``placement``
    narrows where the figure stands and ``palette`` how far colours vary: the curriculum's first
    stage centres a white figure on grey and lets the action fill the whole clip, so every sampled
    frame carries motion at a known place.
    """
    jobs = [(seed, float(np.random.default_rng(seed + 2).uniform(*difficulty)), num_frames, stride, settings,
             action_length, placement, float(np.random.default_rng(seed + 3).uniform(*palette))) for seed in seeds]
    # Filled in place: a list of windows then np.stack would need twice the set's memory at the end.
    pixels = labels = inside = None
    # Workers are spawned, never forked: the caller may already run threads (a gRPC server, PyAV's
    # decoders, a Ray driver), and a forked child inherits their locks held, then hangs on them.
    # One worker renders here, in this process.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    with pool or nullcontext():
        rendered = pool.map(_render_window, jobs, chunksize=64) if pool else map(_render_window, jobs)
        for index, (window, label, in_action) in enumerate(rendered):
            if pixels is None:
                pixels = np.empty((len(jobs), *window.shape), dtype=window.dtype)
                labels, inside = np.empty(len(jobs), dtype=np.int64), np.empty((len(jobs), num_frames), dtype=bool)
            pixels[index], labels[index], inside[index] = window, label, in_action
            if progress is not None:
                progress.update(1)
    return WindowSet(pixels, labels, inside)
