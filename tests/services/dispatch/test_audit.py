"""`cityhub audit verify` finds timeline rows edited or deleted behind the hub's back."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import delete, select, update

from shared.db.models import TicketTransition
from shared.settings import Settings
from tests.support.processes import cli
from tests.support.tickets import running_hub, shifted


def _env(settings: Settings) -> dict[str, str]:
    return {
        "CITYHUB_DATA_DIR": str(settings.data_dir),
        "CITYHUB_DATABASE_URL": settings.database_url or "",
        "CITYHUB_REDIS_URL": settings.redis_url or "",
        "CITYHUB_MQTT_URL": "",
    }


@pytest.mark.parametrize("mode", ["embedded", "production"])
async def test_an_edited_note_breaks_the_chain(request: pytest.FixtureRequest, mode: str) -> None:
    settings: Settings = request.getfixturevalue(f"{mode}_settings")
    async with running_hub(settings) as hub:
        street = hub.streets()[0]
        boss = await hub.user("boss", "manager", "city")
        lon, lat = hub.point(street)
        honest = await hub.report(category="C0501", location=shifted(lon, lat))
        forged = await hub.report(category="C0501", location=shifted(lon, lat, 500))
        for n, ticket_id in enumerate((honest, forged)):
            owner = (await hub.ticket(ticket_id, boss))["owner_code"]  # C0501: 属地, the street
            desk = await hub.user(f"desk{n}", "dispatcher", f"street:{owner}")
            await hub.ok(ticket_id, desk, "comment", note="已电话联系报告人")
            await hub.ok(ticket_id, desk, "reject", reason="重复报告")

        intact = cli(_env(settings), "audit", "verify")
        assert intact.returncode == 0, intact.stderr
        assert "every ticket timeline verifies" in intact.stdout

        async with hub.runtime.sessions() as session, session.begin():
            await session.execute(
                update(TicketTransition)
                .where(TicketTransition.ticket_id == uuid.UUID(forged), TicketTransition.seq == 2)
                .values(note="未联系")
            )
            seqs = await session.scalars(
                select(TicketTransition.seq).where(TicketTransition.ticket_id == uuid.UUID(honest))
            )
            assert list(seqs) == [1, 2, 3]

    broken = cli(_env(settings), "audit", "verify")
    assert broken.returncode == 1
    assert f"ticket {forged}: entry 2: content does not match its hash" in broken.stderr
    assert honest not in broken.stderr


async def test_deleted_last_entries_are_noticed(embedded_settings: Settings) -> None:
    async with running_hub(embedded_settings) as hub:
        street = hub.streets()[1]
        boss = await hub.user("boss", "manager", "city")
        lon, lat = hub.point(street)
        trimmed = await hub.report(category="C0501", location=shifted(lon, lat))
        emptied = await hub.report(category="C0501", location=shifted(lon, lat, 500))
        for n, ticket_id in enumerate((trimmed, emptied)):
            owner = (await hub.ticket(ticket_id, boss))["owner_code"]
            desk = await hub.user(f"desk{n}", "dispatcher", f"street:{owner}")
            await hub.ok(ticket_id, desk, "reject", reason="重复报告")
        assert cli(_env(embedded_settings), "audit", "verify").returncode == 0

        async with hub.runtime.sessions() as session, session.begin():
            await session.execute(  # hide the rejection: drop the newest entry
                delete(TicketTransition).where(
                    TicketTransition.ticket_id == uuid.UUID(trimmed), TicketTransition.seq == 2
                )
            )
            await session.execute(
                delete(TicketTransition).where(TicketTransition.ticket_id == uuid.UUID(emptied))
            )

    broken = cli(_env(embedded_settings), "audit", "verify")
    assert broken.returncode == 1
    assert f"ticket {trimmed}: entry 2: later entries missing" in broken.stderr
    assert f"ticket {emptied}: entry 1: every entry missing" in broken.stderr
