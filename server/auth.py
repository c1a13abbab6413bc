"""Optional bearer-token auth for every RPC except health checks (load balancers probe without secrets)."""

from __future__ import annotations

import hmac

import grpc

from staa_serve.server.wire import HANDLER_BY_SHAPE, HEALTH_PREFIX



def bearer_token_ok(metadata, token: str) -> bool:
    """``authorization: Bearer <token>`` present in ``metadata``: the scheme in any case (RFC 7235),
    the token compared in constant time."""
    expected = token.encode()
    for key, value in metadata or ():
        if key.lower() == "authorization":
            given = value.encode() if isinstance(value, str) else value
            scheme, _, credentials = given.strip().partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), expected):
                return True
    return False


def _denied(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler that only answers UNAUTHENTICATED. It is request-streaming whatever the method's
    shape (the wire is the same), so the refused call's body is never read off the wire."""

    async def deny(request_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def deny_streaming(request_iterator, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # unreachable: makes this an async generator, as a streaming handler must be

    make = HANDLER_BY_SHAPE[(True, handler.response_streaming)]
    return make(deny_streaming if handler.response_streaming else deny,
                request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer)


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str, on_denied=None):
        self.token = token
        self.on_denied = on_denied  # metrics hook: called once per refused call

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(HEALTH_PREFIX):
            return handler
        if bearer_token_ok(handler_call_details.invocation_metadata, self.token):
            return handler
        if self.on_denied is not None:
            self.on_denied()
        return _denied(handler, "missing or wrong bearer token (send metadata 'authorization: Bearer <token>')")
