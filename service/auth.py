"""Optional bearer-token authentication, as a server interceptor.

Every call must carry ``authorization: Bearer <token>`` metadata; others are refused with
UNAUTHENTICATED before any handler runs. The health service stays open so that probes
(Docker HEALTHCHECK, Kubernetes gRPC probes) need no secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

import grpc

OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class BearerTokenInterceptor(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method in OPEN_METHODS or self._authorized(handler_call_details):
            return handler
        return _refusing(handler)

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(presented, self._expected)
        return False


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED."""

    def deny(_request: object, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid 'authorization: Bearer <token>' is required")

    serializers = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(deny, **serializers)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(deny, **serializers)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(deny, **serializers)
    return grpc.stream_stream_rpc_method_handler(deny, **serializers)
