"""Registering sensors: who may, which categories, and the row to store (API and CSV import)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.ingest.sensors.rules import Rule
from services.ingest.sensors.schemas import SensorPut
from shared.catalogue import Catalogue
from shared.errors import HubError

# The category of alarms a device raises itself, by sensor type (when not given).
TYPE_CATEGORIES = {
    "water_level": "S0101",
    "waterlogging": "S0101",
    "manhole": "S0102",
    "manhole_cover": "S0102",
    "smoke": "S0103",
    "gas": "S0104",
    "air_quality": "S0105",
    "bridge": "S0106",
    "bridge_strain": "S0106",
    "water_quality": "S0107",
}


def rule_keys(rules: list[dict[str, Any]]) -> set[str]:
    """The keys of stored rules (as `Rule.key` names them)."""
    return {Rule(**rule).key for rule in rules}


def sensor_category(catalogue: Catalogue, text: str) -> str:
    """The code of a sensor alarm category given by code or name; 422 otherwise."""
    category = catalogue.resolve(text)
    if category is None:
        raise HubError(f"unknown category {text!r}: see GET /api/v1/categories", 422)
    if category.group != "sensor":
        raise HubError(
            f"category {category.code} is not a sensor alarm category (use S0101..S0108)", 422
        )
    return category.code


def sensor_row(
    sensor_id: str, body: SensorPut, integrator: str, catalogue: Catalogue, now: datetime
) -> dict[str, Any]:
    """The column values to store for a registration (categories resolved to codes)."""
    rules = [
        {**rule.model_dump(), "category": sensor_category(catalogue, rule.category)}
        for rule in body.rules
    ]
    if body.alarm_category is not None:
        alarm_category = sensor_category(catalogue, body.alarm_category)
    elif body.type in TYPE_CATEGORIES:
        alarm_category = TYPE_CATEGORIES[body.type]
    elif rules:
        alarm_category = rules[0]["category"]
    else:
        raise HubError(
            f"type {body.type!r} has no default alarm category: give alarm_category or a rule",
            422,
        )
    return {
        "id": sensor_id,
        "type": body.type,
        "integrator": integrator,
        "name": body.name,
        "lon": body.location.lon,
        "lat": body.location.lat,
        "interval_s": body.interval_s,
        "alarm_category": alarm_category,
        "rules": rules,
        "created_at": now,
        "updated_at": now,
    }
