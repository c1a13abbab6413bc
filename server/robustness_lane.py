"""The robustness lane: attack-and-compare work that never holds up a stream's heatmaps.

- Its own copy of the model: STAA's taps are per-forward state swapped into the model's modules,
  so two lanes must never share one model object.
- One worker thread, and a job starts only when the explanation lane is idle: on a machine
  whose cores the explanation lane already uses, running both at once would slow every heatmap.
- A server-wide budget (``max_robustness_jobs`` queued or running): beyond it a window is not
  scored and its Robustness event says "skipped" and why, so nothing disappears silently.
- Each result names the window it belongs to; it may arrive after later windows' explanations.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from models.registry import LoadedModel
from models.robustness import AttackSpec, RobustnessResult, RobustnessScorer
from models.staa import StaaParams
from models.windowing import PreparedWindow

logger = logging.getLogger(__name__)


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


class RobustnessLane:
    def __init__(self, loaded: LoadedModel, max_jobs: int, explanation_idle: threading.Event):
        self.loaded = dataclasses.replace(loaded, model=copy.deepcopy(loaded.model).eval())
        self.scorer = RobustnessScorer(self.loaded)
        self.max_jobs = max_jobs
        self.explanation_idle = explanation_idle
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="staa-robustness")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        with self._lock:
            return self._pending

    def submit(self, window: PreparedWindow, plan: RobustnessPlan,
               params: StaaParams) -> asyncio.Future:
        """Schedule one window; the future resolves to a RobustnessResult or a SkippedRobustness."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._pending >= self.max_jobs:
                future = loop.create_future()
                future.set_result(SkippedRobustness(window.plan.index, plan.spec, (
                    f"robustness budget full: {self._pending} windows queued or running server-wide "
                    f"(max_robustness_jobs={self.max_jobs})")))
                return future
            self._pending += 1
        return loop.run_in_executor(self.executor, self._run, window, plan, params)

    def _run(self, window: PreparedWindow, plan: RobustnessPlan,
             params: StaaParams) -> RobustnessResult | SkippedRobustness:
        try:
            self.explanation_idle.wait()  # lower priority: let queued explanations go first
            pixel_values = window.pixels.unsqueeze(0)  # [T, 3, H, W] -> [1, T, 3, H, W]
            return self.scorer.score(pixel_values, plan.spec, [window.plan.index], params)[0]
        except Exception as error:  # one window's failure must not end the stream
            logger.exception("robustness scoring failed for window %d", window.plan.index)
            return SkippedRobustness(window.plan.index, plan.spec, f"robustness scoring failed: {error}")
        finally:
            with self._lock:
                self._pending -= 1

    def shutdown(self) -> None:
        self.explanation_idle.set()  # release a job waiting for priority
        self.executor.shutdown(wait=False, cancel_futures=True)

