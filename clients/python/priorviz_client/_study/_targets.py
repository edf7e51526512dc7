"""Where a study's jobs go: one channel target that gRPC load-balances over every server, and each server to ask.

- Several ``HOST:PORT`` targets: each host is resolved here and the channel gets gRPC's static
  address list (``ipv4:A:P,B:Q``); the servers to ask are the targets as written.
- One ``dns:///NAME:PORT`` (a Kubernetes headless Service): the channel resolves the name itself
  and follows servers as they come and go; the servers to ask are the name's addresses now.
- One ``HOST:PORT``: that server alone.

The channel's policy is round_robin: each call goes to the next server that is ready, and a
server that stops answering leaves the rotation until it is back.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from priorviz_client._exceptions import StudyError

LOAD_BALANCING = "round_robin"


@dataclass(frozen=True)
class Fleet:
    channel_target: str
    """What the load-balanced channel is opened on."""
    servers: tuple[str, ...]
    """Each server's own address, to ask it for its id and worker count (and to name it in the store)."""


def fleet(targets: Sequence[str]) -> Fleet:
    if not targets:
        raise StudyError("a study needs at least one --target")
    if any(target.startswith("dns:") for target in targets):
        if len(targets) > 1:
            raise StudyError("a dns: target names every server already; give it alone")
        return _dns_fleet(targets[0])
    if len(targets) == 1:
        return Fleet(targets[0], (targets[0],))
    addresses = [_resolve(*_host_port(target)) for target in targets]
    families = {address.version for address, _ in addresses}
    if len(families) > 1:
        raise StudyError(f"targets {list(targets)} mix IPv4 and IPv6 addresses; gRPC's address list takes one family")
    listed = ",".join(_address(address, port) for address, port in addresses)
    return Fleet(f"ipv{families.pop()}:{listed}", tuple(targets))


def _dns_fleet(target: str) -> Fleet:
    """``dns:///NAME:PORT`` or ``dns://AUTHORITY/NAME:PORT``: the channel resolves it; its addresses now are asked."""
    name = target.removeprefix("dns:")
    if name.startswith("//"):
        name = name[2:].partition("/")[2]
    host, port = _host_port(name)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise StudyError(f"cannot resolve {target}: {error.strerror}") from None
    addresses = dict.fromkeys(_address(ipaddress.ip_address(info[4][0]), port) for info in found)
    return Fleet(target, tuple(addresses))


def _host_port(target: str) -> tuple[str, int]:
    host, separator, port = target.rpartition(":")
    if not separator or not port.isdigit() or not host:
        raise StudyError(f"target {target!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _resolve(host: str, port: int) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """The host's address, IPv4 first (servers listen on IPv4 by default)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise StudyError(f"cannot resolve {host}: {error.strerror}") from None
    addresses = sorted((ipaddress.ip_address(info[4][0]) for info in found), key=lambda address: address.version)
    return addresses[0], port


def _address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"{address}:{port}" if address.version == 4 else f"[{address}]:{port}"
