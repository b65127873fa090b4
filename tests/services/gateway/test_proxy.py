"""The production gateway forwards a request as the client sent it (method, path, query string,
body, repeated headers) plus how it reached the gateway and its request id, and answers with the
upstream's status, body and headers (repeated ones too) but one request id of its own."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from services.gateway.app import create_app as create_gateway_app
from shared.settings import Settings
from tests.support.apps import serving
from tests.support.http_server import served


def _echo_app() -> FastAPI:
    """An upstream that answers with what it received, as raw as ASGI gives it."""
    app = FastAPI()

    @app.api_route("/{path:path}", methods=["GET", "POST"])
    async def echo(path: str, request: Request) -> Response:
        seen = [
            f"{request.method} {request.scope['path']}?{request.scope['query_string'].decode()}",
            *(f"{k.decode()}: {v.decode()}" for k, v in request.scope["headers"]),
            "",
            (await request.body()).decode(),
        ]
        response = Response("\n".join(seen), 207, media_type="text/plain")
        response.raw_headers += [
            (b"set-cookie", b"a=1"),
            (b"set-cookie", b"b=2"),
            (b"x-request-id", b"the-upstream-s-own"),
        ]
        return response

    return app


async def test_a_request_and_its_answer_pass_through_unchanged(
    production_settings: Settings,
) -> None:
    with served(_echo_app()) as upstream:
        settings = production_settings.model_copy(update={"ingest_url": upstream.url})
        async with serving(create_gateway_app(settings)) as gateway:
            reply = await gateway.post(
                "/api/v1/sensors/s-1/readings?x=1&x=2&q=%E8%B7%AF%20a",
                content=b"the body",
                headers=[
                    ("X-Tag", "one"),
                    ("X-Tag", "two"),
                    ("X-Request-ID", "req-proxy-0001"),
                    ("Accept-Encoding", "gzip"),
                    ("Content-Type", "text/plain"),
                ],
            )
    assert reply.status_code == 207, reply.text
    lines = reply.text.split("\n")
    # The path and the query string exactly as sent (repeated and encoded parameters too).
    assert lines[0] == "POST /api/v1/sensors/s-1/readings?x=1&x=2&q=%E8%B7%AF%20a"
    headers = lines[1 : lines.index("")]
    assert [h for h in headers if h.startswith("x-tag:")] == ["x-tag: one", "x-tag: two"]
    assert "x-forwarded-host: hub" in headers
    assert "x-forwarded-proto: http" in headers
    assert [h for h in headers if h.startswith("x-request-id:")] == ["x-request-id: req-proxy-0001"]
    # Plain on the local hop; the gateway compresses for its client.
    assert [h for h in headers if h.startswith("accept-encoding:")] == ["accept-encoding: identity"]
    assert "content-type: text/plain" in headers
    assert lines[-1] == "the body"
    # Repeated response headers survive; the request id is the gateway's (the client's), once.
    assert reply.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert reply.headers.get_list("x-request-id") == ["req-proxy-0001"]
    assert reply.headers["content-length"] == str(len(reply.content))
