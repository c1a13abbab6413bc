"""Server configuration and limits: one typed dataclass, every value checked with a message naming it."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from staa_serve.models.attention import IMPLEMENTATIONS
from staa_serve.models.devices import check_device_name, check_dtype_name
from staa_serve.server.model_set import ModelSpec, check_unique_names

MIB = 1 << 20
MAX_BATCH = 64  # windows per forward: the GPU batches the benchmarks measure (1, 8, 32, 64)

# Every number a setting takes, with its range (inclusive). gRPC takes message sizes as 32-bit ints;
# the rest are bounds past which a value is a typo, not a deployment. A setting from a flag, STAA_*
# or a TOML file is checked here, finite or refused (NaN and infinity pass no comparison).
RANGES: dict[str, tuple[float, float]] = {
    "port": (0, 65535), "metrics_port": (0, 65535),
    "max_message_bytes": (64 << 10, (1 << 31) - 1), "max_clip_bytes": (1, (1 << 31) - 2),
    "max_frame_width": (16, 16384), "max_frame_height": (16, 16384), "max_clip_frames": (1, 1_000_000),
    "max_streams": (1, 10_000), "max_streams_per_peer": (1, 10_000), "stream_config_seconds": (0.1, 3600),
    "max_clip_requests": (1, 1024), "max_batch": (1, MAX_BATCH),
    "max_batch_wait_ms": (0, 1000), "max_pending_frames": (1, 100_000),
    "max_buffered_bytes": (1, 1 << 40), "max_stream_buffered_bytes": (1, 1 << 40),
    "stream_idle_seconds": (0.1, 86_400), "max_stride": (1, 1000), "max_top_k": (1, 1000), "default_top_k": (1, 1000),
    "default_ack_every": (1, 1_000_000), "decode_workers": (1, 256), "clip_decode_workers": (1, 256),
    "max_robustness_jobs": (1, 1024), "default_robustness_every": (1, 1_000_000), "max_robustness_epsilon": (1, 255),
    "max_robustness_steps": (1, 1000), "grace_seconds": (0, 86_400), "ray_replicas": (1, 1024),
}


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    # The models served (server/model_set.py): ``model`` is the default, ``more_models`` the others,
    # each "NAME=DIR_OR_ID" or "DIR_OR_ID" (registry name, local directory or cached hub id; served
    # under its model id); model None = the shipped default.
    model: str | None = None
    more_models: tuple[str, ...] = ()
    # The model's attention (models/attention.py): "fused" (SDPA, STAA's rows recomputed beside it)
    # or "eager" (probabilities materialised: the oracle the fused path is tested against).
    attention: str = "fused"
    # Where the model runs and in what precision (models/devices.py): auto = CUDA + bfloat16 where
    # a GPU is visible, else the CPU in float32.
    device: str = "auto"
    dtype: str = "auto"
    # Transport limit, set on both sides. Kept above max_clip_bytes so that an oversized clip
    # reaches our handler and gets INVALID_ARGUMENT with this message, not gRPC's generic one.
    max_message_bytes: int = 64 * MIB
    max_clip_bytes: int = 48 * MIB
    max_frame_width: int = 4096
    max_frame_height: int = 4096
    max_clip_frames: int = 10_000
    max_streams: int = 32  # live streams open at once; beyond, RESOURCE_EXHAUSTED
    # Live streams one peer (client address, any port) may hold, so no single client takes every
    # live place (at most max_streams).
    max_streams_per_peer: int = 16
    max_clip_requests: int = 8  # ExplainClip calls in flight at once; beyond, RESOURCE_EXHAUSTED
    # Scheduling (ARCHITECTURE §8): windows of all requests share forwards of up to max_batch
    # windows; a window waits at most max_batch_wait_ms for company.
    max_batch: int = 8  # at most MAX_BATCH: 64 TimeSformer-base windows are 0.3 GB of float input
    max_batch_wait_ms: float = 2.0
    # A live stream's frames not yet processed; beyond, the oldest is dropped (Ack.dropped).
    # 64 frames is about 2.5 s at 25 fps: two windows' span at the default stride.
    max_pending_frames: int = 64
    # Memory budgets in bytes (server/budget.py): queued live frames, clip bodies and decoded
    # windows, server-wide and per live stream. The per-stream budget holds at least one largest
    # frame; the worst case over idle is in the README ("Limits and fairness").
    max_buffered_bytes: int = 768 * MIB
    max_stream_buffered_bytes: int = 128 * MIB
    stream_idle_seconds: float = 30.0  # a live stream without a frame this long is closed
    # A live stream must send its StreamConfig this soon after it opens: a stream that sends nothing
    # holds a live place, so it gets less time than a configured stream between two frames.
    stream_config_seconds: float = 5.0
    max_stride: int = 64
    max_top_k: int = 20
    default_top_k: int = 5
    default_ack_every: int = 16
    decode_workers: int = 2  # live frames only; clip calls never take these threads
    clip_decode_workers: int = 1  # clip calls' decoders, each holding a thread only while it decodes
    # decord may crash the whole process on malformed bytes (a truncated AVI segfaults it; the
    # fuzz suite found this), so clients may ask for it only where the operator trusts them.
    allow_decord: bool = False
    # Robustness lane (ARCHITECTURE §6): windows queued or running server-wide before further
    # requests for scores are answered "skipped"; the default every-n-th window; request caps.
    max_robustness_jobs: int = 4
    default_robustness_every: int = 4
    max_robustness_epsilon: int = 64  # /255
    max_robustness_steps: int = 20
    grace_seconds: float = 10.0
    # Operations: metrics on their own port (None = off, 0 = any free port); TLS when both PEM
    # files are given; bearer-token auth on every RPC but health when a token is set.
    metrics_port: int | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    auth_token: str | None = None
    # Model workers as a Ray Serve deployment (server/ray_backend.py): off by default; with no
    # address, a private single-node Ray on 127.0.0.1; replicas default to one per GPU (one on CPU).
    # Logs (server/access_log.py): level and format of every line, one access line per RPC at INFO.
    log_level: str = "INFO"
    log_format: str = "text"
    otlp_endpoint: str | None = None  # OpenTelemetry traces (server/tracing.py); OTEL_EXPORTER_OTLP_ENDPOINT too
    ray: bool = False
    ray_address: str | None = None
    ray_replicas: int | None = None

    def __post_init__(self):
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"ServerConfig.{name} must be a finite number in {_range(name)}, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"ServerConfig.{name} must be in {_range(name)}, got {value!r}")
        for name, check in (("device", check_device_name), ("dtype", check_dtype_name)):
            try:
                check(getattr(self, name))
            except ValueError as error:
                raise ValueError(f"ServerConfig.{error}") from None
        if self.attention not in IMPLEMENTATIONS:
            raise ValueError(f"ServerConfig.attention must be one of {', '.join(IMPLEMENTATIONS)}, got {self.attention!r}")
        try:
            check_unique_names(self.model_specs())
        except ValueError as error:
            raise ValueError(f"ServerConfig.model: {error}") from None
        if self.max_clip_bytes >= self.max_message_bytes:
            raise ValueError(
                f"ServerConfig.max_clip_bytes={self.max_clip_bytes} must be below "
                f"max_message_bytes={self.max_message_bytes} (room for the rest of the request)"
            )
        largest_frame = self.max_frame_width * self.max_frame_height * 3
        if self.max_stream_buffered_bytes < largest_frame:
            raise ValueError(f"ServerConfig.max_stream_buffered_bytes={self.max_stream_buffered_bytes} must hold one "
                             f"largest frame ({self.max_frame_width}x{self.max_frame_height} RGB24 = {largest_frame})")
        if self.max_buffered_bytes < self.max_stream_buffered_bytes:
            raise ValueError(f"ServerConfig.max_buffered_bytes={self.max_buffered_bytes} must be at least "
                             f"max_stream_buffered_bytes={self.max_stream_buffered_bytes}")
        if self.default_top_k > self.max_top_k:
            raise ValueError(f"ServerConfig.default_top_k={self.default_top_k} exceeds max_top_k={self.max_top_k}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"ServerConfig.log_level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")
        if self.log_format not in ("text", "json"):
            raise ValueError(f"ServerConfig.log_format must be text or json, got {self.log_format!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("ServerConfig.tls_cert and tls_key go together (both PEM files, or neither)")
        if self.auth_token is not None and not self.auth_token.strip():
            raise ValueError("ServerConfig.auth_token must not be empty")

    def model_specs(self) -> list[ModelSpec]:
        """Every served model, the default first."""
        return [ModelSpec.parse(self.model), *(ModelSpec.parse(spec) for spec in self.more_models)]

    def channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]


def _range(name: str) -> str:
    return "[" + ", ".join(f"{bound:g}" if isinstance(bound, float) else str(bound) for bound in RANGES[name]) + "]"


_UNRANGED = {item.name for item in fields(ServerConfig) if item.type.removesuffix(" | None") in ("int", "float")} ^ set(RANGES)
if _UNRANGED:
    raise TypeError(f"every number ServerConfig takes needs a range in RANGES: {', '.join(sorted(_UNRANGED))}")
