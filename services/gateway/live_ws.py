"""`GET /ws/live`: tickets, KPIs and alerts of a scope, live, resumable with `since`.

The protocol (docs/live.md): the server says `hello` (latest seq, epoch, scope, streams), replays
what the client missed since the seq it names (or says `resync` when the history no longer reaches
back), then streams each message of the subscription once, in seq order. Close codes: 4400 bad
parameters, 4401 not (or no longer) signed in, 4403 scope wider than the user's, 4000 lifetime
reached, 1009 frame too big, 1013 too slow (after a `resync`), 1001 gateway going away.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import cast

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from services.gateway.live_hub import (
    HUB_KEY,
    RESYNC,
    STALLED,
    LiveHub,
    Subscriber,
    control_frame,
)
from shared.areas import Hierarchy
from shared.auth import Principal, Scope
from shared.errors import HubError
from shared.live.base import LIVE_STREAMS, LiveStream
from shared.runtime import Runtime
from shared.web import principal_for_token

logger = logging.getLogger(__name__)
router = APIRouter()

MAX_CLIENT_FRAME = 4_096  # bytes; larger client frames close the socket (1009)
REPLAY_PAGE = 500


class Refusal(Exception):
    """Close the socket with `code` and `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True)
class Request:
    """The parsed query string."""

    token: str | None
    scope: Scope | None
    streams: frozenset[LiveStream]
    since: int | None
    epoch: str | None


def parse(params: dict[str, str]) -> Request:
    """The subscription a query string asks for; `Refusal(4400)` for anything malformed."""
    names = [s.strip() for s in params.get("streams", "").split(",") if s.strip()]
    unknown = [s for s in names if s not in LIVE_STREAMS]
    if unknown:
        raise Refusal(4400, f"unknown stream {unknown[0]!r}: use {', '.join(LIVE_STREAMS)}")
    scope = None
    if params.get("scope"):
        try:
            scope = Scope.parse(params["scope"])
        except HubError as exc:
            raise Refusal(4400, str(exc)) from exc
    since = None
    if params.get("since") is not None:
        text = params["since"]
        if not text.isdigit() or len(text) > 18:
            raise Refusal(4400, f"since must be a non-negative integer seq, not {text[:40]!r}")
        since = int(text)
    streams = frozenset(cast("list[LiveStream]", names)) or frozenset(LIVE_STREAMS)
    return Request(params.get("token") or None, scope, streams, since, params.get("epoch"))


def check_scope(wanted: Scope, own: Scope, hierarchy: Hierarchy) -> None:
    """Refuse an unknown area (4400) or one outside the user's own scope (4403)."""
    if wanted.code is not None:
        area = hierarchy.get(wanted.code)
        if area is None or area.level != wanted.level:
            raise Refusal(4400, f"scope {wanted}: no {wanted.level} with that code")
    if own.level == "city" or wanted == own:
        return
    if own.level == "district" and wanted.level == "street":
        street = hierarchy.get(wanted.code or "")
        if street is not None and street.parent == own.code:
            return
    raise Refusal(4403, f"scope {wanted} is wider than or outside yours ({own})")


async def _first_auth(websocket: WebSocket, timeout_s: float) -> str:
    """The token of the client's first `auth` message (pings are answered meanwhile)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = await _receive(websocket)
            if message.get("type") == "auth" and isinstance(message.get("token"), str):
                return str(message["token"])
            if message.get("type") == "ping":
                await websocket.send_text(control_frame("pong"))


async def _receive(websocket: WebSocket) -> dict[str, object]:
    """The next client text frame as a JSON object ({} when it is not one)."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    raw = message.get("text") or message.get("bytes") or ""
    if len(raw) > MAX_CLIENT_FRAME:
        raise Refusal(1009, f"client frames are limited to {MAX_CLIENT_FRAME} bytes")
    try:
        parsed = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


async def _authenticate(websocket: WebSocket, runtime: Runtime, request: Request) -> Principal:
    token = request.token
    if token is None:
        try:
            token = await _first_auth(websocket, runtime.settings.live.auth_timeout_s)
        except TimeoutError as exc:
            raise Refusal(4401, "no token: pass ?token= or send {type: auth, token}") from exc
    try:
        return await principal_for_token(runtime, token)
    except HubError as exc:
        raise Refusal(4401, exc.message) from exc


async def _replay(websocket: WebSocket, hub: LiveHub, sub: Subscriber, since: int) -> int | None:
    """Send the subscription's records after `since`; the seq reached, None if out of reach."""
    cursor = since
    while True:
        page = await hub.log.read_after(cursor, REPLAY_PAGE)
        if page is None:
            return None
        if not page:
            return cursor
        for record in page:
            if sub.wants(record):
                await websocket.send_text(record.frame)
        cursor = page[-1].seq


async def _pump(websocket: WebSocket, sub: Subscriber, sent: int) -> None:
    """Send queued frames in order, each once; ends when the subscriber overflowed. A send that
    stalls is the hub's to notice (`sending_since`): a timer per frame cost a quarter of the
    gateway's CPU per delivery (docs/benchmarks.md)."""
    loop = asyncio.get_running_loop()
    while True:
        seq, frame = await sub.queue.get()
        if 0 <= seq <= sent:
            continue  # already sent by the replay
        sub.sending_since = loop.time()
        await websocket.send_text(frame)
        sub.sending_since = None
        if seq == RESYNC:
            if sub.overflowed:
                raise Refusal(1013, "client too slow: reconnect and reload")
            sent = 0
        elif seq > 0:
            sent = seq


async def _listen(websocket: WebSocket, sub: Subscriber) -> None:
    """Answer `ping`s; ignore every other client frame."""
    while True:
        message = await _receive(websocket)
        if message.get("type") == "ping":
            sub.offer(-2, control_frame("pong"))


async def _serve(websocket: WebSocket, runtime: Runtime, hub: LiveHub) -> None:
    request = parse(dict(websocket.query_params))
    principal = await _authenticate(websocket, runtime, request)
    scope = request.scope or principal.scope
    check_scope(scope, principal.scope, runtime.hierarchy)
    live = runtime.settings.live
    expires = asyncio.get_running_loop().time() + live.max_lifetime_s
    sub = Subscriber(scope, request.streams, live.queue_max, principal, expires)
    hub.subscribe(sub)
    try:
        head = await hub.head()
        hello = control_frame(
            "hello", seq=head.seq, epoch=head.epoch, scope=str(scope),
            streams=sorted(request.streams),
        )  # fmt: skip
        await websocket.send_text(hello)
        sent = head.seq
        if request.since is not None:
            reached = None
            if request.epoch in (None, head.epoch):
                reached = await _replay(websocket, hub, sub, request.since)
            if reached is None:
                reason = "epoch changed" if request.epoch not in (None, head.epoch) else (
                    "history lost" if request.since > head.seq
                    else "history no longer reaches back that far"
                )  # fmt: skip
                await websocket.send_text(control_frame("resync", reason=reason))
            else:
                sent = max(sent, reached)
        tasks = [
            asyncio.create_task(_pump(websocket, sub, sent)),
            asyncio.create_task(_listen(websocket, sub)),
            asyncio.create_task(sub.ended.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if sub.ending is not None:  # the hub ended it: signed out, lifetime, shutdown, stalled
            code, reason = sub.ending
            if code == STALLED:
                raise TimeoutError(reason)
            raise Refusal(code, reason)
        for task in done:
            task.result()  # re-raise what ended the connection
    finally:
        hub.unsubscribe(sub)


@router.websocket("/ws/live")
async def live(websocket: WebSocket) -> None:
    """Live tickets, KPIs and alerts of a scope (see the module docstring and docs/live.md)."""
    runtime: Runtime = websocket.app.state.runtime
    hub: LiveHub = runtime.extras[HUB_KEY]
    await websocket.accept()
    code, reason = 1000, ""
    try:
        await _serve(websocket, runtime, hub)
    except Refusal as refusal:
        code, reason = refusal.code, refusal.reason
    except (WebSocketDisconnect, TimeoutError):
        return  # the client left, or a send to it stalled: nothing more to say
    except Exception:
        logger.exception("live connection failed")
        code, reason = 1011, "internal error"
    if websocket.client_state == WebSocketState.CONNECTED:
        with contextlib.suppress(Exception):  # the peer may be gone already
            await websocket.close(code, reason.encode()[:120].decode(errors="ignore"))
