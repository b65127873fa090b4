"""One contract, both backends: the embedded ring and the Redis stream keep the same history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis.asyncio

from shared.live import LiveItem, LiveLog
from shared.live.memory import MemoryLiveLog
from shared.live.redis_log import RedisLiveLog

AT = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
MakeLog = Callable[..., LiveLog]


@pytest.fixture(params=["memory", "redis"])
async def make_log(request: pytest.FixtureRequest) -> AsyncIterator[MakeLog]:
    """A factory of logs of each backend (Redis isolated by a unique key prefix)."""
    made: list[LiveLog] = []

    def make(**retention: int) -> LiveLog:
        if request.param == "memory":
            retention.pop("trim_every", None)  # the ring trims on every append
            log: LiveLog = MemoryLiveLog(**retention)
        else:
            url: str = request.getfixturevalue("redis_url")
            prefix: str = request.getfixturevalue("bus_prefix")
            request.getfixturevalue("redis_cleanup")
            log = RedisLiveLog(redis.asyncio.Redis.from_url(url), prefix, **retention)
        made.append(log)
        return log

    yield make
    for log in made:
        await log.close()


def item(n: int, street: str | None = "500103001") -> LiveItem:
    return LiveItem(
        "tickets", "ticket.created", AT, {"n": n, "名": "解放碑"}, "500103" if street else None,
        street,
    )  # fmt: skip


async def test_seqs_increase_densely_and_frames_carry_them(make_log: MakeLog) -> None:
    log = make_log()
    empty = await log.head()
    assert empty.seq == 0
    seqs = await log.append([item(1), item(2)]) + await log.append([item(3, street=None)])
    assert seqs == [1, 2, 3]
    head = await log.head()
    assert (head.epoch, head.seq) == (empty.epoch, 3)
    records = await log.read_after(0, 10)
    assert records is not None
    assert [r.seq for r in records] == [1, 2, 3]
    assert (records[0].district, records[0].street) == ("500103", "500103001")
    assert (records[2].district, records[2].street) == (None, None)
    frame = json.loads(records[1].frame)
    assert frame == {
        "seq": 2, "epoch": head.epoch, "type": "ticket.created", "stream": "tickets",
        "at": "2026-11-29T08:00:00+00:00", "data": {"n": 2, "名": "解放碑"},
    }  # fmt: skip


async def test_read_after_pages_and_reports_what_it_cannot_reach(make_log: MakeLog) -> None:
    log = make_log(retain_s=0, retain_count=5, trim_every=1)
    await log.append([item(n) for n in range(12)])
    await log.append([item(12)])
    head = await log.head()
    assert await log.read_after(head.seq - 5, 10) is not None  # the newest 5 are kept
    assert await log.read_after(0, 10) is None  # trimmed away: the caller resyncs
    assert await log.read_after(head.seq + 3, 10) is None  # beyond the head: history was lost
    assert await log.read_after(head.seq, 10) == []
    page = await log.read_after(head.seq - 4, 2)
    assert page is not None and [r.seq for r in page] == [head.seq - 3, head.seq - 2]


async def test_follow_waits_for_the_next_append(make_log: MakeLog) -> None:
    log = make_log()
    await log.append([item(1)])
    assert await log.follow(1, 50) == []
    waiting = asyncio.create_task(log.follow(1, 5_000))
    await asyncio.sleep(0.05)  # let the follower block before appending
    await log.append([item(2), item(3)])
    got = await asyncio.wait_for(waiting, 5)
    assert [r.seq for r in got] == [2, 3]


async def test_history_young_enough_is_kept_beyond_the_count(make_log: MakeLog) -> None:
    log = make_log(retain_s=3_600, retain_count=3)
    await log.append([item(n) for n in range(10)])
    records = await log.read_after(0, 100)
    assert records is not None and len(records) == 10  # all younger than an hour


async def test_an_item_whose_key_is_held_is_not_appended_again(make_log: MakeLog) -> None:
    """A bus message redelivered after its append (its ack lost) is not streamed twice."""
    log = make_log()
    first, second = replace(item(1), key="message-1"), replace(item(2), key="message-2")
    assert await log.append([first, item(3)]) == [1, 2]
    assert await log.append([first, second, item(4), second]) == [3, 4]
    records = await log.read_after(0, 10)
    assert records is not None
    assert [json.loads(r.frame)["data"]["n"] for r in records] == [1, 3, 2, 4]


async def test_a_key_is_forgotten_with_its_trimmed_message(make_log: MakeLog) -> None:
    log = make_log(retain_s=0, retain_count=1, trim_every=1)
    keyed = replace(item(1), key="message-1")
    assert await log.append([keyed]) == [1]
    await log.append([item(2), item(3)])  # message 1 is trimmed away, and its key with it
    assert await log.append([keyed]) == [4]


async def test_a_lost_redis_history_gets_a_new_epoch(
    redis_url: str, bus_prefix: str, redis_cleanup: None
) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    log = RedisLiveLog(client, bus_prefix)
    await log.append([item(1), item(2)])
    before = await log.head()
    await client.delete(*[k async for k in client.scan_iter(match=bus_prefix + "live:*")])
    after = await log.head()
    assert after.epoch != before.epoch and after.seq == 0
    assert await log.append([item(3)]) == [1]
    await log.close()
