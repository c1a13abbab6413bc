"""Prometheus metrics on their own port (ARCHITECTURE §8), on a registry private to one server.

A private registry (not prometheus_client's global one) lets several servers live in one process
(tests, the Ray replica) without clashing names, and keeps the page to what this server measures.
"""

from __future__ import annotations

from typing import Callable

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from models.pipeline import WindowTimings

# Milliseconds: heatmaps are meant to be interactive, so the buckets are dense below a second.
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000)


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)

        def histogram(name: str, documentation: str) -> Histogram:
            return Histogram(name, documentation, buckets=LATENCY_BUCKETS_MS, registry=self.registry)

        self.queue_ms = histogram("staa_queue_ms", "Time a window waited for the model thread (micro-batcher queue)")
        self.forward_ms = histogram("staa_forward_ms", "Model forward per window (a batch's forward shared out)")
        self.attribution_ms = histogram("staa_attribution_ms", "STAA attribution per window")
        self.robustness_ms = histogram("staa_robustness_ms", "Robustness scoring of one window (all its passes)")
        self.frame_to_heatmap_ms = histogram(
            "staa_frame_to_heatmap_ms", "From the arrival of a window's last frame to its explanation being sent")
        self.batch_size = Histogram("staa_batch_windows", "Windows per model forward", buckets=(1, 2, 3, 4, 6, 8, 12, 16),
                                    registry=self.registry)
        self.windows = Counter("staa_windows_explained", "Windows explained", registry=self.registry)
        self.dropped_frames = Counter("staa_dropped_frames", "Live frames dropped by backpressure (oldest first)",
                                      registry=self.registry)
        self.skipped_windows = Counter("staa_skipped_windows", "Live windows not explained because frames were dropped",
                                       registry=self.registry)
        self.errors = Counter("staa_errors", "RPCs ended with a non-OK status", ["code"], registry=self.registry)
        self.active_streams = Gauge("staa_active_streams", "Live streams open", registry=self.registry)
        self.active_clips = Gauge("staa_active_clip_requests", "ExplainClip requests in flight", registry=self.registry)
        self._http = None

    def observe_explanation(self, timings: WindowTimings) -> None:
        self.windows.inc()
        self.queue_ms.observe(timings.queue_ms)
        self.forward_ms.observe(timings.forward_ms)
        self.attribution_ms.observe(timings.attribution_ms)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_error(self, code: grpc.StatusCode) -> None:
        self.errors.labels(code=code.name).inc()

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
