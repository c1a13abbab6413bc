"""Python client library for STAA Serve, sync (``ExplainerClient``) and async (``AsyncExplainerClient``).

Both set message-size limits explicitly (matching the server's default) and speak only the
generated stubs; results are protobuf ``Explanation``s (``clients.results`` turns them into JSON).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator, Iterable, Iterator

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from staa_serve.models.frames import encode_frame
from staa.v1 import explainer_pb2 as pb
from staa.v1 import explainer_pb2_grpc as pb_grpc

DEFAULT_MAX_MESSAGE_BYTES = 64 << 20


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)]


ATTACKS = {"off": pb.ATTACK_OFF, "noise": pb.ATTACK_NOISE, "fgsm": pb.ATTACK_FGSM, "pgd": pb.ATTACK_PGD}


def robustness_options(attack: str = "off", epsilon: float | None = None, every: int = 0, steps: int = 0,
                       seed: int = 0) -> pb.RobustnessOptions:
    """``attack`` one of off / noise / fgsm / pgd; ``epsilon`` in /255 (None = server default 4)."""
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {sorted(ATTACKS)}, got {attack!r}")
    options = pb.RobustnessOptions(attack=ATTACKS[attack], every=every, steps=steps, seed=seed)
    if epsilon is not None:
        options.epsilon = epsilon
    return options


def open_channel(target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 root_certificates: bytes | None = None, module=grpc):
    """Plain channel, or TLS verified against ``root_certificates`` (PEM) when given;
    ``module=grpc.aio`` for an asyncio channel."""
    options = channel_options(max_message_bytes)
    if root_certificates is None:
        return module.insecure_channel(target, options=options)
    return module.secure_channel(target, grpc.ssl_channel_credentials(root_certificates), options=options)


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None


def clip_request(clip: bytes | str | Path, window: pb.WindowSpec | None = None,
                 staa: pb.StaaOptions | None = None, decoder: str = "",
                 robustness: pb.RobustnessOptions | None = None, model: str = "") -> pb.ClipRequest:
    """``model``: a served model's name or id ("" = the server's default model)."""
    data = clip if isinstance(clip, (bytes, bytearray)) else Path(clip).read_bytes()
    return pb.ClipRequest(clip=bytes(data), window=window, staa=staa, decoder=decoder, robustness=robustness,
                          model=model)


def frame_request(frame: np.ndarray, sequence: int, fps: float, kind: str = "rgb24") -> pb.StreamRequest:
    """One RGB uint8 ``[H, W, 3]`` frame as a StreamRequest, encoded as ``kind``, stamped at ``sequence / fps`` s."""
    height, width = frame.shape[:2]
    return pb.StreamRequest(frame=pb.Frame(width=width, height=height, sequence=sequence, pts=sequence / fps,
                                           **{kind: encode_frame(frame, kind)}))


def stream_requests(frames: Iterable[np.ndarray], fps: float, kind: str = "rgb24",
                    window: pb.WindowSpec | None = None, staa: pb.StaaOptions | None = None,
                    speed: float = 1.0, robustness: pb.RobustnessOptions | None = None,
                    drop_oldest: bool = False, model: str = "") -> Iterator[pb.StreamRequest]:
    """StreamConfig, then one Frame per RGB uint8 ``[H, W, 3]`` array, paced at ``fps * speed`` (0 = unpaced).

    ``drop_oldest``: a real-time source's choice to lose its oldest frames rather than be slowed
    down (the default: nothing is lost, the server holds the sender through flow control). ``model``:
    a served model's name or id ("" = the server's default model).
    """
    yield pb.StreamRequest(config=pb.StreamConfig(window=window, staa=staa, fps=fps, robustness=robustness,
                                                  drop_oldest=drop_oldest, model=model))
    started = time.perf_counter()
    for sequence, frame in enumerate(frames):
        if speed > 0:
            delay = started + sequence / (fps * speed) - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        yield frame_request(frame, sequence, fps, kind)


class ReadyWait:
    """The polling rule both clients' ``wait_ready`` follow: SERVING ends it; past ``timeout`` the last
    RPC error (or a TimeoutError) is raised."""

    POLL_SECONDS = 0.2

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    @staticmethod
    def serving(reply) -> bool:
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    def give_up(self, error: Exception | None = None) -> None:
        if time.monotonic() > self.deadline:
            raise error or TimeoutError(f"server not SERVING after {self.timeout} s")


class ExplainerClient:
    """Blocking client: ``with ExplainerClient("127.0.0.1:50051") as client: ...``.

    ``root_certificates`` (PEM bytes) makes the channel TLS; ``token`` is sent as a bearer token.
    """

    def __init__(self, target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, timeout: float | None = None,
                 root_certificates: bytes | None = None, token: str | None = None):
        self.channel = open_channel(target, max_message_bytes, root_certificates)
        self.stub = pb_grpc.VideoExplainerStub(self.channel)
        self.timeout = timeout
        self.metadata = auth_metadata(token)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until health says SERVING (the model is loaded and warm)."""
        health, waiting = health_pb2_grpc.HealthStub(self.channel), ReadyWait(timeout)
        while True:
            try:
                if waiting.serving(health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)):
                    return
            except grpc.RpcError as error:
                waiting.give_up(error)
            waiting.give_up()
            time.sleep(ReadyWait.POLL_SECONDS)

    def model_info(self, model: str = "") -> pb.ModelInfo:
        """A served model ("" = the default); ``served_models`` names them all."""
        return self.stub.GetModelInfo(pb.ModelInfoRequest(model=model), timeout=self.timeout, metadata=self.metadata)

    def explain_clip(self, clip: bytes | str | Path, **options) -> Iterator[pb.Explanation]:
        """The explanations only (robustness events, if asked for, are skipped: see ``explain_clip_events``)."""
        for response in self.explain_clip_events(clip, **options):
            if response.WhichOneof("event") == "explanation":
                yield response.explanation

    def explain_clip_events(self, clip: bytes | str | Path, **options) -> Iterator[pb.ClipResponse]:
        """Every ClipResponse: explanations in window order, Robustness events when they are ready."""
        yield from self.stub.ExplainClip(clip_request(clip, **options), timeout=self.timeout, metadata=self.metadata)

    def explain_frames(self, frames: Iterable[np.ndarray], fps: float, **options) -> Iterator[pb.StreamResponse]:
        """Live: stream frames through StreamExplain; yields Explanation, Robustness and Ack events as they come."""
        yield from self.stub.StreamExplain(stream_requests(frames, fps, **options), timeout=self.timeout,
                                           metadata=self.metadata)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class AsyncExplainerClient:
    """asyncio client with the same methods (``async with AsyncExplainerClient(target) as client``)."""

    def __init__(self, target: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, timeout: float | None = None,
                 root_certificates: bytes | None = None, token: str | None = None):
        self.channel = open_channel(target, max_message_bytes, root_certificates, module=grpc.aio)
        self.stub = pb_grpc.VideoExplainerStub(self.channel)
        self.timeout = timeout
        self.metadata = auth_metadata(token)

    async def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until health says SERVING (the model is loaded and warm)."""
        health, waiting = health_pb2_grpc.HealthStub(self.channel), ReadyWait(timeout)
        while True:
            try:
                if waiting.serving(await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)):
                    return
            except grpc.aio.AioRpcError as error:
                waiting.give_up(error)
            waiting.give_up()
            await asyncio.sleep(ReadyWait.POLL_SECONDS)

    async def model_info(self, model: str = "") -> pb.ModelInfo:
        return await self.stub.GetModelInfo(pb.ModelInfoRequest(model=model), timeout=self.timeout,
                                            metadata=self.metadata)

    async def explain_clip(self, clip: bytes | str | Path, **options) -> AsyncIterator[pb.Explanation]:
        async for response in self.explain_clip_events(clip, **options):
            if response.WhichOneof("event") == "explanation":
                yield response.explanation

    async def explain_clip_events(self, clip: bytes | str | Path, **options) -> AsyncIterator[pb.ClipResponse]:
        async for response in self.stub.ExplainClip(clip_request(clip, **options), timeout=self.timeout,
                                                    metadata=self.metadata):
            yield response

    async def explain_frames(self, frames: Iterable[np.ndarray], fps: float, speed: float = 1.0,
                             **options) -> AsyncIterator[pb.StreamResponse]:
        async def requests():
            # Pacing sleeps must not block the event loop: pace here, send unpaced.
            started = time.perf_counter()
            for index, request in enumerate(stream_requests(frames, fps, speed=0, **options)):
                if speed > 0 and index > 0:
                    await asyncio.sleep(max(0.0, started + (index - 1) / (fps * speed) - time.perf_counter()))
                yield request

        async for response in self.stub.StreamExplain(requests(), timeout=self.timeout, metadata=self.metadata):
            yield response

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.close()
