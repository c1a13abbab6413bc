"""Per-stream state and request options, as plain Python (no grpc): testable on its own.

A live session owns a WindowAssembler (ring of the frames later windows still need), its
counters and its options. Sessions are registered so the server can bound and count them;
the servicer frees each in its generator's ``finally``, so end, cancel and error share a path.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from dataclasses import dataclass

from staa_serve.models.errors import InvalidInput
from staa_serve.models.frames import decode_frame
from staa_serve.models.registry import LoadedModel
from staa_serve.models.sampling import WindowSpec
from staa_serve.models.staa import StaaParams
from staa_serve.models.windowing import PreparedWindow, WindowAssembler
from staa_serve.server.admission import Admission
from staa_serve.server.budget import ByteBudget
from staa_serve.server.config import ServerConfig
from staa_serve.server.errors import Overloaded
from staa_serve.server.frame_queue import FrameQueue, SequenceCheck
from staa_serve.server.robustness_lane import RobustnessPlan

DEFAULT_LIVE_FPS = 30.0


@dataclass(frozen=True)
class ExplainOptions:
    """Resolved options of one request: window geometry, STAA parameters, top-k, robustness (or None),
    and the method making the maps (``params.method``, or a gradient method run on the robustness lane)."""

    window: WindowSpec
    params: StaaParams
    top_k: int
    robustness: RobustnessPlan | None = None
    method: str = "staa"


@dataclass(frozen=True)
class FrameInput:
    kind: str  # "rgb24" | "jpeg" | "png" | "" (unset)
    data: bytes
    width: int
    height: int
    sequence: int
    pts: float


def resolve_window(loaded: LoadedModel, config: ServerConfig, num_frames: int, stride: int, hop: int) -> WindowSpec:
    """Fill defaults from the model and check the request against it and the server limits."""
    if num_frames not in (0, loaded.num_frames):
        raise InvalidInput(
            f"WindowSpec.num_frames={num_frames} but model {loaded.model_id!r} takes exactly "
            f"{loaded.num_frames} frames (0 = the model's)"
        )
    if stride > config.max_stride:
        raise InvalidInput(f"WindowSpec.stride={stride} exceeds max_stride={config.max_stride}")
    if hop > config.max_clip_frames:
        raise InvalidInput(f"WindowSpec.hop={hop} exceeds max_clip_frames={config.max_clip_frames}")
    return WindowSpec(loaded.num_frames, stride or loaded.default_stride, hop)  # hop 0 -> one span


def resolve_top_k(config: ServerConfig, top_k: int) -> int:
    if top_k > config.max_top_k:
        raise InvalidInput(f"StaaOptions.top_k={top_k} exceeds max_top_k={config.max_top_k}")
    return top_k or config.default_top_k


class StreamSession:
    """One live stream: its frame queue, window assembler, counters and options.

    The reader task (server/live.py) checks sequence numbers and counts ``received`` on arrival;
    the processor decodes and assembles (``accept_frame``) and reports the drops.
    """

    def __init__(self, session_id: int, options: ExplainOptions, loaded: LoadedModel, config: ServerConfig,
                 fps: float, ack_every: int, lossless: bool = True, server_budget: ByteBudget | None = None):
        self.session_id = session_id
        self.options = options
        self.config = config
        self.ack_every = ack_every
        self.assembler = WindowAssembler(options.window, loaded.processor, fps or DEFAULT_LIVE_FPS)
        stream_budget = ByteBudget(config.max_stream_buffered_bytes, "max_stream_buffered_bytes")
        server_budget = server_budget or ByteBudget(config.max_buffered_bytes, "max_buffered_bytes")
        self.queue = FrameQueue(config.max_pending_frames, stream_budget, server_budget, lossless)
        self.sequence = SequenceCheck()
        self.received = 0  # frames off the wire, dropped ones included
        self.dropped = 0
        self.windows_skipped = 0
        self._acked_at = 0

    @property
    def last_sequence(self) -> int | None:
        return self.sequence.last

    def accept_frame(self, index: int, frame: FrameInput) -> list[PreparedWindow]:
        """Decode and add arrival-``index`` frame (runs on the decode pool); returns the windows it completes."""
        pixels = decode_frame(frame.kind, frame.data, frame.width, frame.height,
                              self.config.max_frame_width, self.config.max_frame_height)
        return self.assembler.push(index, pixels)

    def note_dropped(self, dropped: int, metrics=None) -> None:
        """Bring the drop counters up to date (and the metrics by the difference)."""
        skipped = self.assembler.windows_skipped
        if metrics is not None:
            metrics.observe_drops(dropped - self.dropped, skipped - self.windows_skipped)
        self.dropped, self.windows_skipped = dropped, skipped

    def ack_due(self) -> bool:
        if self.received - self._acked_at < self.ack_every:
            return False
        self._acked_at = self.received
        return True

    def finish(self) -> list[PreparedWindow]:
        return self.assembler.finish()


class SessionRegistry:
    """Bounded set of live streams (thread-safe: tests and metrics read it from other threads).

    A stream holds its place from its first byte (``admit``), before its StreamConfig arrives, so
    streams that never configure themselves count against ``max_streams`` too.
    """

    def __init__(self, max_streams: int, max_streams_per_peer: int | None = None):
        self.max_streams = max_streams
        self.max_streams_per_peer = min(max_streams_per_peer or max_streams, max_streams)
        self._sessions: dict[int, StreamSession] = {}
        self._admission = Admission(max_streams, "max_streams", "live streams")
        self._by_peer: dict[str, int] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def admit(self, peer: str = ""):
        """One stream's place, for a client at ``peer`` (its address without the port): RESOURCE_EXHAUSTED
        past max_streams, or past max_streams_per_peer for that client."""
        with self._admission.admit():
            with self._lock:
                if self._by_peer.get(peer, 0) >= self.max_streams_per_peer:
                    raise Overloaded(f"this client holds max_streams_per_peer={self.max_streams_per_peer} live "
                                     "streams; close one or retry later")
                self._by_peer[peer] = self._by_peer.get(peer, 0) + 1
            try:
                yield
            finally:
                with self._lock:
                    self._by_peer[peer] -= 1
                    if not self._by_peer[peer]:
                        del self._by_peer[peer]

    def open(self, make_session) -> StreamSession:
        with self._lock:
            session = make_session(next(self._ids))
            self._sessions[session.session_id] = session
            return session

    def close(self, session: StreamSession) -> None:
        with self._lock:
            self._sessions.pop(session.session_id, None)
        session.queue.close()

    def drain(self) -> None:
        """Server shutting down: every stream stops taking frames and finishes what it has queued."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.queue.end()

    @property
    def active(self) -> int:
        """Live streams admitted, configured or not."""
        return self._admission.active


def peer_host(peer: str) -> str:
    """A gRPC peer (``ipv4:10.0.0.5:51234``, ``ipv6:[::1]:51234``, ``unix:/path``) without its port:
    one client, however many connections it opens."""
    kind, _, address = peer.partition(":")
    return peer if kind == "unix" else f"{kind}:{address.rpartition(':')[0] or address}"


def check_fps(fps: float, field: str) -> None:
    if not (math.isfinite(fps) and 0 <= fps <= 1000):
        raise InvalidInput(f"{field} must be a number in [0, 1000] (0 = the default), got {fps}")


def check_clip_frames(count: int, config: ServerConfig, field: str = "ClipRequest.frames") -> None:
    """A raw-frame clip's frame count, checked from the message before any frame is looked at."""
    if count == 0:
        raise InvalidInput(f"{field} is empty")
    if count > config.max_clip_frames:
        raise InvalidInput(f"{field} has {count} frames; max_clip_frames={config.max_clip_frames}")


def raw_clip_frames(frames: list[FrameInput], config: ServerConfig):
    """Lazily decode the frames of a raw-frame clip (runs on the decode pool; the count was checked)."""
    for frame in frames:
        yield decode_frame(frame.kind, frame.data, frame.width, frame.height,
                           config.max_frame_width, config.max_frame_height)
