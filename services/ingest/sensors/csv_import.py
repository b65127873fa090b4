"""`cityhub sensors import FILE.csv`: validate every row first, then store them all at once.

Columns (a header row names them, any order): `id, type, lon, lat, integrator, interval_s`
required; `rules` (a JSON array, the API's format), `name`, `alarm_category` optional.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from services.ingest.sensors import store
from services.ingest.sensors.payloads import SENSOR_ID_PATTERN
from services.ingest.sensors.registration import rule_keys, sensor_row
from services.ingest.sensors.schemas import SensorPut
from shared.catalogue import Catalogue
from shared.errors import HubError

REQUIRED = ("id", "type", "lon", "lat", "integrator", "interval_s")
OPTIONAL = ("rules", "name", "alarm_category")
MAX_ERRORS_SHOWN = 20
_SENSOR_ID = re.compile(SENSOR_ID_PATTERN)


def _error_text(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'row'}: {e['msg']}" for e in exc.errors()
    )


def parse_sensor_csv(text: str, catalogue: Catalogue, now: datetime) -> list[dict[str, Any]]:
    """Column values for every row; a 422 listing every bad row (by line) if any is bad."""
    reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff")))  # Excel writes a BOM
    header = set(reader.fieldnames or ())
    missing = [c for c in REQUIRED if c not in header]
    unknown = header - set(REQUIRED) - set(OPTIONAL)
    if missing or unknown:
        raise HubError(
            f"CSV header: missing {', '.join(missing) or 'nothing'}; "
            f"unknown {', '.join(sorted(unknown)) or 'nothing'} "
            f"(columns: {', '.join(REQUIRED + OPTIONAL)})",
            422,
        )
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    seen: dict[str, int] = {}
    for record in reader:
        line = reader.line_num
        sensor_id = (record.get("id") or "").strip()
        try:
            if not _SENSOR_ID.fullmatch(sensor_id):
                raise HubError("id must be 1-64 of A-Z a-z 0-9 _ . : -", 422)
            if sensor_id in seen:
                raise HubError(f"id {sensor_id!r} repeats line {seen[sensor_id]}", 422)
            seen[sensor_id] = line
            raw_rules = (record.get("rules") or "").strip()
            try:
                rules = json.loads(raw_rules) if raw_rules else []
            except ValueError as exc:
                raise HubError(f"rules is not a JSON array: {exc}", 422) from None
            body = SensorPut.model_validate(
                {
                    "type": (record.get("type") or "").strip(),
                    "location": {"lon": record.get("lon"), "lat": record.get("lat")},
                    "interval_s": record.get("interval_s"),
                    "rules": rules,
                    "integrator": (record.get("integrator") or "").strip() or None,
                    "name": (record.get("name") or "").strip() or None,
                    "alarm_category": (record.get("alarm_category") or "").strip() or None,
                }
            )
            if body.integrator is None:
                raise HubError("integrator is required", 422)
            rows.append(sensor_row(sensor_id, body, body.integrator, catalogue, now))
        except ValidationError as exc:
            errors.append(f"line {line}: {_error_text(exc)}")
        except HubError as exc:
            errors.append(f"line {line}: {exc.message}")
    if errors:
        shown = "\n".join(errors[:MAX_ERRORS_SHOWN])
        more = len(errors) - MAX_ERRORS_SHOWN
        tail = f"\n… and {more} more" if more > 0 else ""
        raise HubError(f"{len(errors)} bad row(s), nothing imported:\n{shown}{tail}", 422)
    return rows


async def import_sensors(
    session: AsyncSession, rows: list[dict[str, Any]], now: datetime
) -> tuple[int, int]:
    """Store validated rows in the caller's transaction; (created, updated)."""
    owners = {r["integrator"] for r in rows}
    unknown = owners - await store.existing_integrators(session, owners)
    if unknown:
        raise HubError(
            f"no API key for integrator(s) {', '.join(sorted(unknown))}: "
            "create them first (cityhub keys add NAME)",
            422,
        )
    created = await store.upsert_sensors(session, rows)
    await store.clear_stale_rule_alarms(
        session, {r["id"]: rule_keys(r["rules"]) for r in rows}, now
    )
    return created, len(rows) - created
