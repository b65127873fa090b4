"""The catalogue: at least 40 minor classes plus sensor alarm types; admins edit it."""

from __future__ import annotations

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
