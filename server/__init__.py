"""gRPC side of STAA Serve: a thin servicer over plain modules (sessions, engine, conversion)."""

from staa import require_extra

require_extra("server", "torch", "transformers", "prometheus_client")
