"""Prometheus metrics on their own port, on a registry private to one server.

A private registry (not prometheus_client's global one) lets several servers live in one process
(tests, the Ray replica) without clashing names, and keeps the page to what this server measures.
"""

from __future__ import annotations

import time
from typing import Callable

import grpc
from prometheus_client import (GCCollector, CollectorRegistry, Counter, Gauge, Histogram, Info, PlatformCollector,
                               ProcessCollector, start_http_server)

from staa_serve.models.pipeline import WindowTimings
from staa_serve.server.wire import CallObserver
from staa import package_version

# Seconds, the Prometheus base unit; dense from half a millisecond (STAA's share of a small model's
# window) to seconds (a real-size model on a CPU), up to a long clip's worth.
LATENCY_BUCKETS_SECONDS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
                           0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class ServerMetrics:
    """Every series carries ``model``: the served name of the model the window or call belongs to
    (server/model_set.py; empty for a call refused before it named one)."""

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        # The standard process_* and python_* series, on this server's own registry.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

        def histogram(name: str, documentation: str) -> Histogram:
            return Histogram(name, documentation, ["model"], buckets=LATENCY_BUCKETS_SECONDS, registry=self.registry)

        def counter(name: str, documentation: str, labels=()) -> Counter:
            return Counter(name, documentation, ["model", *labels], registry=self.registry)

        self.queue = histogram("staa_queue_seconds", "Time a window waited for the model thread (micro-batcher queue)")
        self.forward = histogram("staa_forward_seconds", "Model forward per window (a batch's forward shared out)")
        # By method too: STAA's share of a window is sub-millisecond, a gradient method's is several passes.
        self.attribution = Histogram("staa_attribution_seconds", "Attribution per window (its method's maths)",
                                     ["model", "method"], buckets=LATENCY_BUCKETS_SECONDS, registry=self.registry)
        self.robustness = histogram("staa_robustness_seconds", "Robustness scoring of one window (all its passes)")
        self.frame_to_heatmap = histogram(
            "staa_frame_to_heatmap_seconds", "From the arrival of a window's last frame to its explanation being sent")
        self.batch_size = Histogram("staa_batch_windows", "Windows per model forward", ["model"],
                                    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64), registry=self.registry)
        self.windows = counter("staa_windows_explained", "Windows explained", ("method",))
        self.dropped_frames = counter("staa_dropped_frames", "Live frames dropped by backpressure (drop_oldest streams)")
        self.skipped_windows = counter("staa_skipped_windows", "Live windows not explained because frames were dropped")
        self.errors = counter("staa_errors", "RPCs ended with a non-OK status", ("code",))
        # Every RPC (health and reflection excepted) by method and final status, and its duration: the
        # request rates and error ratios per method and model (grpc_server_handled_total's shape).
        self.rpcs = counter("staa_rpcs", "RPCs handled, by method and final status", ("rpc", "code"))
        self.rpc_seconds = Histogram("staa_rpc_seconds", "RPC duration, from its start to its status",
                                     ["model", "rpc"], buckets=LATENCY_BUCKETS_SECONDS, registry=self.registry)
        self.active_streams = Gauge("staa_active_streams", "Live streams open", registry=self.registry)
        self.active_clips = Gauge("staa_active_clip_requests", "ExplainClip requests in flight", registry=self.registry)
        # One series per served model, from the moment it has loaded (version, model, device).
        self.build_info = Info("staa_build", "What this server runs, one series per served model", ["model"],
                               registry=self.registry)
        self._http = None

    def add_model(self, name: str, device: str) -> "ModelMetrics":
        """A model has loaded and is served as ``name``: its build info, and the view its engine reports to."""
        self.build_info.labels(model=name).info({"version": package_version(), "device": device})
        return ModelMetrics(self, name)

    def observe_rpc(self, model: str, rpc: str, code: str, seconds: float) -> None:
        self.rpcs.labels(model=model, rpc=rpc, code=code).inc()
        self.rpc_seconds.labels(model=model, rpc=rpc).observe(seconds)

    def observe_error(self, model: str, code: grpc.StatusCode) -> None:
        self.errors.labels(model=model, code=code.name).inc()

    def track_active(self, streams: Callable[[], int], clips: Callable[[], int]) -> None:
        self.active_streams.set_function(streams)
        self.active_clips.set_function(clips)

    def serve(self, host: str, port: int) -> int:
        """Expose /metrics on ``host:port`` (0 = any free port); returns the bound port."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


class ModelMetrics:
    """One served model's view of the metrics: what its engine, streams and batches observe, labelled
    with its served name."""

    def __init__(self, metrics: ServerMetrics, model: str):
        self.metrics, self.model = metrics, model

    def observe_explanation(self, method: str, timings: WindowTimings) -> None:
        series, model = self.metrics, self.model
        series.windows.labels(model=model, method=method).inc()
        series.queue.labels(model=model).observe(timings.queue_ms / 1e3)
        series.forward.labels(model=model).observe(timings.forward_ms / 1e3)
        series.attribution.labels(model=model, method=method).observe(timings.attribution_ms / 1e3)

    def observe_robustness(self, milliseconds: float) -> None:
        self.metrics.robustness.labels(model=self.model).observe(milliseconds / 1e3)

    def observe_frame_to_heatmap(self, seconds: float) -> None:
        self.metrics.frame_to_heatmap.labels(model=self.model).observe(seconds)

    def observe_drops(self, frames: int, windows: int) -> None:
        self.metrics.dropped_frames.labels(model=self.model).inc(frames)
        self.metrics.skipped_windows.labels(model=self.model).inc(windows)

    def observe_batch(self, size: int) -> None:
        self.metrics.batch_size.labels(model=self.model).observe(size)


class RpcMetricsInterceptor(CallObserver):
    """Counts and times every RPC (``staa_rpcs_total``, ``staa_rpc_seconds``) under the model it chose."""

    def __init__(self, metrics: ServerMetrics, model: Callable[[], str]):
        self.metrics, self.model = metrics, model

    def started(self, method: str, context) -> float:
        return time.perf_counter()

    def ended(self, method: str, began: float, context, status: str, windows: int) -> None:
        self.metrics.observe_rpc(self.model(), method.lstrip("/"), status, time.perf_counter() - began)
