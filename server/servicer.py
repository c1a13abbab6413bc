"""The gRPC servicer: protobuf in, plain calls, protobuf out. Logic lives in session/engine/convert."""

from __future__ import annotations

import asyncio
import logging

import grpc

from models.errors import InvalidInput
from models.registry import LoadedModel
from server import convert
from server.config import ServerConfig
from models.pipeline import WindowExplanation
from server.engine import ExplainEngine, PendingRobustness
from server.errors import NotReady, status_for
from server.session import SessionRegistry, StreamSession, raw_clip_frames
from staa.v1 import explainer_pb2 as pb
from staa.v1 import explainer_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)


async def _abort(context: grpc.aio.ServicerContext, error: Exception) -> None:
    code, message = status_for(error)
    await context.abort(code, message)


class VideoExplainerServicer(pb_grpc.VideoExplainerServicer):
    def __init__(self, config: ServerConfig):
        self.config = config
        self.sessions = SessionRegistry(config.max_streams)
        self.engine: ExplainEngine | None = None  # set once the model is loaded and warm

    def attach(self, engine: ExplainEngine) -> None:
        self.engine = engine

    def _ready(self) -> tuple[ExplainEngine, LoadedModel]:
        if self.engine is None:
            raise NotReady("the model is still loading; watch grpc.health.v1 for SERVING")
        return self.engine, self.engine.loaded

    async def GetModelInfo(self, request, context):
        try:
            return convert.model_info(self._ready()[1])
        except Exception as error:
            await _abort(context, error)

    async def ExplainClip(self, request: pb.ClipRequest, context):
        try:
            engine, loaded = self._ready()
            options = convert.clip_options(request, loaded, self.config)
            source = request.WhichOneof("source")
            if source == "clip":
                if len(request.clip) > self.config.max_clip_bytes:
                    raise InvalidInput(f"ClipRequest.clip is {len(request.clip)} bytes; max_clip_bytes={self.config.max_clip_bytes}")
                results = engine.explain_clip(request.clip, request.decoder, options)
            elif source == "frames":
                frames = [convert.frame_input(frame) for frame in request.frames.frames]
                results = engine.explain_frames(raw_clip_frames(frames, self.config), request.frames.fps or 30.0, options)
            else:
                raise InvalidInput("ClipRequest.source is not set (clip bytes or frames are required)")
            async for result in results:
                if isinstance(result, WindowExplanation):
                    yield pb.ClipResponse(explanation=convert.explanation(result))
                else:
                    yield pb.ClipResponse(robustness=convert.robustness(result))
        except Exception as error:
            await _abort(context, error)

    async def StreamExplain(self, request_iterator, context):
        session: StreamSession | None = None
        pending = PendingRobustness()
        try:
            engine, loaded = self._ready()
            async for request in request_iterator:
                kind = request.WhichOneof("request")
                if session is None:
                    if kind != "config":
                        raise InvalidInput(f"the first StreamRequest must carry a StreamConfig, got {kind or 'nothing'}")
                    config = request.config
                    options = convert.stream_options(config, loaded, self.config)
                    session = self.sessions.open(lambda session_id: StreamSession(
                        session_id, options, loaded, self.config, config.fps,
                        config.ack_every or self.config.default_ack_every))
                    continue
                if kind != "frame":
                    raise InvalidInput("StreamConfig may only be sent once, as the first StreamRequest")
                windows = await asyncio.get_running_loop().run_in_executor(
                    engine.decode_executor, session.accept_frame, convert.frame_input(request.frame))
                for window in windows:
                    engine.cadence.note(session.session_id)
                    yield pb.StreamResponse(explanation=convert.explanation(await engine.explain(window, session.options)))
                    pending.add(engine.score_robustness(window, session.options))
                for result in pending.ready():
                    yield pb.StreamResponse(robustness=convert.robustness(result))
                if session.ack_due():
                    yield self._ack(session)
            if session is None:
                raise InvalidInput("the stream ended before its StreamConfig")
            for window in session.finish():
                yield pb.StreamResponse(explanation=convert.explanation(await engine.explain(window, session.options)))
                pending.add(engine.score_robustness(window, session.options))
            for result in pending.ready() + await pending.rest():
                yield pb.StreamResponse(robustness=convert.robustness(result))
            yield self._ack(session)
        except Exception as error:
            await _abort(context, error)
        finally:
            pending.cancel()
            if session is not None:
                engine.cadence.forget(session.session_id)
                self.sessions.close(session)

    @staticmethod
    def _ack(session: StreamSession) -> pb.StreamResponse:
        return pb.StreamResponse(ack=pb.Ack(received=session.received, dropped=session.dropped,
                                            last_sequence=session.last_sequence or 0))
