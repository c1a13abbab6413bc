"""Runs explanations off the event loop: one model thread (the taps are per-forward state) fed by
the cross-stream micro-batcher, two decoding pools (decord must never run on the event-loop
thread), and the lower-priority robustness lane (server/robustness_lane.py), whose passes use the
same thread.

Fairness (README "Limits and fairness"): live streams are latency-sensitive, clip calls are batch
work. Live frames decode on their own pool, which clip calls never use; a clip call's decoder holds
a thread of the clip pool only while it produces a window; in the batcher live windows go first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import AsyncIterator

import numpy as np

from staa_serve.models.pipeline import ExplanationPipeline, WindowExplanation
from staa_serve.models.registry import LoadedModel
from staa_serve.models.robustness import RobustnessResult
from staa_serve.models.sampling import WindowSpec
from staa_serve.models.staa import StaaParams
from staa_serve.models.video import DecodeLimits
from staa_serve.models.windowing import PreparedWindow, iter_array_windows, iter_clip_windows
from staa_serve.server.admission import Admission
from staa_serve.server.batcher import MicroBatcher
from staa_serve.server.bridge import iterate_in_thread
from staa_serve.server.config import ServerConfig
from staa_serve.server.metrics import ServerMetrics
from staa_serve.server.robustness_lane import GRADIENT_METHODS, RobustnessLane, WindowCadence, job_slots
from staa_serve.server.tracing import trace_robustness, trace_window
from staa_serve.server.session import ExplainOptions

logger = logging.getLogger(__name__)

LIVE, CLIP = 0, 1  # batcher priorities: lower goes first


def window_bytes(loaded: LoadedModel) -> int:
    """Bytes of decoded windows one call holds at most: the assembler's frames, the window being
    explained and the one decoded ahead, each uint8 ``[T, crop_h, crop_w, 3]`` (normalised floats
    exist only inside a batch, on the model's device)."""
    settings = loaded.processor
    return 3 * loaded.num_frames * settings.crop_height * settings.crop_width * 3


class PendingRobustness:
    """One request's robustness futures: drained after each explanation, awaited at its end."""

    def __init__(self):
        self.futures: list[asyncio.Future] = []

    def add(self, future: asyncio.Future | None) -> None:
        if future is not None:
            self.futures.append(future)

    def ready(self) -> list:
        done = [future for future in self.futures if future.done()]
        self.futures = [future for future in self.futures if not future.done()]
        return [future.result() for future in done]

    async def rest(self) -> list:
        results = await asyncio.gather(*self.futures)
        self.futures = []
        return results

    def cancel(self) -> None:
        """The client left: windows not yet started are dropped from the lane."""
        for future in self.futures:
            future.cancel()
        self.futures = []


class ExplainEngine:
    def __init__(self, loaded: LoadedModel, config: ServerConfig, metrics: ServerMetrics | None = None,
                 batcher=None, tracer=None, name: str | None = None, robustness_slots: Admission | None = None):
        """``name``: what requests choose this model by (server/model_set.py; default its model id).
        ``batcher``: where windows are explained (default: a MicroBatcher on this process's model
        thread; server/ray_backend.py gives one over Ray Serve replicas). ``robustness_slots``: the
        server-wide robustness budget, shared by the served models' lanes (default: this engine's own)."""
        self.loaded = loaded
        self.name = name or loaded.model_id
        self.config = config
        # This model's view of the server's metrics (every series labelled with its name).
        self.metrics = metrics.add_model(self.name, str(loaded.device)) if metrics is not None else None
        self.tracer = tracer  # server/tracing.py: None when tracing is off
        self.pipeline = ExplanationPipeline(loaded)
        self.model_executor = ThreadPoolExecutor(1, thread_name_prefix="staa-model")
        self.live_executor = ThreadPoolExecutor(config.decode_workers, thread_name_prefix="staa-live-decode")
        self.clip_executor = ThreadPoolExecutor(config.clip_decode_workers, thread_name_prefix="staa-clip-decode")
        self.window_bytes = window_bytes(loaded)
        self.limits = DecodeLimits(config.max_clip_frames, config.max_frame_width, config.max_frame_height)
        self.batcher = batcher or MicroBatcher(
            self._explain_batch, self.model_executor, config.max_batch, config.max_batch_wait_ms / 1e3,
            on_batch=(lambda size, waits: self.metrics.observe_batch(size)) if metrics else None)
        self.explanation_idle = self.batcher.idle  # set while no explanation is queued or running
        self.cadence = WindowCadence()  # live streams' window timing, so robustness work fits between windows
        slots = robustness_slots or job_slots(config.max_robustness_jobs)
        self.lane = RobustnessLane(self.pipeline, slots, self.explanation_idle, self.cadence,
                                   self.model_executor)

    def warm_up(self) -> None:
        """One forward on a blank window so the first request does not pay for lazy init."""
        height = width = self.loaded.image_size
        blank = np.zeros((self.loaded.num_frames, height, width, 3), np.uint8)
        spec = WindowSpec(self.loaded.num_frames, 1)
        windows = list(iter_array_windows(blank, spec, self.loaded.processor, 30.0))
        self.pipeline.explain(windows, StaaParams())

    def _explain_batch(self, windows: list[PreparedWindow], key: tuple[StaaParams, int]) -> list[WindowExplanation]:
        params, top_k = key
        return self.pipeline.explain(windows, params, top_k)  # one forward for the whole batch

    async def explain(self, window: PreparedWindow, options: ExplainOptions, priority: int = CLIP) -> WindowExplanation:
        queued = time.perf_counter()
        if options.method in GRADIENT_METHODS:  # backward passes: the lower-priority lane
            explanation = await self.lane.explain(window, options.method, options.params, options.top_k)
            queue_seconds = time.perf_counter() - queued - explanation.timings.attribution_ms / 1e3
        else:
            explanation, queue_seconds = await self.batcher.submit(window, (options.params, options.top_k), priority)
        timings = explanation.timings
        timings.queue_ms = queue_seconds * 1e3
        timings.total_ms = timings.decode_ms + (time.perf_counter() - queued) * 1e3
        if self.metrics is not None:
            self.metrics.observe_explanation(explanation.method, timings)
        trace_window(self.tracer, explanation, self.name)
        return explanation

    def score_robustness(self, window: PreparedWindow, options: ExplainOptions) -> asyncio.Future | None:
        """Queue ``window`` on the robustness lane if its request asked for it; None when not wanted."""
        plan = options.robustness
        if plan is None or not plan.wants(window.plan.index):
            return None
        future = self.lane.submit(window, plan, options.params)
        future.add_done_callback(self._observe_robustness)  # in this RPC's context: its span is the parent
        return future

    def _observe_robustness(self, future: asyncio.Future) -> None:
        if not future.cancelled() and future.exception() is None and isinstance(future.result(), RobustnessResult):
            result = future.result()
            if self.metrics is not None:
                self.metrics.observe_robustness(result.ms)
            trace_robustness(self.tracer, result.window_index, result.ms)

    async def explain_clip(self, clip: bytes, decoder: str, options: ExplainOptions) -> AsyncIterator[WindowExplanation]:
        windows = iterate_in_thread(
            lambda: iter_clip_windows(clip, options.window, self.loaded.processor, decoder, self.limits),
            self.clip_executor,
        )
        async for event in self._explain_all(windows, options):
            yield event

    async def explain_frames(self, frames, fps: float, options: ExplainOptions) -> AsyncIterator[WindowExplanation]:
        """``frames``: an iterable of RGB uint8 ``[H, W, 3]`` decoded lazily on the decode pool."""
        windows = iterate_in_thread(
            lambda: iter_array_windows(frames, options.window, self.loaded.processor, fps),
            self.clip_executor,
        )
        async for event in self._explain_all(windows, options):
            yield event

    async def _explain_all(self, windows, options: ExplainOptions):
        """Explanations in window order; robustness results as soon as they are ready, the rest at the end."""
        pending = PendingRobustness()
        try:
            async for window in windows:
                yield await self.explain(window, options)
                pending.add(self.score_robustness(window, options))
                for result in pending.ready():
                    yield result
            for result in await pending.rest():
                yield result
        finally:
            pending.cancel()

    def shutdown(self) -> None:
        self.batcher.close()
        self.lane.shutdown()
        self.live_executor.shutdown(wait=False, cancel_futures=True)
        self.clip_executor.shutdown(wait=False, cancel_futures=True)
        self.model_executor.shutdown(wait=False, cancel_futures=True)
