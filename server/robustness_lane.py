"""The robustness lane: attack-and-compare work, and explanations by gradient methods, that never
hold up a stream's forward-only heatmaps.

- One worker thread that runs a job pass by pass (one forward, or one forward + backward), each
  pass on the explanation lane's own model thread and model (so the two lanes never compete for
  cores, never leave a second team of spinning math threads behind, and never run the model's
  per-forward attention taps at the same time), and submits a pass only when no
  explanation is queued or running *and* the next window of every paced live stream is further
  away than a pass takes (``WindowCadence``).
- A server-wide budget (``max_robustness_jobs`` queued or running): beyond it a window is not
  scored and its Robustness event says "skipped" and why, so nothing disappears silently.
- Each result names the window it belongs to; it may arrive after later windows' explanations.
- A request may ask for a gradient method's maps (``GRADIENT_METHODS``) instead of STAA's: each of
  its windows is one job here (its passes under the same rule), counted in the same budget; past
  it the request fails with ``Overloaded`` (RESOURCE_EXHAUSTED), as a heatmap cannot be skipped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from staa_serve.models.pipeline import ExplanationPipeline, WindowExplanation
from staa_serve.models.robustness import AttackSpec, RobustnessResult, RobustnessScorer
from staa_serve.models.staa import StaaParams
from staa_serve.models.windowing import PreparedWindow
from staa_serve.server.admission import Admission
from staa_serve.server.errors import Overloaded

logger = logging.getLogger(__name__)

# Served gradient methods (models.xai): one forward + backward each; IG's 8 steps go as one pass.
GRADIENT_METHODS = ("saliency", "input_x_gradient", "integrated_gradients_8")


@dataclass(frozen=True)
class RobustnessPlan:
    """What one request asked for: the attack, and every n-th window (indices 0, n, 2n, ...)."""

    spec: AttackSpec
    every: int

    def wants(self, window_index: int) -> bool:
        return window_index % self.every == 0


@dataclass(frozen=True)
class SkippedRobustness:
    """A window the lane had no budget for."""

    window_index: int
    spec: AttackSpec
    reason: str


class WindowCadence:
    """When each paced live stream's next window is due, from the spacing of its windows (thread-safe)."""

    def __init__(self):
        self._streams: dict[object, tuple[float, float | None]] = {}  # key -> (last window time, interval)
        self._lock = threading.Lock()

    def note(self, key, now: float | None = None) -> None:
        """A window of stream ``key`` is ready now."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            last, interval = self._streams.get(key, (None, None))
            if last is not None:
                gap = now - last
                interval = gap if interval is None else 0.7 * interval + 0.3 * gap
            self._streams[key] = (now, interval)

    def forget(self, key) -> None:
        with self._lock:
            self._streams.pop(key, None)

    def slack(self, now: float | None = None) -> float:
        """Seconds until the earliest expected window (inf when none is expected). A stream more
        than one interval overdue is not pacing any more (stalled, or sending unpaced) and is ignored."""
        now = time.perf_counter() if now is None else now
        with self._lock:
            streams = list(self._streams.values())
        slack = math.inf
        for last, interval in streams:
            if interval is None or now - (last + interval) > interval:
                continue
            slack = min(slack, max(0.0, last + interval - now))
        return slack


def job_slots(max_jobs: int) -> Admission:
    """The server-wide budget of robustness and gradient jobs queued or running (``max_robustness_jobs``),
    shared by every served model's lane."""
    return Admission(max_jobs, "max_robustness_jobs", "windows queued or running server-wide")


class RobustnessLane:
    def __init__(self, pipeline: ExplanationPipeline, slots: Admission, explanation_idle: threading.Event,
                 cadence: WindowCadence, model_executor: ThreadPoolExecutor):
        self.pipeline = pipeline  # the explanation lane's: the same model input and post-processing
        self.scorer = RobustnessScorer(pipeline.loaded)
        self.slots = slots
        self.explanation_idle = explanation_idle
        self.cadence = cadence
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="staa-robustness")
        self.model_executor = model_executor  # the explanation lane's thread: every pass runs there
        self._closing = False
        self._pass_seconds = 0.05  # running estimate of one pass: rises at once, decays slowly
        self._pass_started: float | None = None
        self._methods: dict[str, object] = {}  # gradient methods, built on first use (Captum loads then)

    def _run_pass(self, work):
        """One model pass, once the lane may go (``_before_pass``), on the model thread."""
        self._before_pass()
        return self.model_executor.submit(work).result()

    def _before_pass(self) -> None:
        """Hold the next pass until explanations are idle and the next live window is far enough away."""
        now = time.perf_counter()
        if self._pass_started is not None:
            took = now - self._pass_started
            self._pass_seconds = max(took, 0.9 * self._pass_seconds + 0.1 * took)
        while not self._closing:
            self.explanation_idle.wait()
            slack = self.cadence.slack()
            if slack > 1.5 * self._pass_seconds:
                break
            time.sleep(min(max(slack, 0.002), 0.02))  # the window comes, is explained, then we go on
        self._pass_started = time.perf_counter()

    def _take_slot(self) -> str | None:
        """A place in the budget for one job; None when taken, else why there is none."""
        if self.slots.take():
            return None
        return f"{self.slots.active} {self.slots.what} ({self.slots.setting}={self.slots.limit})"

    def _job_done(self) -> None:
        self._pass_started = None  # idle time between jobs is not a pass
        self.slots.release()

    def submit(self, window: PreparedWindow, plan: RobustnessPlan,
               params: StaaParams) -> asyncio.Future:
        """Schedule one window; the future resolves to a RobustnessResult or a SkippedRobustness."""
        loop = asyncio.get_running_loop()
        full = self._take_slot()
        if full is not None:
            future = loop.create_future()
            future.set_result(SkippedRobustness(window.plan.index, plan.spec, f"robustness budget full: {full}"))
            return future
        return loop.run_in_executor(self.executor, self._run, window, plan, params)

    def _run(self, window: PreparedWindow, plan: RobustnessPlan,
             params: StaaParams) -> RobustnessResult | SkippedRobustness:
        try:
            pixel_values = self.pipeline.pixels([window])  # [1, T, 3, H, W] normalised, on the model's device
            return self.scorer.score(pixel_values, plan.spec, [window.plan.index], params, self._run_pass)[0]
        except Exception as error:  # one window's failure must not end the stream
            logger.exception("robustness scoring failed for window %d", window.plan.index)
            return SkippedRobustness(window.plan.index, plan.spec, f"robustness scoring failed: {error}")
        finally:
            self._job_done()

    async def explain(self, window: PreparedWindow, method: str, params: StaaParams, top_k: int) -> WindowExplanation:
        """``window`` explained by the gradient method ``method`` (its maps post-processed as STAA's are,
        with ``params``); raises Overloaded when the lane's budget is full."""
        full = self._take_slot()
        if full is not None:
            raise Overloaded(f"gradient explanations share the robustness budget, which is full: {full}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._explain, window, method, params, top_k)

    def _explain(self, window: PreparedWindow, method: str, params: StaaParams, top_k: int) -> WindowExplanation:
        from staa_serve.models.xai import build_method

        try:
            if method not in self._methods:
                self._methods[method] = build_method(self.pipeline.loaded, method)
            started = time.perf_counter()
            attribution = self._run_pass(lambda: self._methods[method].attribute(self.pipeline.pixels([window]),
                                                                                  target=params.target_class))
            attribution.attribution_ms = (time.perf_counter() - started) * 1e3
            return self.pipeline.finish([window], attribution, params, top_k, method=method)[0]
        finally:
            self._job_done()

    def shutdown(self) -> None:
        self._closing = True
        self.explanation_idle.set()  # release a job waiting for priority
        self.executor.shutdown(wait=False, cancel_futures=True)

