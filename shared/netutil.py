"""Small network checks done before binding, so a taken port is a clear one-line error."""

from __future__ import annotations

import asyncio
import socket

from shared.errors import ConfigError


def ensure_port_free(host: str, port: int, variable: str, hint: str = "") -> None:
    """Raise a `ConfigError` naming `variable` when host:port cannot be bound."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            extra = f" ({hint})" if hint else ""
            raise ConfigError(
                f"port {port} on {host} is already in use: set {variable} to a free port{extra}"
            ) from None


async def reachable(host: str, port: int, within_s: float = 1.0) -> bool:
    """True when a TCP connection to host:port opens within `within_s` seconds."""
    try:
        async with asyncio.timeout(within_s):
            _reader, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True
