"""Server configuration and limits: one typed dataclass, every value checked with a message naming it."""

from __future__ import annotations

from dataclasses import dataclass, fields

MIB = 1 << 20


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50051
    model: str | None = None  # registry name, local directory or cached hub id; None = shipped default
    # Transport limit, set on both sides. Kept above max_clip_bytes so that an oversized clip
    # reaches our handler and gets INVALID_ARGUMENT with this message, not gRPC's generic one.
    max_message_bytes: int = 64 * MIB
    max_clip_bytes: int = 48 * MIB
    max_frame_width: int = 4096
    max_frame_height: int = 4096
    max_clip_frames: int = 10_000
    max_streams: int = 32
    max_stride: int = 64
    max_top_k: int = 20
    default_top_k: int = 5
    default_ack_every: int = 16
    decode_workers: int = 2
    # Robustness lane (ARCHITECTURE §6): windows queued or running server-wide before further
    # requests for scores are answered "skipped"; the default every-n-th window; request caps.
    max_robustness_jobs: int = 4
    default_robustness_every: int = 4
    max_robustness_epsilon: int = 64  # /255
    max_robustness_steps: int = 20
    grace_seconds: float = 10.0

    def __post_init__(self):
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "int" and item.name != "port" and value < 1:
                raise ValueError(f"ServerConfig.{item.name} must be >= 1, got {value}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"ServerConfig.port must be in [0, 65535], got {self.port}")
        if self.max_clip_bytes >= self.max_message_bytes:
            raise ValueError(
                f"ServerConfig.max_clip_bytes={self.max_clip_bytes} must be below "
                f"max_message_bytes={self.max_message_bytes} (room for the rest of the request)"
            )
        if self.default_top_k > self.max_top_k:
            raise ValueError(f"ServerConfig.default_top_k={self.default_top_k} exceeds max_top_k={self.max_top_k}")
        if self.grace_seconds < 0:
            raise ValueError(f"ServerConfig.grace_seconds must be >= 0, got {self.grace_seconds}")

    def channel_options(self) -> list[tuple[str, int]]:
        return [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
        ]
