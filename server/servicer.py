"""The gRPC servicer: protobuf in, plain calls, protobuf out. Logic lives in session/engine/convert."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from models.errors import InvalidInput
from models.registry import LoadedModel
from server import convert
from server.config import ServerConfig
from models.pipeline import WindowExplanation
from server.engine import ExplainEngine
from server.errors import Draining, NotReady, Overloaded, status_for
from server.live import AckDue, live_events, read_frames
from server.metrics import ServerMetrics
from server.session import SessionRegistry, StreamSession, raw_clip_frames
from server.wire import parsed
from staa.v1 import explainer_pb2 as pb
from staa.v1 import explainer_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


class ClipAdmission:
    """Counts ExplainClip calls in flight; past the limit a call gets RESOURCE_EXHAUSTED."""

    def __init__(self, limit: int):
        self.limit, self.active = limit, 0

    @contextlib.contextmanager
    def admit(self):
        if self.active >= self.limit:
            raise Overloaded(f"server is at max_clip_requests={self.limit} clip requests in flight; retry later")
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


class VideoExplainerServicer(pb_grpc.VideoExplainerServicer):
    def __init__(self, config: ServerConfig, metrics: ServerMetrics | None = None):
        self.config = config
        self.metrics = metrics
        self.sessions = SessionRegistry(config.max_streams)
        self.clips = ClipAdmission(config.max_clip_requests)
        self.draining = asyncio.Event()
        self.engine: ExplainEngine | None = None  # set once the model is loaded and warm
        if metrics is not None:
            metrics.track_active(lambda: self.sessions.active, lambda: self.clips.active)

    def attach(self, engine: ExplainEngine) -> None:
        self.engine = engine

    def drain(self) -> None:
        """Shutting down: refuse new calls; live streams finish what they queued and end UNAVAILABLE."""
        self.draining.set()
        self.sessions.drain()

    def _ready(self) -> tuple[ExplainEngine, LoadedModel]:
        if self.draining.is_set():
            raise Draining("server is shutting down (draining); connect to another replica")
        if self.engine is None:
            raise NotReady("the model is still loading; watch grpc.health.v1 for SERVING")
        return self.engine, self.engine.loaded

    async def _abort(self, context: grpc.aio.ServicerContext, error: Exception) -> None:
        code, message = status_for(error)
        if self.metrics is not None:
            self.metrics.observe_error(code)
        await context.abort(code, message)

    async def GetModelInfo(self, request, context):
        try:
            parsed(request)
            return convert.model_info(self._ready()[1])
        except Exception as error:
            await self._abort(context, error)

    async def ExplainClip(self, request: pb.ClipRequest, context):
        try:
            parsed(request)
            engine, loaded = self._ready()
            with self.clips.admit():
                options = convert.clip_options(request, loaded, self.config)
                source = request.WhichOneof("source")
                if source == "clip":
                    if len(request.clip) > self.config.max_clip_bytes:
                        raise InvalidInput(f"ClipRequest.clip is {len(request.clip)} bytes; "
                                           f"max_clip_bytes={self.config.max_clip_bytes}")
                    if request.decoder == "decord" and not self.config.allow_decord:
                        raise InvalidInput("ClipRequest.decoder='decord' is disabled on this server (decord can crash "
                                           "on malformed input; operators enable it with --allow-decord)")
                    results = engine.explain_clip(request.clip, request.decoder, options)
                elif source == "frames":
                    frames = [convert.frame_input(frame) for frame in request.frames.frames]
                    results = engine.explain_frames(raw_clip_frames(frames, self.config), request.frames.fps or 30.0,
                                                    options)
                else:
                    raise InvalidInput("ClipRequest.source is not set (clip bytes or frames are required)")
                async for result in results:
                    if isinstance(result, WindowExplanation):
                        yield pb.ClipResponse(explanation=convert.explanation(result))
                    else:
                        yield pb.ClipResponse(robustness=convert.robustness(result))
        except Exception as error:
            await self._abort(context, error)

    async def StreamExplain(self, request_iterator, context):
        session: StreamSession | None = None
        reader: asyncio.Task | None = None
        try:
            engine, loaded = self._ready()
            requests = aiter(request_iterator)
            first = parsed(await anext(requests, None))
            if first is None:
                raise InvalidInput("the stream ended before its StreamConfig")
            kind = first.WhichOneof("request")
            if kind != "config":
                raise InvalidInput(f"the first StreamRequest must carry a StreamConfig, got {kind or 'nothing'}")
            config = first.config
            options = convert.stream_options(config, loaded, self.config)
            session = self.sessions.open(lambda session_id: StreamSession(
                session_id, options, loaded, self.config, config.fps, config.ack_every or self.config.default_ack_every,
                config.lossless))
            reader = asyncio.create_task(read_frames(_frames(requests), session))
            async for event in live_events(session, engine, self.draining, self.config.stream_idle_seconds,
                                           self.metrics):
                if isinstance(event, WindowExplanation):
                    yield pb.StreamResponse(explanation=convert.explanation(event))
                elif isinstance(event, AckDue):
                    yield self._ack(session)
                else:
                    yield pb.StreamResponse(robustness=convert.robustness(event))
        except Exception as error:
            await self._abort(context, error)
        finally:
            if reader is not None:
                reader.cancel()
            if session is not None:
                self.engine.cadence.forget(session.session_id)
                self.sessions.close(session)

    @staticmethod
    def _ack(session: StreamSession) -> pb.StreamResponse:
        return pb.StreamResponse(ack=pb.Ack(received=session.received, dropped=session.dropped,
                                            last_sequence=session.last_sequence or 0,
                                            windows_skipped=session.windows_skipped))


async def _frames(requests):
    """The frames after the StreamConfig, as plain FrameInput; a second config is bad input."""
    async for request in requests:
        if parsed(request).WhichOneof("request") != "frame":
            raise InvalidInput("StreamConfig may only be sent once, as the first StreamRequest")
        yield convert.frame_input(request.frame)
