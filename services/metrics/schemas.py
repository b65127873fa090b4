"""Response models of the KPI API; each field says how the figure is defined (docs/kpis.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.metrics.formulas import Grade

Window = Literal["today", "24h", "7d", "30d"]
Level = Literal["district", "street", "department"]
Bucket = Literal["hour", "day"]
FINITE = ConfigDict(allow_inf_nan=False)
RATE = "A share from 0 to 1 (4 decimals); null when its denominator is 0, never 0 or 1 then."


class Intake(BaseModel):
    """Events received in the window."""

    model_config = FINITE

    total: int = Field(description="Events received in the window (by `received_at`).")
    by_channel: dict[Literal["hotline", "sensor", "grid", "api"], int] = Field(
        description="Events by intake channel: `hotline` (12345 CRM and Open311), `sensor` "
        "(IoT alarms), `grid` (grid workers' reports), `api` (everything else); all four keys "
        "are always present."
    )


class HourCount(BaseModel):
    """Intake and closures of one local hour (or day) of the window."""

    model_config = FINITE

    hour: datetime = Field(
        description="Start of the hour (or day, see `bucket`) in CITYHUB_TIMEZONE, with its "
        "offset; the first and last may be cut by the window's `start` and `end`."
    )
    intake: int = Field(description="Events received in it (they add up to `intake.total`).")
    closed: int = Field(
        description="Tickets closed in it, merged excluded (they add up to "
        "`close_time_s.count`; not `closed`, which counts tickets due in the window)."
    )


class Timing(BaseModel):
    """A duration's mean and 90th percentile, in seconds."""

    model_config = FINITE

    count: int = Field(description="Tickets measured.")
    mean: float | None = Field(description="Mean in seconds (1 decimal); null when none.")
    p90: float | None = Field(
        description="90th percentile in seconds, nearest rank (the smallest measured value with "
        "at least 90 % of them at or below it); null when none. Only on `GET /api/v1/kpis`."
    )


class Satisfaction(BaseModel):
    """Call-back (回访) scores given in the window."""

    model_config = FINITE

    mean: float | None = Field(description="Mean score 1–5 (2 decimals); null without scores.")
    count: int = Field(description="Scores given in the window (each call-back counts once).")
    satisfied_rate: float | None = Field(description="Scores ≥ 4 / count. " + RATE)


class CategoryCount(BaseModel):
    """A category and its events in the window."""

    model_config = FINITE

    code: str
    name: str = Field(description="The catalogue's Chinese name (the code when unknown).")
    events: int


class Hotspot(BaseModel):
    """A street and its events in the window."""

    model_config = FINITE

    code: str
    name: str
    district: str | None
    events: int


class Headline(BaseModel):
    """The figures a ranking row and a `kpis` live message carry."""

    model_config = FINITE

    filed: int = Field(description="Tickets opened (立案) in the window.")
    backlog: int = Field(description="Tickets open now (new to resolved, parked included).")
    parked: int = Field(description="Tickets parked (挂账) now.")
    overdue: int = Field(
        description="Open tickets past a deadline now: still to be handled (new, dispatched, "
        "accepted, in progress) and a deadline breach was recorded, or the handling deadline "
        "(the acceptance deadline before acceptance) has passed."
    )
    due: int = Field(
        description="应结案数: tickets whose handling deadline falls inside the window, as it "
        "stands after approved deferrals (a deadline the ticket missed stands: an escalation's "
        "follow-up deadline does not replace it); rejected, parked and merged tickets excluded."
    )
    closed: int = Field(description="Of `due`, tickets closed (结案) by now.")
    closed_on_time: int = Field(
        description="按期结案数: of `due`, tickets closed no later than that deadline."
    )
    deferred: int = Field(description="Of `due`, tickets with at least one approved deferral.")
    verifications: int = Field(description="Verifications (核查) done in the window.")
    failed_verifications: int = Field(
        description="Verifications in the window that failed (返工: back to the department)."
    )
    on_time_close_rate: float | None = Field(
        description="按期结案率 = closed_on_time / due. " + RATE
    )
    close_rate: float | None = Field(description="结案率 = closed / due. " + RATE)
    extension_rate: float | None = Field(description="延期率 = deferred / due. " + RATE)
    rework_rate: float | None = Field(
        description="返工率 = failed_verifications / verifications. " + RATE
    )
    satisfaction: Satisfaction
    score: float | None = Field(
        description="综合评价, 0–100 (1 decimal): the weighted mean of on_time_close_rate, "
        "close_rate, 1 − rework_rate and satisfaction.satisfied_rate (default weights 40, 20, "
        "20, 20; CITYHUB_KPI__WEIGHTS__*); a null rate drops out and the rest are re-weighted; "
        "null when every rate is null."
    )
    grade: Grade | None = Field(
        description="A ≥ 90, B ≥ 75, C ≥ 60, D ≥ 40, else E (of the score as shown)."
    )


class KpiHead(BaseModel):
    """What a KPI answer is about (its fields come first)."""

    model_config = FINITE

    scope: str = Field(
        description="city, district:<code>, street:<code> or department:<code> (a department "
        "counts only its tickets inside the caller's scope)"
    )
    name: str = Field(description="The area's or the department's name.")
    window: Window
    start: datetime = Field(description="Start of the window (inclusive).")
    end: datetime = Field(description="End of the window (inclusive): when it was computed.")
    timezone: str = Field(description="The zone whose midnight starts `today` (CITYHUB_TIMEZONE).")
    intake: Intake


class Kpis(Headline, KpiHead):
    """Every KPI of one scope and window."""

    merge_ratio: float | None = Field(
        description="Events in the window that joined an existing ticket (a repeat report, or "
        "its ticket was merged into another) / events in the window. " + RATE
    )
    accept_time_s: Timing = Field(
        description="From filing to the ticket's first acceptance, for tickets first accepted "
        "in the window."
    )
    close_time_s: Timing = Field(
        description="From filing to closing, for tickets closed in the window (merged excluded)."
    )
    top_categories: list[CategoryCount] = Field(
        description="The 10 categories with the most events in the window, most first."
    )
    hotspots: list[Hotspot] | None = Field(
        description="The 10 streets with the most events in the window, most first; for city "
        "and district scopes (null for a street or a department)."
    )
    bucket: Bucket = Field(
        description="What an `hourly` entry spans: `hour` for `today` and `24h`, `day` (local "
        "days) for `7d` and `30d`."
    )
    hourly: list[HourCount] = Field(
        description="Every local hour (or day) of the window, oldest first, empty ones as 0: "
        "`today` from midnight to the current hour, `24h` the 25 hours it touches."
    )


class UnitHead(BaseModel):
    """Which unit a ranking row is."""

    model_config = FINITE

    rank: int = Field(description="1 = best score; units without a score come last, by code.")
    code: str
    name: str
    intake: int = Field(description="Events received in the window.")


class RankedUnit(Headline, UnitHead):
    """One district, street or department of a ranking."""


class Ranking(BaseModel):
    """Units inside the caller's scope (or `parent`), best score first."""

    model_config = FINITE

    level: Level
    parent: str = Field(description="The scope the units lie in.")
    window: Window
    start: datetime
    end: datetime
    items: list[RankedUnit]
