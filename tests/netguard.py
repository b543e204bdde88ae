"""Block sockets to anything but loopback, so tests prove the pipeline runs offline."""

from __future__ import annotations

import ipaddress
import socket

_ORIGINAL = {}
ATTEMPTS: list[str] = []


class NetworkBlockedError(OSError):
    """A connection to a non-loopback address was attempted."""


def _is_loopback(address) -> bool:
    if isinstance(address, tuple):
        host = address[0]
    else:
        return True  # AF_UNIX paths
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost would need DNS: refuse


def block_network() -> None:
    """Patch socket connect and DNS so only loopback works."""
    if _ORIGINAL:
        return
    _ORIGINAL["connect"] = socket.socket.connect
    _ORIGINAL["connect_ex"] = socket.socket.connect_ex
    _ORIGINAL["getaddrinfo"] = socket.getaddrinfo

    def connect(self, address):
        if not _is_loopback(address):
            ATTEMPTS.append(repr(address))
            raise NetworkBlockedError(f"network blocked in tests: {address!r}")
        return _ORIGINAL["connect"](self, address)

    def connect_ex(self, address):
        if not _is_loopback(address):
            ATTEMPTS.append(repr(address))
            raise NetworkBlockedError(f"network blocked in tests: {address!r}")
        return _ORIGINAL["connect_ex"](self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost") and not _is_loopback((host,)):
            ATTEMPTS.append(f"dns:{host}")
            raise socket.gaierror(f"network blocked in tests: DNS lookup of {host!r}")
        return _ORIGINAL["getaddrinfo"](host, *args, **kwargs)

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.getaddrinfo = getaddrinfo
