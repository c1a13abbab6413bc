"""Open Inference Protocol (OIP v2) stubs: ``grpc_predict_v2_pb2`` and ``grpc_predict_v2_pb2_grpc``
(package ``inference``), generated like ``staa.v1``'s."""

from pathlib import Path

from staa.stubs import ensure_stubs

ensure_stubs(Path(__file__).resolve().parent)
