"""`cityhub sensors import FILE.csv`: every row checked before any is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.ingest.sensors.csv_import import parse_sensor_csv
from shared.catalogue import Catalogue, default_categories
from shared.errors import HubError
from tests.support.processes import cli

RULES = json.dumps(
    [{"metric": "water_level_cm", "op": ">", "value": 30, "hysteresis": 5, "category": "S0101"}]
).replace('"', '""')
GOOD = (
    "id,type,lon,lat,integrator,interval_s,rules,name\n"
    f'wl-1,water_level,106.58,29.56,acme,60,"{RULES}",Underpass\n'
    "gas-1,gas,106.55,29.57,acme,300,,\n"
)
NOW = datetime(2026, 11, 21, tzinfo=UTC)


def test_rows_become_sensor_rows() -> None:
    rows = parse_sensor_csv("\ufeff" + GOOD, Catalogue(default_categories()), NOW)
    assert [r["id"] for r in rows] == ["wl-1", "gas-1"]
    assert rows[0]["rules"][0]["category"] == "S0101" and rows[0]["name"] == "Underpass"
    assert (rows[1]["rules"], rows[1]["alarm_category"]) == ([], "S0104")  # from the type


def test_every_bad_row_is_reported_by_line() -> None:
    bad = (
        "id,type,lon,lat,integrator,interval_s,rules\n"
        "wl-1,water_level,106.58,29.56,acme,60,\n"
        "wl-1,water_level,106.58,29.56,acme,60,\n"  # repeated id
        "wl 2,water_level,106.58,29.56,acme,60,\n"  # bad id
        "wl-3,water_level,north,29.56,acme,60,\n"  # bad lon
        'wl-4,water_level,106.58,29.56,acme,60,"[{""metric"": ""x""}]"\n'  # incomplete rule
        "wl-5,water_level,106.58,29.56,,60,\n"  # no owner
    )
    with pytest.raises(HubError) as refused:
        parse_sensor_csv(bad, Catalogue(default_categories()), NOW)
    message = refused.value.message
    assert message.startswith("5 bad row(s), nothing imported")
    for line in ("line 3:", "line 4:", "line 5:", "line 6:", "line 7:"):
        assert line in message
    assert "line 2:" not in message


def test_header_must_name_the_columns() -> None:
    with pytest.raises(HubError, match="missing interval_s"):
        parse_sensor_csv("id,type,lon,lat,integrator\n", Catalogue(default_categories()), NOW)


def test_cli_imports_and_refuses_unknown_integrators(tmp_path: Path) -> None:
    env = {
        "CITYHUB_DATA_DIR": str(tmp_path),
        "CITYHUB_DATABASE_URL": "",
        "CITYHUB_REDIS_URL": "",
        "CITYHUB_MQTT_URL": "",
    }
    file = tmp_path / "sensors.csv"
    file.write_text(GOOD)
    assert cli(env, "migrate").returncode == 0  # sensors are imported into an existing hub
    unknown = cli(env, "sensors", "import", str(file))
    assert unknown.returncode == 2 and "no API key for integrator(s) acme" in unknown.stderr
    assert cli(env, "keys", "add", "acme").returncode == 0
    first = cli(env, "sensors", "import", str(file))
    assert first.returncode == 0, first.stderr
    assert "imported 2 sensors" in first.stdout and "(2 new, 0 updated)" in first.stdout
    again = cli(env, "sensors", "import", str(file))
    assert "(0 new, 2 updated)" in again.stdout
    file.write_text("id,type,lon,lat,integrator,interval_s\nx,gas,1000,0,acme,60\n")
    bad = cli(env, "sensors", "import", str(file))
    assert bad.returncode == 2 and "line 2:" in bad.stderr and "Traceback" not in bad.stderr
