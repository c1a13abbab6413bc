"""staa.v1 stubs: ``explainer_pb2`` (messages) and ``explainer_pb2_grpc`` (service)."""

from pathlib import Path

from staa.stubs import ensure_stubs

ensure_stubs(Path(__file__).resolve().parent)
