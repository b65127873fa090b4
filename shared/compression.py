"""Response compression that honours the client's Accept-Encoding weights (`gzip;q=0` means no)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import Receive, Scope, Send


def accepts_gzip(accept_encoding: str) -> bool:
    """True when an Accept-Encoding header admits gzip: named with a q above 0, or not named and
    `*` admitted."""
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding] = weight
    return weights.get("gzip", weights.get("*", 0.0)) > 0


class NegotiatedGZipMiddleware(GZipMiddleware):
    """Starlette's gzip, applied only where `accepts_gzip` says the client wants it (Starlette's
    own test is a substring match, which would compress for `gzip;q=0`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not accepts_gzip(
            Headers(scope=scope).get("accept-encoding", "")
        ):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
