"""OpenTelemetry traces, off unless configured: ``--otlp-endpoint`` or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` variables.

One span per RPC (server kind, from ``TracingInterceptor``), and under it one span per explained
window with a child per stage it went through: decode, queue, forward, attribution, postprocess
(their durations are the window's ``WindowTimings``, laid end to end back from the moment the
explanation was ready), and one span per robustness result. The tracer provider is the server's
own, not the process-global one, so several servers in one process (tests, Ray) keep their traces
apart.
"""

from __future__ import annotations

import contextvars
import os
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from staa_serve.models.pipeline import WindowExplanation
from staa_serve.server.model_set import call_model
from staa_serve.server.wire import CallObserver
from staa import package_version

TRACER_NAME = "staa.serve"
STAGES = ("decode", "queue", "forward", "attribution", "postprocess")
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# The span of the RPC this task serves (set by the interceptor, read where windows are explained).
RPC_SPAN: contextvars.ContextVar = contextvars.ContextVar("staa_rpc_span", default=None)


def tracer_for(endpoint: str | None = None, exporter: SpanExporter | None = None, environ=os.environ):
    """The server's tracer, or None when tracing is not configured. ``exporter`` (tests) is used as it is,
    synchronously; otherwise spans go in batches to the OTLP/gRPC endpoint."""
    endpoint = endpoint or next((environ[name] for name in ENDPOINT_VARIABLES if environ.get(name)), None)
    if exporter is None and endpoint is None:
        return None
    provider = TracerProvider(resource=Resource.create({"service.name": "staa-serve", "service.version": package_version()}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    return provider.get_tracer(TRACER_NAME, package_version())


def trace_window(tracer, explanation: WindowExplanation, model: str) -> None:
    """The window's span and its stages' under the RPC's span (nothing without a tracer or an RPC span)."""
    parent = RPC_SPAN.get()
    if tracer is None or parent is None:
        return
    timings = explanation.timings
    end = time.time_ns()
    start = end - int(max(timings.total_ms, sum(getattr(timings, f"{stage}_ms") for stage in STAGES)) * 1e6)
    context = trace.set_span_in_context(parent)
    window = tracer.start_span("window", context=context, start_time=start, attributes={
        "staa.window_index": explanation.index, "staa.model": model, "staa.method": explanation.method,
        "staa.aligned_to_end": explanation.aligned_to_end})
    child_context, cursor = trace.set_span_in_context(window), start
    for stage in STAGES:
        duration = int(getattr(timings, f"{stage}_ms") * 1e6)
        tracer.start_span(stage, context=child_context, start_time=cursor).end(end_time=cursor + duration)
        cursor += duration
    window.end(end_time=end)


def trace_robustness(tracer, window_index: int, milliseconds: float) -> None:
    parent = RPC_SPAN.get()
    if tracer is None or parent is None:
        return
    end = time.time_ns()
    span = tracer.start_span("robustness", context=trace.set_span_in_context(parent), start_time=end - int(milliseconds * 1e6),
                             attributes={"staa.window_index": window_index})
    span.end(end_time=end)


class TracingInterceptor(CallObserver):
    """One server span per RPC (health checks and reflection excepted), with the status it ended with."""

    def __init__(self, tracer):
        self.tracer = tracer

    def started(self, method: str, context):
        span = self.tracer.start_span(method.lstrip("/"), kind=trace.SpanKind.SERVER, attributes={
            "rpc.system": "grpc", "rpc.method": method, "net.peer.name": context.peer()})
        RPC_SPAN.set(span)  # this RPC's own task: the engine's spans find their parent here
        return span

    def ended(self, method: str, span, context, status: str, windows: int) -> None:
        span.set_attributes({"rpc.grpc.status_code": status, "staa.windows": windows, "staa.model": call_model()})
        if status != "OK":
            span.set_status(trace.Status(trace.StatusCode.ERROR, status))
        span.end()
