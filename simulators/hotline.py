"""The 12345 hotline: citizens' complaints posted through Open311 GeoReport v2."""

from __future__ import annotations

import random

import httpx

from simulators.city import Street, pick_street, point_in
from simulators.runner import Tally, run_arrivals
from simulators.texts import ATTRIBUTES, caller, complaint


def request_form(street: Street, rng: random.Random, key: str, serial: int) -> dict[str, str]:
    """One Open311 `POST requests` form, as a call-centre CRM would send it."""
    code, text = complaint(street.name, rng)
    lon, lat = point_in(street.polygon, rng)
    name, phone = caller(rng)
    form = {
        "api_key": key,
        "service_code": code,
        "lat": f"{lat:.6f}",
        "long": f"{lon:.6f}",
        "description": text,
        "first_name": name,
        "phone": phone,
        "external_id": f"sim-{rng.getrandbits(48):012x}-{serial}",
    }
    for attr, value in ATTRIBUTES.get(code, {}).items():
        form[f"attribute[{attr}]"] = value
    return form


async def run(
    client: httpx.AsyncClient,
    key: str,
    streets: list[Street],
    *,
    rate_per_s: float,
    count: int | None = None,
    duration_s: float | None = None,
    seed: int = 12345,
    shaped: bool = True,
    progress: bool = True,
    tally: Tally | None = None,
) -> Tally:
    """Post complaints at `rate_per_s` on average (shaped by the hour of day)."""
    serial = 0

    async def emit(rng: random.Random) -> str:
        nonlocal serial
        serial += 1
        form = request_form(pick_street(streets, rng), rng, key, serial)
        reply = await client.post("/open311/v2/requests.json", data=form)
        return str(reply.status_code)

    return await run_arrivals(
        "hotline",
        emit,
        rate_per_s=rate_per_s,
        count=count,
        duration_s=duration_s,
        seed=seed,
        shaped=shaped,
        progress=progress,
        tally=tally,
    )
