"""Server lifecycle in one place: register, bind 127.0.0.1, start, load + warm, SERVING; SIGTERM drains.

Health reports NOT_SERVING from the moment the port opens until the model is loaded and
warm, and again while draining; RPCs that arrive before then get UNAVAILABLE. Draining: new calls
get UNAVAILABLE, live streams finish the frames they queued and end UNAVAILABLE ("draining"),
clip calls run on; whatever is still running when the grace period ends is cancelled.
"""

from __future__ import annotations

from staa import require_extra

# Before anything the [server] extra brings: a base install's staa-serve says which extra it lacks.
require_extra("server", "torch", "transformers", "prometheus_client")

import argparse  # noqa: E402
import asyncio
import logging
import os
import signal
import socket
import sys
import threading
import tomllib
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from pathlib import Path

from staa_serve.models.attention import IMPLEMENTATIONS
from staa_serve.models.pipeline import code_version
from staa_serve.models.registry import load_model
from staa_serve.server.access_log import LOG_FORMATS, AccessLogInterceptor, configure_logging
from staa_serve.server.auth import BearerTokenInterceptor
from staa_serve.server.config import ServerConfig
from staa_serve.server.engine import ExplainEngine
from staa_serve.server.memory import map_large_blocks_separately
from staa_serve.server.metrics import RpcMetricsInterceptor, ServerMetrics
from staa_serve.server.model_set import ModelSpec, call_model
from staa_serve.server.oip import INFERENCE_SERVICE, add_inference_service
from staa_serve.server.robustness_lane import job_slots
from staa_serve.server.servicer import VideoExplainerServicer
from staa_serve.server.tracing import TracingInterceptor, tracer_for
from staa_serve.server.wire import add_servicer
from staa import package_version
from staa.v1 import explainer_pb2 as pb

logger = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["VideoExplainer"].full_name


@dataclass
class RunningServer:
    server: grpc.aio.Server
    servicer: VideoExplainerServicer
    health: health.aio.HealthServicer
    port: int
    metrics: ServerMetrics
    metrics_port: int | None = None
    tracer: object | None = None  # server/tracing.py, when tracing is configured
    ray: object | None = None  # server/ray_backend.py's RayBackend, with --ray (stopped after the engines)

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        await self.set_serving(False)
        self.servicer.drain()
        if not await self.servicer.calls.wait_idle(grace):
            self.servicer.calls.end_all(grace)  # each straggler answers UNAVAILABLE naming the grace period
            await self.servicer.calls.wait_idle(1.0)
        await self.server.stop(0.5)
        for engine in self.servicer.models.engines():
            engine.shutdown()
        if self.ray is not None:
            self.ray.stop()
        self.metrics.close()


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def enable_reflection(server: grpc.aio.Server, services: tuple[str, ...]) -> None:
    """Server reflection as ``grpc.reflection.v1`` (what current grpcurl, Postman and grpc-js tools ask
    for) and ``v1alpha`` (older tools). grpcio-reflection ships only v1alpha; v1's messages are the
    same fields under another package name, so one servicer answers both method paths."""
    names = (*services, reflection.SERVICE_NAME, REFLECTION_V1)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo, request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(REFLECTION_V1, {"ServerReflectionInfo": handler}),))


async def start_server(config: ServerConfig, span_exporter=None) -> RunningServer:
    """Bind and start; the model loads in the background (see ``load_and_warm``). ``span_exporter``
    (tests) turns tracing on with that exporter."""
    metrics = ServerMetrics()
    tracer = tracer_for(config.otlp_endpoint, span_exporter)
    # First: these see the calls the auth interceptor refuses too.
    interceptors = [AccessLogInterceptor(call_model), RpcMetricsInterceptor(metrics, call_model)]
    if tracer is not None:
        interceptors.append(TracingInterceptor(tracer))
    if config.auth_token is not None:
        interceptors.append(BearerTokenInterceptor(
            config.auth_token, on_denied=lambda: metrics.observe_error("", grpc.StatusCode.UNAUTHENTICATED)))
    server = grpc.aio.server(options=config.channel_options(), interceptors=interceptors)
    servicer = VideoExplainerServicer(config, metrics)
    add_servicer(servicer, server)
    add_inference_service(servicer, server, code_version())
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection(server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                               INFERENCE_SERVICE))
    address = f"{config.host}:{config.port}"
    # What cannot bind or load ends the server with one line naming the setting (serve's caller prints it).
    try:
        credentials = grpc.ssl_server_credentials([(Path(config.tls_key).read_bytes(),
                                                    Path(config.tls_cert).read_bytes())]) if config.tls_cert else None
    except OSError as error:
        raise StartupError(f"--tls-cert/--tls-key: {error}") from None
    try:
        socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise StartupError(f"--host {config.host}: not an address of this host ({error})") from None
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as error:  # gRPC's "Failed to bind": an address this host does not have, or a port in use
        port, reason = 0, str(error)
    else:
        reason = "address in use or not this host's"
    if port == 0:
        raise StartupError(f"--host {config.host} --port {config.port}: could not bind ({reason})")
    try:
        metrics_port = metrics.serve(config.host, config.metrics_port) if config.metrics_port is not None else None
    except OSError as error:
        raise StartupError(f"--metrics-port {config.metrics_port} on --host {config.host}: {error}") from None
    running = RunningServer(server, servicer, health_servicer, port, metrics, metrics_port, tracer)
    await running.set_serving(False)
    await server.start()
    return running


async def load_and_warm(running: RunningServer, config: ServerConfig) -> None:
    """Every model in --model order, each on its own engine (with --ray, on its own Ray Serve
    application); SERVING once all are warm."""
    specs = config.model_specs()
    robustness_slots = job_slots(config.max_robustness_jobs)  # one budget for every model's lane

    def start_ray():
        from staa_serve.server.ray_backend import RayBackend  # Ray is imported only when asked for

        return RayBackend(config.ray_address, config.ray_replicas, config.max_batch, config.max_batch_wait_ms,
                          config.attention, config.dtype, models=len(specs))

    def load(spec: ModelSpec) -> ExplainEngine:
        loaded = load_model(spec.source, device=config.device, attention=config.attention, dtype=config.dtype)
        name = spec.name or loaded.model_id
        batcher = running.ray.deploy(spec.source, name) if running.ray is not None else None
        engine = ExplainEngine(loaded, config, running.metrics, batcher=batcher, tracer=running.tracer, name=name,
                               robustness_slots=robustness_slots)
        engine.warm_up()
        return engine

    if config.ray:
        try:
            running.ray = await asyncio.to_thread(start_ray)
        except Exception as error:
            raise StartupError(f"could not start Ray: {type(error).__name__}: {error}") from error
    for spec in specs:
        try:
            engine = await asyncio.to_thread(load, spec)
        except Exception as error:
            raise ModelLoadError(spec, error) from error
        try:
            running.servicer.attach(engine)
        except ValueError:  # two unnamed models with one model id
            engine.shutdown()
            raise
    running.servicer.all_loaded()
    await running.set_serving(True)


async def serve(config: ServerConfig, announce=print) -> None:
    """Run until SIGTERM/SIGINT, then drain: NOT_SERVING, finish in-flight calls within the grace period."""
    running = await start_server(config)
    sources = ", ".join(spec.source or "default" for spec in config.model_specs())
    announce(f"STAA Serve listening on {config.host}:{running.port}{' (TLS)' if config.tls_cert else ''} "
             f"(loading model {sources})")
    if running.metrics_port is not None:
        announce(f"metrics on http://{config.host}:{running.metrics_port}/metrics")
    try:
        await load_and_warm(running, config)
    except Exception as error:  # a refused or broken checkpoint: one clear line, the details at debug level
        logger.debug("model load failed", exc_info=error)
        await running.stop(0)
        if isinstance(error, (ModelLoadError, StartupError)):
            raise StartupError(str(error)) from None
        raise StartupError(f"could not load model {sources!r}: {type(error).__name__}: {error}") from None
    described = []
    for engine in running.servicer.models.engines():
        loaded = engine.loaded
        served_as = f" as {engine.name}" if engine.name != loaded.model_id else ""
        described.append(
            f"model {loaded.model_id}{served_as} ({loaded.architecture}, {loaded.num_frames} frames, grid "
            f"{loaded.grid[0]}x{loaded.grid[1]}, {loaded.adapter.implementation} attention, {loaded.device}, "
            f"{str(loaded.dtype).removeprefix('torch.')})")
    announce(f"STAA Serve ready on {config.host}:{running.port}: {'; '.join(described)}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    announce(f"STAA Serve draining (grace {config.grace_seconds:g} s, "
             f"{running.servicer.sessions.active} live streams, {running.servicer.clips.active} clip calls)")
    await running.stop(config.grace_seconds)
    announce("STAA Serve stopped")


class ModelLoadError(Exception):
    """One of the served models did not load: the message names it and says why, in one line."""

    def __init__(self, spec: ModelSpec, cause: Exception):
        source = spec.source or "default"
        named = f"{spec.name!r} ({source})" if spec.name else repr(source)
        super().__init__(f"could not load model {named}: {type(cause).__name__}: {cause}")


class StartupError(Exception):
    """The server could not start serving (its model did not load); the message is one line."""


class BackgroundServer:
    """A real server on its own event-loop thread (tests, demos): ``with BackgroundServer(cfg) as s: s.port``."""

    def __init__(self, config: ServerConfig, wait_ready: bool = True, span_exporter=None):
        self.config = config
        self.wait_ready = wait_ready
        self.span_exporter = span_exporter
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="staa-server", daemon=True)
        self.running: RunningServer | None = None

    def __enter__(self) -> "BackgroundServer":
        self.thread.start()
        self.running = self._call(start_server(self.config, self.span_exporter))
        ready = asyncio.run_coroutine_threadsafe(load_and_warm(self.running, self.config), self.loop)
        if self.wait_ready:
            ready.result(timeout=300)
        return self

    def _call(self, coroutine, timeout: float = 300):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=timeout)

    @property
    def port(self) -> int:
        return self.running.port

    @property
    def target(self) -> str:
        return f"{self.config.host}:{self.port}"

    @property
    def servicer(self) -> VideoExplainerServicer:
        return self.running.servicer

    def __exit__(self, *exc_info) -> None:
        self._call(self.running.stop(grace=1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


ENVIRONMENT_PREFIX = "STAA_"


class RepeatedFlag(argparse.Action):
    """A flag given several times collects its values; values given on the command line replace the
    default rather than add to it (so the command line wins over ``STAA_*``, whose value for a repeated
    flag is a comma-separated list)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, self.dest)
        if given is None or given is self.default:
            given = []
        setattr(namespace, self.dest, [*given, values])


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
NOT_SETTINGS = ("help", "version", "config")  # flags that are not server settings


def _settings(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Each server setting's long flag without its dashes (``max-batch``) -> its action."""
    return {flags[0][2:]: action for action in parser._actions
            if (flags := [flag for flag in action.option_strings if flag.startswith("--")])
            and action.dest not in NOT_SETTINGS}


def _setting_value(parser: argparse.ArgumentParser, action: argparse.Action, raw, where: str):
    """``raw`` (an environment string, or a config file's value: string, number, boolean or list) as
    ``action``'s value; a bad one ends the parse naming ``where``, as the command line would."""
    flag = action.option_strings[-1]
    if isinstance(action, RepeatedFlag):
        items = raw if isinstance(raw, list) else str(raw).split(",")
        return [str(item).strip() for item in items if str(item).strip()] or None
    if action.nargs == 0:  # a switch
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() not in TRUE_WORDS + FALSE_WORDS:
            parser.error(f"{where}={raw!r} is not a boolean (1/0, true/false, yes/no, on/off)")
        return str(raw).lower() in TRUE_WORDS
    if isinstance(raw, (bool, list, dict)):
        parser.error(f"{where}={raw!r} is not a valid {flag} value")
    try:
        value = action.type(str(raw)) if action.type else str(raw)
    except (TypeError, ValueError):
        parser.error(f"{where}={raw!r} is not a valid {flag} value")
    if action.choices is not None and value not in action.choices:
        parser.error(f"{where}={raw!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def defaults_from_file(parser: argparse.ArgumentParser, path: str) -> None:
    """Server settings from a TOML file, one key per flag (``max-batch = 16`` or ``max_batch = 16``;
    ``model = ["default", "tiny=/models/tiny"]``): how a deployment keeps its configuration in one
    place. Unknown keys and bad values are refused naming the file and the key."""
    try:
        with open(path, "rb") as handle:
            table = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        parser.error(f"--config {path}: {error}")
    settings = _settings(parser)
    for key, raw in table.items():
        action = settings.get(key.replace("_", "-"))
        if action is None:
            parser.error(f"{path}: unknown setting {key!r} (keys are staa-serve's flags: max-batch, model, ...)")
        parser.set_defaults(**{action.dest: _setting_value(parser, action, raw, f"{path}: {key}")})


def defaults_from_environment(parser: argparse.ArgumentParser, environ=os.environ) -> None:
    """Every ``--some-flag`` also reads ``STAA_SOME_FLAG`` (a flag on the command line wins): how
    containers and orchestrators configure a server. A bad value is refused naming the variable."""
    for setting, action in _settings(parser).items():
        name = ENVIRONMENT_PREFIX + setting.upper().replace("-", "_")
        if name in environ:
            parser.set_defaults(**{action.dest: _setting_value(parser, action, environ[name], name)})


def parse_args(argv=None) -> ServerConfig:
    parser = argparse.ArgumentParser(prog="staa-serve", description="STAA Serve: explain video over gRPC.")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=50051, help="port (0 = any free port)")
    parser.add_argument("--model", action=RepeatedFlag, default=None, metavar="[NAME=]DIR_OR_ID",
                        help="registry name, local directory or cached hub id; repeat it to serve several models "
                             "(requests choose by NAME, or by model id; the first is the default)")
    parser.add_argument("--attention", choices=IMPLEMENTATIONS, default=ServerConfig.attention,
                        help="fused: the fastest attention, STAA's rows recomputed exactly beside it (default); "
                             "eager: attention probabilities materialised (the reference to check fused against)")
    parser.add_argument("--device", default=ServerConfig.device,
                        help="auto (CUDA where visible, else CPU), cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default=ServerConfig.dtype, choices=("auto", "float32", "bfloat16", "float16"),
                        help="weights and activations (auto: bfloat16 on CUDA, float32 on CPU); STAA's maths stay float32")
    parser.add_argument("--max-streams", type=int, default=ServerConfig.max_streams)
    parser.add_argument("--max-clip-bytes", type=int, default=ServerConfig.max_clip_bytes)
    parser.add_argument("--max-message-bytes", type=int, default=ServerConfig.max_message_bytes)
    parser.add_argument("--max-clip-frames", type=int, default=ServerConfig.max_clip_frames)
    parser.add_argument("--max-clip-requests", type=int, default=ServerConfig.max_clip_requests)
    parser.add_argument("--max-batch", type=int, default=ServerConfig.max_batch, help="windows per forward")
    parser.add_argument("--max-batch-wait-ms", type=float, default=ServerConfig.max_batch_wait_ms)
    parser.add_argument("--max-pending-frames", type=int, default=ServerConfig.max_pending_frames,
                        help="live frames queued per stream before the oldest are dropped")
    parser.add_argument("--max-buffered-bytes", type=int, default=ServerConfig.max_buffered_bytes,
                        help="server-wide memory budget for queued frames, clip bodies and decoded windows "
                             f"(default {ServerConfig.max_buffered_bytes >> 20} MiB)")
    parser.add_argument("--max-stream-buffered-bytes", type=int, default=ServerConfig.max_stream_buffered_bytes,
                        help=f"one live stream's share (default {ServerConfig.max_stream_buffered_bytes >> 20} MiB)")
    parser.add_argument("--decode-workers", type=int, default=ServerConfig.decode_workers,
                        help="threads decoding live frames (clip calls never use them)")
    parser.add_argument("--clip-decode-workers", type=int, default=ServerConfig.clip_decode_workers,
                        help="threads decoding clip calls")
    parser.add_argument("--max-frame-width", type=int, default=ServerConfig.max_frame_width)
    parser.add_argument("--max-frame-height", type=int, default=ServerConfig.max_frame_height)
    parser.add_argument("--stream-idle-seconds", type=float, default=ServerConfig.stream_idle_seconds,
                        help="a configured live stream without a frame this long is closed")
    parser.add_argument("--stream-config-seconds", type=float, default=ServerConfig.stream_config_seconds,
                        help="a live stream must send its StreamConfig this soon after it opens")
    parser.add_argument("--max-streams-per-peer", type=int, default=ServerConfig.max_streams_per_peer,
                        help="live streams one client address may hold (at most --max-streams)")
    parser.add_argument("--allow-decord", action="store_true",
                        help="let clients pick decoder 'decord' (it can crash on malformed bytes: trusted clients only)")
    parser.add_argument("--ray", action="store_true",
                        help="run the model workers as a Ray Serve deployment (a private Ray on 127.0.0.1 "
                             "unless --ray-address is given)")
    parser.add_argument("--ray-address", default=None, help="join this running Ray cluster (e.g. 10.0.0.5:6379)")
    parser.add_argument("--ray-replicas", type=int, default=None, help="replicas (default: one per GPU, one on CPU)")
    parser.add_argument("--grace", type=float, default=ServerConfig.grace_seconds, help="drain grace period, s")
    parser.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics here (0 = any)")
    parser.add_argument("--tls-cert", default=None, help="PEM certificate chain (with --tls-key: serve TLS)")
    parser.add_argument("--tls-key", default=None, help="PEM private key")
    parser.add_argument("--auth-token-file", default=None,
                        help="file holding the bearer token every RPC but health must send")
    parser.add_argument("--log-level", default=ServerConfig.log_level, type=str.upper,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="one access line per RPC at INFO")
    parser.add_argument("--log-format", default=ServerConfig.log_format, choices=LOG_FORMATS,
                        help="text, or json: one object per line")
    parser.add_argument("--otlp-endpoint", default=None,
                        help="send OpenTelemetry traces to this OTLP/gRPC endpoint (or set OTEL_EXPORTER_OTLP_ENDPOINT)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    parser.add_argument("--config", default=None, metavar="FILE.toml",
                        help="settings from a TOML file, one key per flag (or STAA_CONFIG); "
                             "the environment's STAA_* override it and the command line overrides both")
    config_file = parser.parse_known_args(argv)[0].config or os.environ.get(ENVIRONMENT_PREFIX + "CONFIG")
    if config_file:
        defaults_from_file(parser, config_file)
    defaults_from_environment(parser)
    args = parser.parse_args(argv)
    try:
        token = Path(args.auth_token_file).read_text().strip() if args.auth_token_file else None
        models = args.model or [None]
        return ServerConfig(host=args.host, port=args.port, model=models[0], more_models=tuple(models[1:]),
                            attention=args.attention,
                            device=args.device, dtype=args.dtype,
                            max_streams=args.max_streams,
                            max_clip_bytes=args.max_clip_bytes, max_message_bytes=args.max_message_bytes,
                            max_clip_frames=args.max_clip_frames, max_clip_requests=args.max_clip_requests,
                            max_batch=args.max_batch, max_batch_wait_ms=args.max_batch_wait_ms,
                            max_pending_frames=args.max_pending_frames, stream_idle_seconds=args.stream_idle_seconds,
                            stream_config_seconds=args.stream_config_seconds,
                            max_streams_per_peer=args.max_streams_per_peer,
                            max_buffered_bytes=args.max_buffered_bytes,
                            max_stream_buffered_bytes=args.max_stream_buffered_bytes,
                            decode_workers=args.decode_workers, clip_decode_workers=args.clip_decode_workers,
                            max_frame_width=args.max_frame_width, max_frame_height=args.max_frame_height,
                            allow_decord=args.allow_decord, grace_seconds=args.grace, metrics_port=args.metrics_port, tls_cert=args.tls_cert,
                            tls_key=args.tls_key, auth_token=token,
                            ray=args.ray or args.ray_address is not None, ray_address=args.ray_address,
                            ray_replicas=args.ray_replicas, log_level=args.log_level, log_format=args.log_format,
                            otlp_endpoint=args.otlp_endpoint)
    except (ValueError, OSError) as error:
        parser.error(str(error))


def main(argv=None) -> None:
    config = parse_args(argv)
    configure_logging(config.log_level, config.log_format)
    # Weight-loading progress bars are for terminals, not for a server's log.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    map_large_blocks_separately()
    try:
        asyncio.run(serve(config, announce=lambda line: print(line, flush=True)))
    except StartupError as error:
        print(f"staa-serve: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
