"""Registering the servicer so that a request that is not valid protobuf gets INVALID_ARGUMENT, and
large requests are read only after admission.

gRPC's generated registration parses requests itself and answers a parse failure with INTERNAL
("Exception deserializing request!"), which reads like a server bug. Here the parser hands the
servicer a ``MalformedRequest`` instead, and the servicer rejects it like any other bad input.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

import grpc
from google.protobuf.message import DecodeError

from staa_serve.models.errors import InvalidInput
from staa.v1 import explainer_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["VideoExplainer"]
HANDLER_BY_SHAPE = {  # (client streaming, server streaming)
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


@dataclass(frozen=True)
class MalformedRequest:
    message_type: str
    error: str


def lenient_parser(message_class):
    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except DecodeError as error:
            return MalformedRequest(message_class.DESCRIPTOR.full_name, str(error))
    return parse


def parsed(request):
    """``request``, or InvalidInput when it could not be parsed."""
    if isinstance(request, MalformedRequest):
        raise InvalidInput(f"request is not a valid {request.message_type} protobuf message ({request.error})")
    return request


# Parsing holds the GIL, and its cost is the number of fields, not the bytes: 8 MB of empty frames is
# 4 million fields and a second of a stalled event loop. So a large request's wire format is walked
# first, in a worker thread (Python code lets the loop run), and refused past these counts; only then
# is it parsed, which bounded counts make cheap.
MAX_FIELDS = 64  # fields of one message, the counted repeated field's entries apart


class Fields:
    """Fields counted while a request's wire format is walked: ``limits`` maps a repeated message field
    (``staa.v1.RawFrames.frames``) to the most entries it may have, with the setting that says so."""

    def __init__(self, limits: dict[str, tuple[int, str]]):
        self.limits = limits
        self.counts: dict[str, int] = {}
        self.spans: list[tuple[str, int, int, int]] = []  # top-level fields: (name, start, value start, end)


def _varint(data: memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data) or shift > 63:
            raise DecodeError("truncated or overlong varint")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, offset


def check_counts(data: memoryview, descriptor, fields: Fields, top: bool = True) -> None:
    """Walks one message's wire format without building it; InvalidInput past a count, DecodeError for
    bytes that are not protobuf. Visits at most the counted limits plus MAX_FIELDS per message."""
    by_number = descriptor.fields_by_number
    offset = seen = 0
    while offset < len(data):
        start = offset
        tag, offset = _varint(data, offset)
        number, wire_type = tag >> 3, tag & 7
        field = by_number.get(number)
        limit = fields.limits.get(field.full_name) if field is not None else None
        if limit is not None:
            count = fields.counts[field.full_name] = fields.counts.get(field.full_name, 0) + 1
            if count > limit[0]:
                raise InvalidInput(f"{descriptor.name}.{field.name} has more than {limit[0]} entries; {limit[1]}")
        else:
            seen += 1
            if seen > MAX_FIELDS:
                raise InvalidInput(f"{descriptor.full_name} has more than {MAX_FIELDS} fields")
        if wire_type == 0:
            offset = _varint(data, offset)[1]
        elif wire_type in (1, 5):
            offset += 8 if wire_type == 1 else 4
        elif wire_type == 2:
            length, offset = _varint(data, offset)
            if offset + length > len(data):
                raise DecodeError("a length runs past the end of the message")
            if field is not None and field.message_type is not None:
                check_counts(data[offset:offset + length], field.message_type, fields, top=False)
            if top and field is not None:
                fields.spans.append((field.name, start, offset, offset + length))
            offset += length
        else:
            raise DecodeError(f"wire type {wire_type} (groups or invalid) is not accepted")
    if offset != len(data):
        raise DecodeError("a field runs past the end of the message")


def parse_counted(data: bytes, message_class, limits: dict[str, tuple[int, str]], apart: str | None = None):
    """A large request parsed once its counts are within ``limits`` and MAX_FIELDS (see above); for a
    worker thread. InvalidInput for a count past its limit or bytes that are not the message.

    ``apart``: a top-level bytes field kept out of the parse and returned as a view into ``data``
    (``(message, view or None)``): parsing copies a bytes field, and reading it copies it again, each
    copy of a 47 MiB clip holding the GIL for tens of milliseconds. Only when it is the last field of
    its oneof, so the message means what it would parsed whole."""
    try:
        fields = Fields(limits)
        check_counts(memoryview(data), message_class.DESCRIPTOR, fields)
        if apart is None:
            return message_class.FromString(data)
        field = message_class.DESCRIPTOR.fields_by_name[apart]
        rivals = {other.name for other in field.containing_oneof.fields} if field.containing_oneof else {apart}
        last = [span for span in fields.spans if span[0] in rivals][-1:]
        if not last or last[0][0] != apart:
            return message_class.FromString(data), None
        kept, cursor = [], 0
        for name, start, _, end in fields.spans:
            if name in rivals:  # the field apart, and what it overrides
                kept.append(data[cursor:start])
                cursor = end
        kept.append(data[cursor:])
        _, _, value_start, value_end = last[0]
        return message_class.FromString(b"".join(kept)), memoryview(data)[value_start:value_end]
    except DecodeError as error:
        raise InvalidInput(f"request is not a valid {message_class.DESCRIPTOR.full_name} protobuf message "
                           f"({error})") from None


# Methods whose request may be large are registered as request-streaming on the server side (the
# wire is the same: one message, then the client half-closes). The handler then decides admission
# and reserves memory before it reads the body; a unary handler gets the body already read and parsed.
READ_AFTER_ADMISSION = frozenset({"ExplainClip", "ModelInfer", "GetModelInfo"})


def add_servicer(servicer, server: grpc.aio.Server, service=SERVICE, messages=pb) -> None:
    """Registers every method of ``service`` (a service descriptor; its messages in module
    ``messages``): staa.v1's VideoExplainer, and OIP's GRPCInferenceService the same way."""
    handlers = {}
    for method in service.methods:
        request_streaming = method.client_streaming or method.name in READ_AFTER_ADMISSION
        make = HANDLER_BY_SHAPE[(request_streaming, method.server_streaming)]
        # A large request reaches its handler as bytes, parsed there off the loop (parse_counted).
        parser = None if method.name in READ_AFTER_ADMISSION else lenient_parser(getattr(messages, method.input_type.name))
        handlers[method.name] = make(getattr(servicer, method.name), request_deserializer=parser,
                                     response_serializer=getattr(messages, method.output_type.name).SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))


# Calls the interceptors observe: health checks and reflection (probed constantly) are left alone.
HEALTH_PREFIX = "/grpc.health.v1.Health/"
UNOBSERVED_PREFIXES = (HEALTH_PREFIX, "/grpc.reflection.")


def _explained(response) -> int:
    """1 when a streamed response carries an explanation (ClipResponse, StreamResponse)."""
    try:
        return int(response.WhichOneof("event") == "explanation")
    except (AttributeError, ValueError):  # a message without an `event` oneof
        return 0


def _status(context, error: BaseException | None) -> str:
    """The status a call ended with: the one it aborted with, else OK, CANCELLED or UNKNOWN."""
    code = context.code()
    if code is not None:
        return code.name
    if error is None:
        return "OK"
    return "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"


def observed(handler: grpc.RpcMethodHandler, started: Callable, ended: Callable) -> grpc.RpcMethodHandler:
    """``handler`` calling ``started(context) -> state`` before the call and ``ended(state, context,
    status, windows)`` once it ends, however it ends (``windows``: explanations it streamed)."""
    behaviour = handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    if handler.response_streaming:
        async def call(request, context):
            state, windows, error = started(context), 0, None
            try:
                async for response in behaviour(request, context):
                    windows += _explained(response)
                    yield response
            except BaseException as raised:
                error = raised
                raise
            finally:
                ended(state, context, _status(context, error), windows)
    else:
        async def call(request, context):
            state, error = started(context), None
            try:
                return await behaviour(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                ended(state, context, _status(context, error), 0)
    make = HANDLER_BY_SHAPE[(handler.request_streaming, handler.response_streaming)]
    return make(call, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)


class CallObserver(grpc.aio.ServerInterceptor):
    """An interceptor that sees every call start and end (health checks and reflection excepted):
    ``started(method, context) -> state`` and ``ended(method, state, context, status, windows)``, as
    ``observed`` calls them. The access log, the RPC metrics and the traces are such observers."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(UNOBSERVED_PREFIXES):
            return handler
        return observed(handler, lambda context: self.started(method, context),
                        lambda state, context, status, windows: self.ended(method, state, context, status, windows))

    def started(self, method: str, context):
        raise NotImplementedError

    def ended(self, method: str, state, context, status: str, windows: int) -> None:
        raise NotImplementedError
