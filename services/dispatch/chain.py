"""Timeline entries for many tickets in one transaction, chained exactly like `timeline.append`.

`timeline.append` reads the ticket's last entry and flushes one ORM row per call; the scheduler
fires hundreds of timers per transaction, so it reads every head once
(`scheduler_store.timeline_heads`), keeps each ticket's (seq, hash) here and inserts all entries
with one statement. Rows come from `timeline.entry_row`, so `timeline.verify_chain` checks
them and later `append` calls continue the chain. The caller holds the tickets' row locks.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from services.dispatch.timeline import GENESIS, entry_row


class ChainWriter:
    """Builds the next timeline entries (as `ticket_transitions` rows) of several tickets."""

    def __init__(self, heads: dict[uuid.UUID, tuple[int, str]]) -> None:
        self._heads = dict(heads)
        self.rows: list[dict[str, Any]] = []

    def append(
        self,
        ticket_id: uuid.UUID,
        *,
        at: datetime,
        actor: str,
        action: str,
        from_status: str | None,
        to_status: str,
        note: str = "",
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The ticket's next entry as a row (also kept in `rows`, in order)."""
        seq, prev = self._heads.get(ticket_id, (0, GENESIS))
        row = entry_row(
            ticket_id, seq + 1, prev, at=at, actor=actor, action=action,
            from_status=from_status, to_status=to_status, note=note, data=data,
        )  # fmt: skip
        self._heads[ticket_id] = (row["seq"], row["hash"])
        self.rows.append(row)
        return row
