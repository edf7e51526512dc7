"""Optional bearer-token authentication, as a server interceptor.

Every call must carry ``authorization: Bearer <token>`` metadata (the scheme in any case, as
RFC 6750 allows); others are refused with UNAUTHENTICATED before any handler runs or their
request is decoded. A caller without the token gets UNAUTHENTICATED for a method that does
not exist too, so that it cannot list the methods by probing. The health service stays open
so that probes (Docker HEALTHCHECK, Kubernetes gRPC probes) need no secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import grpc

OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})
SCHEME = "bearer"


class BearerTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self._expected = token.encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler_call_details.method in OPEN_METHODS or self._authorized(handler_call_details):
            return handler
        return _refusing(handler) if handler is not None else grpc.stream_stream_rpc_method_handler(_deny)

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                text = value.decode(errors="replace") if isinstance(value, bytes) else value
                scheme, _, token = text.partition(" ")
                return scheme.lower() == SCHEME and hmac.compare_digest(token.lstrip(" ").encode(), self._expected)
        return False


def _deny(_request: object, context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' is required")


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED without decoding the request."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_deny)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_deny)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_deny)
    return grpc.stream_stream_rpc_method_handler(_deny)
