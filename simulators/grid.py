"""Grid workers (网格员) patrolling their streets and reporting problems with photos."""

from __future__ import annotations

import random
import struct
import zlib

import httpx

from simulators.city import Street, pick_street, point_in
from simulators.runner import Tally, run_arrivals
from simulators.texts import complaint


def photo(rng: random.Random, size: int = 8) -> bytes:
    """A small real PNG with random pixels (a stand-in for a phone photo)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    rows = b"".join(b"\x00" + rng.randbytes(size * 3) for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def run(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    streets: list[Street],
    *,
    rate_per_s: float,
    count: int | None = None,
    duration_s: float | None = None,
    workers: int = 200,
    seed: int = 62000,
    shaped: bool = True,
    progress: bool = True,
    tally: Tally | None = None,
) -> Tally:
    """Post grid reports (1–3 photos each) from `workers` grid workers."""
    beats = {f"gw-{i:05d}": pick_street(streets, random.Random(seed + i)) for i in range(workers)}
    serial = 0

    async def emit(rng: random.Random) -> str:
        nonlocal serial
        serial += 1
        worker = rng.choice(list(beats))
        street = beats[worker]
        code, text = complaint(street.name, rng)
        lon, lat = point_in(street.polygon, rng)
        files = [
            ("photos", (f"{n}.png", photo(rng), "image/png")) for n in range(rng.randint(1, 3))
        ]
        data = {
            "category": code,
            "description": text,
            "lon": str(lon),
            "lat": str(lat),
            "worker_id": worker,
            "source_ref": f"{worker}-{serial}-{rng.getrandbits(32):08x}",
        }
        reply = await client.post("/api/v1/grid-reports", data=data, files=files, headers=headers)
        return str(reply.status_code)

    return await run_arrivals(
        "grid",
        emit,
        rate_per_s=rate_per_s,
        count=count,
        duration_s=duration_s,
        seed=seed,
        shaped=shaped,
        progress=progress,
        tally=tally,
    )
