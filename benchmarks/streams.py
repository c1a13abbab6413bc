"""Paced live streams as a benchmark client: frame-to-heatmap latency as the user sees it.

One stream sends its frames through ``StreamExplain`` at ``fps`` (frames it could not send on time
are skipped and counted, like a camera that does not wait) and records, per explanation, the
time from sending the window's last frame to receiving its explanation.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from staa_serve.clients.client import ExplainerClient, frame_request
from staa.v1 import explainer_pb2 as pb


@dataclass
class StreamRun:
    latencies_ms: list[float] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)  # seconds after ``opened``, one per latency
    opened: float = 0.0  # perf_counter() when the stream started
    frames_sent: int = 0
    frames_skipped: int = 0  # the sender fell behind its clock
    server_dropped: int = 0  # from the last Ack
    robustness: list[pb.Robustness] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


def paced_stream(target: str, frames: list[np.ndarray], fps: float, hop: int = 0, kind: str = "rgb24",
                 robustness: pb.RobustnessOptions | None = None, timeout: float = 600, model: str = "") -> StreamRun:
    """One paced live stream; ``model``: a served model's name or id ("" = the server's default)."""
    run = StreamRun()
    sent_at: dict[int, float] = {}  # by the server's frame index: the count of frames sent before it

    def requests():
        # Cameras: a paced source that would rather skip frames than lag (the benchmarks count the drops).
        yield pb.StreamRequest(config=pb.StreamConfig(window=pb.WindowSpec(hop=hop), fps=fps, robustness=robustness,
                                                      drop_oldest=True, model=model))
        started = time.perf_counter()
        for sequence, frame in enumerate(frames):
            due = started + sequence / fps
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            elif now - due > 2.0 / fps:  # too late: a live source would have moved on
                run.frames_skipped += 1
                continue
            request = frame_request(frame, sequence, fps, kind)
            sent_at[run.frames_sent] = time.perf_counter()
            run.frames_sent += 1
            yield request

    started = run.opened = time.perf_counter()
    try:
        with ExplainerClient(target, timeout=timeout) as client:
            for event in client.stub.StreamExplain(requests(), timeout=timeout):
                kind_of = event.WhichOneof("event")
                if kind_of == "explanation":
                    last = event.explanation.source_frames[-1]
                    now = time.perf_counter()
                    run.latencies_ms.append((now - sent_at[last]) * 1e3)
                    run.received_at.append(now - started)
                elif kind_of == "robustness":
                    run.robustness.append(event.robustness)
                elif kind_of == "ack":
                    run.server_dropped = event.ack.dropped
    except grpc.RpcError as error:
        run.error = f"{error.code().name}: {error.details()}"
    run.seconds = time.perf_counter() - started
    return run


def concurrent_streams(target: str, count: int, frames: list[np.ndarray], fps: float, **options) -> list[StreamRun]:
    """``count`` paced streams at once, each in its own thread, all sending the same frames."""
    runs: list[StreamRun | None] = [None] * count

    def one(slot: int) -> None:
        runs[slot] = paced_stream(target, frames, fps, **options)

    threads = [threading.Thread(target=one, args=(slot,)) for slot in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return runs


def percentiles(values: list[float], points=(50, 90, 95, 99)) -> dict[str, float]:
    if not values:
        return {f"p{point}_ms": float("nan") for point in points}
    return {f"p{point}_ms": float(np.percentile(values, point)) for point in points}
