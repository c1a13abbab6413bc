"""Runs explanations off the event loop: one model thread (the hooks are per-forward state),
a small pool for decoding (decord must never run on the event-loop thread)."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

import numpy as np

from models.pipeline import ExplanationPipeline, WindowExplanation
from models.registry import LoadedModel
from models.sampling import WindowSpec
from models.staa import StaaParams
from models.video import DecodeLimits
from models.windowing import PreparedWindow, iter_array_windows, iter_clip_windows
from server.bridge import iterate_in_thread
from server.config import ServerConfig
from server.session import ExplainOptions

logger = logging.getLogger(__name__)


class ExplainEngine:
    def __init__(self, loaded: LoadedModel, config: ServerConfig):
        self.loaded = loaded
        self.config = config
        self.pipeline = ExplanationPipeline(loaded)
        self.model_executor = ThreadPoolExecutor(1, thread_name_prefix="staa-model")
        self.decode_executor = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="staa-decode")
        self.limits = DecodeLimits(config.max_clip_frames, config.max_frame_width, config.max_frame_height)

    def warm_up(self) -> None:
        """One forward on a blank window so the first request does not pay for lazy init."""
        height = width = self.loaded.image_size
        blank = np.zeros((self.loaded.num_frames, height, width, 3), np.uint8)
        spec = WindowSpec(self.loaded.num_frames, 1)
        windows = list(iter_array_windows(blank, spec, self.loaded.processor, 30.0))
        self.pipeline.explain(windows, StaaParams())

    async def explain(self, window: PreparedWindow, options: ExplainOptions) -> WindowExplanation:
        queued = time.perf_counter()

        def run() -> WindowExplanation:
            started = time.perf_counter()
            explanation = self.pipeline.explain([window], options.params, options.top_k)[0]
            explanation.timings_ms["queue_ms"] = (started - queued) * 1e3
            return explanation

        explanation = await asyncio.get_running_loop().run_in_executor(self.model_executor, run)
        timings = explanation.timings_ms
        timings["total_ms"] = timings["decode_ms"] + (time.perf_counter() - queued) * 1e3
        return explanation

    async def explain_clip(self, clip: bytes, decoder: str, options: ExplainOptions) -> AsyncIterator[WindowExplanation]:
        windows = iterate_in_thread(
            lambda: iter_clip_windows(clip, options.window, self.loaded.processor, decoder, self.limits),
            self.decode_executor,
        )
        async for window in windows:
            yield await self.explain(window, options)

    async def explain_frames(self, frames, fps: float, options: ExplainOptions) -> AsyncIterator[WindowExplanation]:
        """``frames``: an iterable of RGB uint8 ``[H, W, 3]`` decoded lazily on the decode pool."""
        windows = iterate_in_thread(
            lambda: iter_array_windows(frames, options.window, self.loaded.processor, fps),
            self.decode_executor,
        )
        async for window in windows:
            yield await self.explain(window, options)

    def shutdown(self) -> None:
        self.decode_executor.shutdown(wait=False, cancel_futures=True)
        self.model_executor.shutdown(wait=False, cancel_futures=True)
