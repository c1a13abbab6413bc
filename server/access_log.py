"""Logs an operator can read and a log pipeline can parse: one access line per RPC, text or JSON.

``AccessLogInterceptor`` writes one INFO line on the ``staa.access`` logger when a call ends: the
method, the peer, the status, the duration, the windows explained and the model. Health checks and
reflection (load balancers and tools probe them constantly) get none. ``configure_logging`` sets
the level and the format (``text`` or ``json``: one object per line, the access fields as keys).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable


from staa_serve.server.wire import CallObserver

ACCESS = logging.getLogger("staa.access")
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


class AccessLogInterceptor(CallObserver):
    def __init__(self, model: Callable[[], str]):
        self.model = model  # the model the call resolved to (server/model_set.py), "" when it named none

    def started(self, method: str, context) -> tuple[float, str]:
        # The peer is read now: once a call is cancelled its core object may be gone, and reading it
        # then crashed the process (a segmentation fault, seen when a client vanished mid-stream).
        return time.perf_counter(), context.peer()

    def ended(self, method: str, state: tuple[float, str], context, status: str, windows: int) -> None:
        began, peer = state
        duration_ms = round((time.perf_counter() - began) * 1e3, 1)
        fields = {"rpc": method, "peer": peer, "status": status, "duration_ms": duration_ms, "windows": windows,
                  "model": self.model()}
        ACCESS.info("%s %s %s %.1f ms windows=%d model=%s", method, peer, status, duration_ms, windows,
                    fields["model"], extra=fields)
