"""The standard gRPC health check (grpc.health.v1), without the grpcio-health-checking package.

The server reports SERVING only once its default model is loaded and warm, so this is how
scripts wait for readiness. The two tiny messages are declared here from their published
schema to keep the client's dependencies at grpcio, protobuf and pillow.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

CHECK_METHOD = "/grpc.health.v1.Health/Check"


def _health_messages() -> tuple[type[Message], type[Message], dict[int, str]]:
    file = descriptor_pb2.FileDescriptorProto(name="priorviz_client/grpc_health_v1.proto", package="grpc.health.v1")
    request = file.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    response = file.message_type.add(name="HealthCheckResponse")
    status = response.enum_type.add(name="ServingStatus")
    names = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
    for number, name in names.items():
        status.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
    )
    # A private pool: the real health module may also be imported in the same process.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest"))
    response_class = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse"))
    return request_class, response_class, names


HealthCheckRequest, HealthCheckResponse, STATUS_NAMES = _health_messages()


def status_name(response: Any) -> str:
    """``SERVING``, ``NOT_SERVING``, ... for a HealthCheckResponse (a message class made at run time)."""
    return STATUS_NAMES.get(response.status, "UNKNOWN")
