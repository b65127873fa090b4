"""The catalogue: at least 40 minor classes plus sensor alarm types; admins edit it."""

from __future__ import annotations

import json

from services.hub import create_hub_app
from shared.settings import Settings
from tests.support.apps import add_key, add_user, login, runtime_of, serving


async def test_catalogue_read_and_edit(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        await add_user(app, "root", "admin", "city")
        await add_user(app, "desk", "dispatcher", "city")
        admin, desk = await login(client, "root"), await login(client, "desk")
        key = {"X-API-Key": await add_key(app, "crm")}

        everything = (await client.get("/api/v1/categories", headers=key)).json()
        minor = [c for c in everything if c["group"] in ("component", "event")]
        assert len(minor) >= 40
        majors = {c["major_zh"] for c in minor}
        assert {
            "公共设施",
            "交通设施",
            "市容环境设施",
            "园林绿化",
            "市容环境",
            "宣传广告",
            "施工管理",
            "街面秩序",
            "突发事件",
        } <= majors
        sensors = {c["name_zh"] for c in everything if c["group"] == "sensor"}
        assert {"积水", "井盖位移", "烟感", "可燃气体", "空气质量", "桥梁形变", "水质"} <= sensors
        assert {c["priority"] for c in everything} == {"normal", "urgent", "critical"}
        lamp = (await client.get("/api/v1/categories/C0201", headers=key)).json()
        assert (lamp["name_zh"], lamp["name_en"]) == ("路灯不亮", "Street lamp out")
        assert (await client.get("/api/v1/categories/X9999", headers=key)).status_code == 404

        changed = {**lamp, "handle_hours": 24, "department": "power"}
        assert (
            await client.put("/api/v1/categories/C0201", json=changed, headers=desk)
        ).status_code == 403
        mismatch = await client.put("/api/v1/categories/C0202", json=changed, headers=admin)
        assert mismatch.status_code == 422
        bad = await client.put(
            "/api/v1/categories/C0201", json={**lamp, "priority": "whenever"}, headers=admin
        )
        assert bad.status_code == 422
        ok = await client.put("/api/v1/categories/C0201", json=changed, headers=admin)
        assert ok.status_code == 200
        assert runtime_of(app).catalogue.get("C0201").handle_hours == 24  # type: ignore[union-attr]
        again = (await client.get("/api/v1/categories/C0201", headers=key)).json()
        assert again["department"] == "power"


async def test_category_edits_are_bounded(embedded_settings: Settings) -> None:
    app = create_hub_app(embedded_settings)
    async with serving(app) as client:
        await add_user(app, "root", "admin", "city")
        admin = {**await login(client, "root"), "content-type": "application/json"}
        lamp = (await client.get("/api/v1/categories/C0201", headers=admin)).json()
        path = "/api/v1/categories/C0201"
        for raw in ('"handle_hours": Infinity', '"accept_hours": NaN', '"handle_hours": 1e9'):
            body = json.dumps(lamp)[:-1] + ", " + raw + "}"  # a later key wins in JSON objects
            reply = await client.put(path, content=body, headers=admin)
            assert reply.status_code == 422, (raw, reply.text)
        for change in (
            {"accept_hours": 50, "handle_hours": 48},  # accepted after it is due
            {"priority": "critical", "handle_hours": 8000},  # ×4 at normal: 32,000 h
            {"deadlines": {"normal": {"accept_hours": 5, "handle_hours": 1}}},
            {"deadlines": {"urgent": {"accept_hours": 1, "handle_hours": 9000}}},
            {"department": "nasa"},  # not a bureau kind of the directory
            {"department": "cgj@500105"},
            {"name_en": "x" * 201},
            {"major_zh": "类" * 101},
            {"keywords": ["井盖"] * 51},
            {"keywords": ["长" * 51]},
            {"attributes": [{"code": "a", "datatype": "string", "description": "x" * 1001}]},
        ):
            reply = await client.put(path, json={**lamp, **change}, headers=admin)
            assert reply.status_code == 422, (change, reply.text)
        unknown = await client.put(path, json={**lamp, "department": "nasa"}, headers=admin)
        assert "cgj" in unknown.json()["detail"]  # names the kinds there are
        assert (await client.get(path, headers=admin)).json() == lamp
        longest = {**lamp, "accept_hours": 2190, "handle_hours": 2190, "priority": "critical"}
        reply = await client.put(path, json=longest, headers=admin)  # 8,760 h at normal
        assert reply.status_code == 200, reply.text
