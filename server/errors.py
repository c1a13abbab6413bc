"""Domain errors -> gRPC status codes, in one table."""

from __future__ import annotations

import logging

import grpc

from staa_serve.models.errors import InvalidInput, UnsupportedModel
from staa_serve.server.model_set import ModelNotFound

logger = logging.getLogger(__name__)


class Overloaded(Exception):
    """A server-wide admission limit is reached; the client may retry later."""


class NotReady(Exception):
    """The model is still loading or warming up."""


class Draining(Exception):
    """The server is shutting down: no new work; a live stream ends after what it had queued."""


class IdleTimeout(Exception):
    """A live stream sent no frame for ``stream_idle_seconds``."""


class Unauthenticated(Exception):
    """Bearer-token auth is on and the call's ``authorization`` metadata is missing or wrong."""


STATUS_BY_ERROR: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (UnsupportedModel, grpc.StatusCode.INVALID_ARGUMENT),
    (ModelNotFound, grpc.StatusCode.NOT_FOUND),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (NotReady, grpc.StatusCode.UNAVAILABLE),
    (Draining, grpc.StatusCode.UNAVAILABLE),
    (IdleTimeout, grpc.StatusCode.DEADLINE_EXCEEDED),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
)


# Status details travel in trailing metadata, which clients cap (16 KiB by default): past the cap the
# client gets RESOURCE_EXHAUSTED instead of the code meant. Messages quote client values through
# staa.quoted; this bound holds whatever a message says.
MAX_STATUS_CHARS = 1024


def bounded(message: str) -> str:
    more = len(message) - MAX_STATUS_CHARS
    return message if more <= 0 else f"{message[:MAX_STATUS_CHARS]}... ({more} more characters)"


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    for error_type, code in STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return code, bounded(str(error))
    logger.exception("internal error", exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); see the server log"
