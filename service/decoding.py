"""Requests whose bytes do not decode are the caller's fault: INVALID_ARGUMENT, and no traceback.

gRPC deserializes a request before any handler runs; when the deserializer raises (invalid
UTF-8 in a string field, messages nested deeper than protobuf's recursion limit) it logs an
error-level traceback and answers INTERNAL. This interceptor gives every handler a
deserializer that returns an ``Undecodable`` marker instead of raising, and a behaviour that
answers the marker with INVALID_ARGUMENT. It runs after the auth interceptor, which refuses
unauthenticated callers before their request is looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from priorviz.errors import clip_text

log = logging.getLogger("priorviz.server")


@dataclass(frozen=True)
class Undecodable:
    """Stands in for a request message that failed to decode; ``reason`` is the decoder's complaint."""

    reason: str


class DecodeGuardInterceptor(grpc.ServerInterceptor):
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return _guarded(handler, handler_call_details.method)


def _guarded(handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
    decode = handler.request_deserializer

    def deserialize(data: bytes) -> object:
        try:
            return decode(data)
        except Exception as error:  # DecodeError, RecursionError: whatever the bytes make the parser raise
            return Undecodable(clip_text(str(error)))

    def refuse(request: Undecodable, context: grpc.ServicerContext) -> None:
        log.info("request refused: undecodable", extra={"method": method, "error": request.reason})
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the request does not decode: {request.reason}")

    def checked(request: object, context: grpc.ServicerContext) -> object:
        if isinstance(request, Undecodable):
            refuse(request, context)
        return request

    def checked_stream(requests: Iterator[object], context: grpc.ServicerContext) -> Iterator[object]:
        for request in requests:
            yield checked(request, context)

    def unary_request(behaviour: Callable) -> Callable:
        return lambda request, context: behaviour(checked(request, context), context)

    def stream_request(behaviour: Callable) -> Callable:
        return lambda requests, context: behaviour(checked_stream(requests, context), context)

    options = {"request_deserializer": deserialize, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(unary_request(handler.unary_unary), **options)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(unary_request(handler.unary_stream), **options)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(stream_request(handler.stream_unary), **options)
    return grpc.stream_stream_rpc_method_handler(stream_request(handler.stream_stream), **options)
