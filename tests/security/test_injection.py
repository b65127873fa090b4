"""SQL injection strings and oversized values on every query and path parameter of every GET
operation (enumerated from the OpenAPI document, so a new parameter is covered the day it
appears): never a 5xx; an oversized value is always a 4xx; and where an injection string is a
legal value (a free-text or an opaque filter answering 200) the answer only narrows: it names no
row the same caller's unfiltered answer does not, and none outside the caller's scope.
tests/services/test_parameter_bounds.py checks each parameter's documented bounds."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from tests.security.conftest import STREETS, SecurityHub, body_text, json_ids, visible_streets

# The admin reaches every operation: it gets every value; the scoped callers (whose answers a
# widened filter would leak into) the first few of each list, to keep the run short.
INJECTIONS = [
    "' OR '1'='1",
    "500103001' OR street_code LIKE '%",
    "') UNION SELECT username, password_hash FROM users --",
    "%",
    "1; DROP TABLE tickets; --",
    "'; SELECT pg_sleep(5); --",
    "\\",
    "\x00",
    "../../../etc/passwd",
    "<script>alert(1)</script>",
    "9223372036854775808",
    "1e309",
    "NaN",
]
# Past the largest bound of any parameter (Open311's list of 1,000 request ids, 37,000 characters).
OVERSIZED = ["A" * 40_000, "9" * 40_000]
SCOPED_VALUES = [*INJECTIONS[:3], *OVERSIZED[:1]]
CALLERS = {
    "admin@city": [*INJECTIONS, *OVERSIZED],
    "dispatcher@street": SCOPED_VALUES,
    "integrator:acme": SCOPED_VALUES,
}
PATH_SAMPLES = {"fmt": "json"}  # path parameters that must stay as they are to reach the route


def _operations(document: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every GET path template with its query and path parameters."""
    found = []
    for template, operations in document["paths"].items():
        get = operations.get("get")
        if get is None:
            continue
        params = [p for p in get.get("parameters", []) if p["in"] in ("query", "path")]
        if params:
            found.append((template, params))
    return found


def _url(template: str, params: list[dict[str, Any]], target: str, value: str) -> str:
    """The path with `target` set to `value` (other path parameters a harmless sample)."""
    path = template
    query = ""
    for param in params:
        name = param["name"]
        if param["in"] == "path":
            sample = value if name == target else PATH_SAMPLES.get(name, "C0101")
            path = path.replace("{" + name + "}", quote(sample, safe=""))
        elif name == target:
            query = f"?{name}={quote(value, safe='')}"
    return path + query


async def test_injection_and_oversized_values_on_every_get_parameter(
    security_hub: SecurityHub,
) -> None:
    hub = security_hub
    document = (await hub.client.get("/openapi.json")).json()
    operations = _operations(document)
    assert len(operations) >= 20
    server_errors: list[str] = []
    accepted_oversized: list[str] = []
    leaks: list[str] = []
    calls = 0
    for caller, values in CALLERS.items():
        headers = hub.callers[caller]
        inside = visible_streets(caller)
        outside = set().union(*(hub.seeded[s].ids() for s in STREETS if s not in inside))
        if caller.startswith("admin@"):
            outside -= {seeded.sensor for seeded in hub.seeded.values()}  # the whole registry
        for template, params in operations:
            baseline: set[str] | None = None
            plain = await hub.client.get(_url(template, params, "", ""), headers=headers)
            if plain.status_code in (401, 403):
                continue  # refused to this caller whatever the parameters (the matrix checks it)
            if (
                "{" not in template
                and plain.status_code == 200
                and "json" in plain.headers.get("content-type", "")
            ):
                baseline = json_ids(plain.json())
            for param in params:
                name = param["name"]
                if name in PATH_SAMPLES:
                    continue
                for value in values:
                    url = _url(template, params, name, value)
                    reply = await hub.client.get(url, headers=headers)
                    calls += 1
                    what = f"{caller} GET {template} {name}={value[:40]!r}"
                    if reply.status_code >= 500:
                        server_errors.append(f"{what}: {reply.status_code} {reply.text[:300]}")
                        continue
                    if value in OVERSIZED and reply.status_code < 400:
                        accepted_oversized.append(f"{what}: {reply.status_code}")
                    if reply.status_code != 200:
                        continue
                    text = body_text(reply)
                    named = {i for i in outside if i in text}
                    if named and not template.startswith("/open311/"):  # public by design
                        leaks.append(f"{what} named {sorted(named)}")
                    if baseline is not None and "json" in reply.headers.get("content-type", ""):
                        extra = json_ids(reply.json()) - baseline
                        # Ids the filter echoes (a page cursor, the value itself) are no rows.
                        extra = {i for i in extra if not re.fullmatch(r"[\w-]{0,8}", i)}
                        if extra & set().union(*(s.ids() for s in hub.seeded.values())):
                            leaks.append(f"{what} widened the answer by {sorted(extra)}")
    print(
        f"injection: {calls} requests on {len(operations)} GET operations by {len(CALLERS)} callers"
    )
    assert not server_errors, "\n".join(server_errors)
    assert not leaks, "\n".join(leaks)
    assert not accepted_oversized, "\n".join(accepted_oversized)
