"""Logs an operator can read and a log pipeline can parse: one access line per RPC, text or JSON.

``AccessLogInterceptor`` writes one INFO line on the ``staa.access`` logger when a call ends: the
method, the peer, the status, the duration, the windows explained and the model. Health checks and
reflection (load balancers and tools probe them constantly) get none. ``configure_logging`` sets
the level and the format (``text`` or ``json``: one object per line, the access fields as keys).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Callable

import grpc

from server.auth import HEALTH_PREFIX
from server.wire import HANDLER_BY_SHAPE

ACCESS = logging.getLogger("staa.access")
UNLOGGED_PREFIXES = (HEALTH_PREFIX, "/grpc.reflection.")
ACCESS_FIELDS = ("rpc", "peer", "status", "duration_ms", "windows", "model")
LOG_FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the access fields when present, and
    the traceback of a server fault."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage()}
        entry.update({field: getattr(record, field) for field in ACCESS_FIELDS if hasattr(record, field)})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO", form: str = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if form == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _windows_in(response) -> int:
    """1 when a streamed response carries an explanation (ClipResponse, StreamResponse)."""
    oneof = getattr(response, "WhichOneof", None)
    try:
        return int(oneof is not None and oneof("event") == "explanation")
    except ValueError:  # a message without an `event` oneof
        return 0


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, model: Callable[[], str]):
        self.model = model  # the served model's id, "" while it loads

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNLOGGED_PREFIXES):
            return handler
        behaviour = (handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream)
        log = self._log

        if handler.response_streaming:
            async def logged(request, context):
                started, windows, status = time.perf_counter(), 0, None
                try:
                    async for response in behaviour(request, context):
                        windows += _windows_in(response)
                        yield response
                except BaseException as error:
                    status = _status_of(error, context)
                    raise
                finally:
                    log(method, context, status, started, windows)
        else:
            async def logged(request, context):
                started, status = time.perf_counter(), None
                try:
                    return await behaviour(request, context)
                except BaseException as error:
                    status = _status_of(error, context)
                    raise
                finally:
                    log(method, context, status, started, 0)

        make = HANDLER_BY_SHAPE[(handler.request_streaming, handler.response_streaming)]
        return make(logged, request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer)

    def _log(self, method: str, context, status: str | None, started: float, windows: int) -> None:
        if status is None:
            code = context.code()
            status = "OK" if code is None else code.name
        duration_ms = round((time.perf_counter() - started) * 1e3, 1)
        fields = {"rpc": method, "peer": context.peer(), "status": status, "duration_ms": duration_ms,
                  "windows": windows, "model": self.model()}
        ACCESS.info("%s %s %s %.1f ms windows=%d model=%s", method, fields["peer"], status, duration_ms, windows,
                    fields["model"], extra=fields)


def _status_of(error: BaseException, context) -> str:
    """The status a call ended with when its handler raised: the one it aborted with, else CANCELLED
    (the client left) or UNKNOWN."""
    code = context.code()
    if code is not None:
        return code.name
    return "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"
