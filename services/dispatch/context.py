"""Dispatch's per-process state: routing rules, the department directory, calendar, merge policy.

Built once per process (a component resource, kept in `runtime.extras`); routing rules are reloaded
periodically so an admin's edit made through another replica applies here too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends

from services.dispatch.calendar import WorkCalendar
from services.dispatch.departments import Directory, load_kinds
from services.dispatch.merging import MergePolicy
from services.dispatch.routing import RoutingRule
from services.dispatch.rules import default_rules
from services.dispatch.rules_store import ensure_rules, load_rules
from services.dispatch.work_calendar import load_calendar
from shared.db.engine import is_postgres
from shared.runtime import Runtime
from shared.web import RuntimeDep

logger = logging.getLogger(__name__)

CONTEXT_KEY = "dispatch"
RULES_REFRESH_S = 30.0  # how soon a rules edit made through another replica applies here


@dataclass
class DispatchContext:
    """What dispatch's routes and consumers share in one process."""

    calendar: WorkCalendar
    directory: Directory
    policy: MergePolicy
    rules: list[RoutingRule]  # replaced wholesale on edit or refresh, never mutated
    row_locks: bool  # PostgreSQL: FOR UPDATE and advisory locks; SQLite: one writer anyway


@asynccontextmanager
async def open_context(runtime: Runtime) -> AsyncIterator[DispatchContext]:
    """Load the calendar, the directory and the routing rules (seeding an empty table)."""
    config = runtime.settings.dispatch
    row_locks = is_postgres(runtime.engine)
    calendar = await asyncio.to_thread(load_calendar, config.calendar_file)
    directory = Directory(runtime.hierarchy, load_kinds())
    rules = await ensure_rules(runtime.sessions, default_rules(), row_locks=row_locks)
    policy = MergePolicy(config.merge_distance_m, timedelta(hours=config.merge_window_h))
    yield DispatchContext(calendar, directory, policy, rules, row_locks)


def context_of(runtime: Runtime) -> DispatchContext:
    """The dispatch context a started process built."""
    context: DispatchContext = runtime.extras[CONTEXT_KEY]
    return context


async def get_context(runtime: RuntimeDep) -> DispatchContext:
    """Dependency: the process's dispatch context."""
    return context_of(runtime)


ContextDep = Annotated[DispatchContext, Depends(get_context)]


async def refresh_rules(runtime: Runtime) -> None:
    """Reload the routing rules periodically (edits through other replicas)."""
    while True:
        await asyncio.sleep(RULES_REFRESH_S)
        try:
            async with runtime.sessions() as session:
                rules = await load_rules(session)
            if rules:
                context_of(runtime).rules = rules
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("routing rules refresh failed; keeping the loaded ones")
