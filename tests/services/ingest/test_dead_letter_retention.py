"""Dead letters are kept for `dead_letter_retention_h`, then pruned."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from services.hub import create_hub_app
from services.ingest.app import prune_dead_letters
from services.ingest.dead_letters import dead_letter_row, store_dead_letters
from shared.db.models import DeadLetter
from shared.settings import Settings
from tests.support.apps import runtime_of, serving


@pytest.mark.parametrize("mode", ["embedded", "production"])
async def test_old_dead_letters_are_pruned_and_recent_ones_kept(
    request: pytest.FixtureRequest, mode: str
) -> None:
    settings: Settings = request.getfixturevalue(f"{mode}_settings")
    app = create_hub_app(settings.model_copy(update={"dead_letter_retention_h": 24.0}))
    async with serving(app):
        runtime = runtime_of(app)
        now = datetime.now(UTC)
        rows = [
            dead_letter_row(channel="mqtt", topic=f"t/{age_h}", payload=b"{", reason="not_json",
                            detail="", received_at=now - timedelta(hours=age_h))
            for age_h in (1, 23, 25, 24 * 40)
        ]  # fmt: skip
        async with runtime.sessions() as session, session.begin():
            await store_dead_letters(session, rows)
        assert await prune_dead_letters(runtime) == 2
        async with runtime.sessions() as session:
            kept = set(await session.scalars(select(DeadLetter.topic)))
    assert kept == {"t/1", "t/23"}
