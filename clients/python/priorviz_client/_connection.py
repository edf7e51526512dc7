"""How both clients reach a server: address, TLS, token, message limits, retry policy."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import grpc

DEFAULT_TARGET = "localhost:50051"
TARGET_ENV = "PRIORVIZ_TARGET"
TOKEN_ENV = "PRIORVIZ_TOKEN"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""A batch of large PNGs plus previews easily passes gRPC's 4 MiB default."""
KEEPALIVE_MS = 30_000
DEFAULT_UNARY_TIMEOUT = 30.0
"""Listing calls answer in milliseconds; a stuck server should not hang a caller forever."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, used only for idempotent calls on UNAVAILABLE."""

    max_attempts: int = 5
    initial_backoff: float = 0.2
    max_backoff: float = 3.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_backoff < 0 or self.max_backoff < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return random.uniform(0.0, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)


def _read_pem(value: bytes | str | Path | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return Path(value).read_bytes()


@dataclass(frozen=True)
class Connection:
    """Everything needed to open a channel and decorate calls; shared by Client and AsyncClient."""

    target: str
    token: str | None
    tls: bool
    root_certificates: bytes | None
    private_key: bytes | None
    certificate_chain: bytes | None
    server_name: str | None
    max_message_bytes: int
    timeout: float | None
    retry: RetryPolicy
    load_balancing: str | None

    @classmethod
    def create(
        cls,
        target: str | None = None,
        *,
        token: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        private_key: bytes | str | Path | None = None,
        certificate_chain: bytes | str | Path | None = None,
        server_name: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        timeout: float | None = DEFAULT_UNARY_TIMEOUT,
        retry: RetryPolicy | None = None,
        load_balancing: str | None = None,
    ) -> Connection:
        """Defaults come from $PRIORVIZ_TARGET and $PRIORVIZ_TOKEN; any certificate implies TLS."""
        roots = _read_pem(root_certificates)
        key, chain = _read_pem(private_key), _read_pem(certificate_chain)
        if (key is None) != (chain is None):
            raise ValueError("client TLS needs both private_key and certificate_chain")
        return cls(
            target=target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET,
            token=token if token is not None else os.environ.get(TOKEN_ENV) or None,
            tls=tls or roots is not None or key is not None,
            root_certificates=roots,
            private_key=key,
            certificate_chain=chain,
            server_name=server_name,
            max_message_bytes=max_message_bytes,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            load_balancing=load_balancing,
        )

    def channel_options(self) -> list[tuple[str, object]]:
        options: list[tuple[str, object]] = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.max_send_message_length", self.max_message_bytes),
            # Pings keep a quiet stream (a job waiting in the queue) open through proxies and
            # notice a dead server; the server accepts one every 10 s at most.
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", 20_000),
            # After a failed connection the channel fails calls fast until its next reconnect
            # attempt; keeping that gap within the retry backoff lets a retry find a server that
            # came up meanwhile (gRPC's own default grows to two minutes).
            ("grpc.initial_reconnect_backoff_ms", max(int(self.retry.initial_backoff * 1000), 100)),
            ("grpc.min_reconnect_backoff_ms", max(int(self.retry.initial_backoff * 1000), 100)),
            ("grpc.max_reconnect_backoff_ms", max(int(self.retry.max_backoff * 1000), 100)),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        if self.load_balancing:
            # gRPC's own policy over every address the target resolves to ("round_robin": each call
            # to the next ready server); gRPC's default, "pick_first", sends every call to one server.
            options.append(("grpc.lb_policy_name", self.load_balancing))
        return options

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials, or None for a plaintext channel."""
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(self.root_certificates, self.private_key, self.certificate_chain)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Per-call metadata: the bearer token, sent as the server's interceptor expects."""
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def unary_timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout
