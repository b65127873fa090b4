"""The landing page at `/` (the live operations screen replaces it in a later issue)."""

from __future__ import annotations

from html import escape

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from shared.web import RuntimeDep

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
async def landing(runtime: RuntimeDep) -> str:
    """What is running and where to go next."""
    h = runtime.hierarchy
    mode = "embedded" if runtime.settings.embedded else "production"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>cityhub</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto">
<h1>cityhub · 一网统管</h1>
<p>Mode: <b>{mode}</b>. Hierarchy: {escape(h.city.name)} ·
{len(h.districts)} district centres · {len(h.streets)} streets.</p>
<ul>
<li><a href="/docs">API documentation</a> (<a href="/openapi.json">OpenAPI</a>)</li>
<li><a href="/healthz">Health</a></li>
</ul>
<p>Sign in with <code>POST /auth/token</code>; create users with
<code>cityhub users add</code> and integrator keys with <code>cityhub keys add</code>.</p>
</body></html>"""
