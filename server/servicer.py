"""The gRPC servicer: protobuf in, plain calls, protobuf out. Logic lives in session/engine/convert."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc

from staa_serve.models.errors import InvalidInput
from staa_serve.models.registry import LoadedModel
from staa_serve.server import convert
from staa_serve.server.config import ServerConfig
from staa_serve.models.pipeline import WindowExplanation
from staa_serve.server.engine import ExplainEngine
from staa_serve.server.admission import Admission, CallTracker, sent
from staa_serve.server.budget import ByteBudget
from staa_serve.server.memory import Trimmer
from staa_serve.server.errors import Draining, IdleTimeout, NotReady, status_for
from staa_serve.server.live import AckDue, live_events, read_frames
from staa_serve.server.metrics import ServerMetrics
from staa_serve.server.model_set import ModelSet, call_model
from staa_serve.server.session import (SessionRegistry, StreamSession, check_clip_frames, check_fps, peer_host,
                                       raw_clip_frames)
from staa_serve.server.wire import parse_counted, parsed
from staa.v1 import explainer_pb2 as pb
from staa.v1 import explainer_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

# A clip request is read only once this many times max_message_bytes is reserved: the transport's
# buffer, the serialized bytes handed to the parser and the parsed message are alive together.
CLIP_READ_FACTOR = 3
# An admitted clip call waits this long for that reservation (reading nothing meanwhile) before
# RESOURCE_EXHAUSTED: calls that arrive together are read a few at a time instead of refused.
CLIP_BUDGET_WAIT_SECONDS = 30.0
# The largest request of an RPC that carries no body (GetModelInfo): a model name and little else.
SMALL_REQUEST_BYTES = 4096


class VideoExplainerServicer(pb_grpc.VideoExplainerServicer):
    def __init__(self, config: ServerConfig, metrics: ServerMetrics | None = None):
        self.config = config
        self.metrics = metrics
        self.sessions = SessionRegistry(config.max_streams, config.max_streams_per_peer)
        self.clips = Admission(config.max_clip_requests, "max_clip_requests", "clip requests in flight")
        self.budget = ByteBudget(config.max_buffered_bytes, "max_buffered_bytes")
        self.calls = CallTracker()
        self.trimmer = Trimmer()
        self.draining = asyncio.Event()
        self.models = ModelSet()  # filled as the models load and warm, in --model order
        self.loaded_all = False  # every model is loaded and warm: the server serves
        if metrics is not None:
            metrics.track_active(lambda: self.sessions.active, lambda: self.clips.active)

    def attach(self, engine: ExplainEngine) -> None:
        """One more model is loaded and warm (served once ``all_loaded`` says every one is)."""
        self.models.add(engine.name, engine)

    def all_loaded(self) -> None:
        self.loaded_all = True

    @property
    def engine(self) -> ExplainEngine | None:
        """The default model's engine (None until it has loaded)."""
        return self.models.default

    @property
    def read_window_bytes(self) -> int:
        """The largest window budget over the models: reserved before a request says its model."""
        return max(engine.window_bytes for engine in self.models.engines())

    def drain(self) -> None:
        """Shutting down: refuse new calls; live streams finish what they queued and end UNAVAILABLE."""
        self.draining.set()
        self.sessions.drain()

    def _ready(self) -> None:
        if self.draining.is_set():
            raise Draining("server is shutting down (draining); connect to another replica")
        if not self.loaded_all:
            raise NotReady("the models are still loading; watch grpc.health.v1 for SERVING")

    def _engine(self, requested: str) -> tuple[ExplainEngine, LoadedModel]:
        """The engine of the model a request names (server/model_set.py); NOT_FOUND for an unknown one."""
        engine = self.models.resolve(requested)[1]
        return engine, engine.loaded

    async def _abort(self, context: grpc.aio.ServicerContext, error: Exception) -> None:
        code, message = status_for(error)  # logs the traceback of a server fault
        if self.metrics is not None:
            self.metrics.observe_error(call_model(), code)
        # The tracebacks' frames hold the request (a clip body, decoded frames), and gRPC keeps the
        # abort in a reference cycle that only a full collection frees: drop them now.
        seen = set()
        while error is not None and id(error) not in seen:
            seen.add(id(error))
            error.__traceback__ = None
            error = error.__cause__ or error.__context__
        await context.abort(code, message)

    async def _ended(self, context: grpc.aio.ServicerContext) -> None:
        """A cancelled call: answered UNAVAILABLE when the drain ended it; otherwise the cancellation
        came from gRPC (the client left), and there is nobody to answer."""
        error = self.calls.ended_by_drain()
        if error is None:
            raise asyncio.CancelledError()
        await self._abort(context, error)

    async def GetModelInfo(self, requests, context):
        """Read after admission like ExplainClip (server/wire.py): a GetModelInfo request is a few bytes,
        but a client may send max_message_bytes, so its read takes the same memory reservation."""
        size = 0
        try:
            self._ready()
            async with self._read_reservation("a request"):
                data = await self.only_request(aiter(requests), "GetModelInfo", "ModelInfoRequest")
                size = len(data)
                request = parse_counted(data, pb.ModelInfoRequest, {}) if size <= SMALL_REQUEST_BYTES else None
                del data
            if request is None:
                raise InvalidInput(f"a ModelInfoRequest is at most {SMALL_REQUEST_BYTES} bytes, got {size}")
            engine, loaded = self._engine(request.model)
            return convert.model_info(loaded, engine.name, self.models.names)
        except Exception as error:
            await self._abort(context, error)
        finally:
            if size > SMALL_REQUEST_BYTES:
                self.trimmer.after_large_call(self.clips.active == 0)  # its transport slices are free now

    def _read_reservation(self, what: str, extra: int = 0):
        """The memory a request's read takes before it is read (CLIP_READ_FACTOR bodies of the largest
        size, plus ``extra``), waited for up to CLIP_BUDGET_WAIT_SECONDS."""
        return self.budget.reserve_waiting(CLIP_READ_FACTOR * self.config.max_message_bytes + extra, what,
                                           CLIP_BUDGET_WAIT_SECONDS)

    async def ExplainClip(self, requests, context):
        """Registered request-streaming (server/wire.py) so that admission and the memory reservation
        come before the request body is read off the wire."""
        async def read() -> tuple[pb.ClipRequest, memoryview | None, int]:
            data = await self.only_request(aiter(requests), "ExplainClip", "ClipRequest")
            limits = {"staa.v1.RawFrames.frames": (self.config.max_clip_frames,
                                                   f"max_clip_frames={self.config.max_clip_frames}")}
            request, clip = await asyncio.to_thread(parse_counted, data, pb.ClipRequest, limits, "clip")
            return request, clip, len(data)

        async for response in self.admitted_clip(context, read):
            yield response

    async def admitted_clip(self, context, read):
        """A clip call's responses: admission and the memory reservation first, then ``await read()``
        gives ``(ClipRequest, clip, size)``: the request (ExplainClip's, or one OIP's ModelInfer makes), its clip
        bytes when they come apart from it (else None), and the bytes the request came in."""
        # Tracked until its status is sent: a drain waits for the abort of a call it ended, not only for
        # the call's work (else gRPC's own stop could cancel it first, without our reason).
        with self.calls.track() as call:
            try:
                self._ready()
                with self.clips.admit():
                    async with self._read_reservation("a clip request", self.read_window_bytes) as held:
                        async for response in sent(call, self._explain_clip(read, held)):
                            yield response
            except asyncio.CancelledError:
                await self._ended(context)
            except Exception as error:
                await self._abort(context, error)
            finally:
                self.trimmer.after_large_call(self.clips.active == 0)  # the body's transport slices are free now

    async def _explain_clip(self, read, held):
        request, clip, size = await read()
        engine, loaded = self._engine(request.model)
        # One copy of the body is kept. Its size as it came: ByteSize() serializes the whole message to
        # count it (upb), 47 MiB at a time on the event loop.
        held.resize(size + engine.window_bytes)
        options = convert.clip_options(request, loaded, self.config)
        frames = None
        if request.WhichOneof("source") == "frames":
            check_fps(request.frames.fps, "RawFrames.fps")
            check_clip_frames(len(request.frames.frames), self.config)
            # Off the event loop: up to max_clip_frames conversions would hold it while health waits.
            frames = await asyncio.to_thread(lambda: [convert.frame_input(frame) for frame in request.frames.frames])
        results = self._clip_results(request, engine, options, frames, clip)
        del request  # the clip bytes (or frames) were taken out of it
        async for result in results:
            if isinstance(result, WindowExplanation):
                yield pb.ClipResponse(explanation=convert.explanation(result))
            else:
                yield pb.ClipResponse(robustness=convert.robustness(result))

    @staticmethod
    async def only_request(requests, rpc: str, message: str) -> bytes:
        """The call's one request, as bytes (server/wire.py: parse_counted parses it). The end of the
        stream is read too: until then gRPC's receiver holds the last message it yielded (the whole
        body) in a reference cycle."""
        request = await anext(requests, None)
        if request is None:
            raise InvalidInput(f"{rpc} got no {message}")
        if await anext(requests, None) is not None:
            raise InvalidInput(f"{rpc} takes exactly one {message}")
        return request

    def _clip_results(self, request: pb.ClipRequest, engine: ExplainEngine, options, frames, clip):
        source = "clip" if clip is not None else request.WhichOneof("source")
        if source == "clip":
            if clip is None:
                clip = request.clip  # each read of a bytes field copies it (upb): once, up to max_clip_bytes
            if len(clip) > self.config.max_clip_bytes:
                raise InvalidInput(f"ClipRequest.clip is {len(clip)} bytes; max_clip_bytes={self.config.max_clip_bytes}")
            if request.decoder == "decord" and not self.config.allow_decord:
                raise InvalidInput("ClipRequest.decoder='decord' is disabled on this server (decord can crash "
                                   "on malformed input; operators enable it with --allow-decord)")
            return engine.explain_clip(clip, request.decoder, options)
        if source == "frames":
            return engine.explain_frames(raw_clip_frames(frames, self.config), request.frames.fps or 30.0, options)
        raise InvalidInput("ClipRequest.source is not set (clip bytes or frames are required)")

    async def StreamExplain(self, request_iterator, context):
        with contextlib.ExitStack() as held:
            session: StreamSession | None = None
            reader: asyncio.Task | None = None
            try:
                self._ready()
                call = held.enter_context(self.calls.track())
                # Counted from the first byte, configured or not, and per client.
                held.enter_context(self.sessions.admit(peer_host(context.peer() or "")))
                # Before the config says which model: the largest model's windows.
                held.enter_context(self.budget.reserve(self.read_window_bytes, "a live stream's windows"))
                requests = aiter(request_iterator)
                config = await self._stream_config(requests)
                engine, loaded = self._engine(config.model)
                options = convert.stream_options(config, loaded, self.config)
                session = self.sessions.open(lambda session_id: StreamSession(
                    session_id, options, loaded, self.config, config.fps,
                    config.ack_every or self.config.default_ack_every, not config.drop_oldest, self.budget))
                reader = asyncio.create_task(read_frames(_frames(requests), session))
                async for event in sent(call, live_events(session, engine, self.draining,
                                                          self.config.stream_idle_seconds, engine.metrics)):
                    if isinstance(event, WindowExplanation):
                        yield pb.StreamResponse(explanation=convert.explanation(event))
                    elif isinstance(event, AckDue):
                        yield self._ack(session)
                    else:
                        yield pb.StreamResponse(robustness=convert.robustness(event))
            except asyncio.CancelledError:
                await self._ended(context)
            except Exception as error:
                await self._abort(context, error)
            finally:
                if reader is not None:
                    reader.cancel()
                if session is not None:
                    engine.cadence.forget(session.session_id)
                    self.sessions.close(session)

    async def _stream_config(self, requests) -> pb.StreamConfig:
        """The first StreamRequest, which must carry the StreamConfig, within stream_config_seconds."""
        wait = self.config.stream_config_seconds
        try:
            first = parsed(await asyncio.wait_for(anext(requests, None), wait))
        except TimeoutError:
            raise IdleTimeout(f"no StreamConfig within {wait:g} s (stream_config_seconds); stream closed") from None
        if first is None:
            raise InvalidInput("the stream ended before its StreamConfig")
        kind = first.WhichOneof("request")
        if kind != "config":
            raise InvalidInput(f"the first StreamRequest must carry a StreamConfig, got {kind or 'nothing'}")
        return first.config

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
