"""Ask a priorviz server's gRPC health service whether it is SERVING (exit 0) or not (exit 1).

Used by the Docker HEALTHCHECK; imports no torch so that it answers in well under a second.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(address: str, *, service: str = "", timeout: float = 5.0, tls_ca: str | None = None) -> bool:
    """True when the server at ``address`` reports SERVING for ``service`` ("" = the whole server)."""
    if tls_ca is not None:
        with open(tls_ca, "rb") as ca:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=ca.read()))
    else:
        channel = grpc.insecure_channel(address)
    with channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return response.status == health_pb2.HealthCheckResponse.SERVING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.healthcheck", description=__doc__)
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--service", default="", help="service name to ask about (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--tls-ca", default=None, help="PEM root certificate when the server serves TLS")
    args = parser.parse_args(argv)
    serving = check(args.address, service=args.service, timeout=args.timeout, tls_ca=args.tls_ca)
    print("SERVING" if serving else "NOT_SERVING")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
