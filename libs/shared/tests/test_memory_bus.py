"""InProcessBus specifics: parked messages survive in a file; publish waits for handling."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from icrs_shared.bus import BusUnavailable, InProcessBus
from icrs_shared.events import Envelope


def event() -> Envelope:
    return Envelope(source="/icrs/test", type="icrs.case.updated", subject=str(uuid.uuid4()))


async def test_parked_messages_are_appended_to_the_service_file(tmp_path: Path) -> None:
    bus = InProcessBus(delivery_limit=1, parking_dir=tmp_path)
    await bus.start()

    async def broken(env: Envelope) -> None:
        raise ValueError("nope")

    try:
        await bus.subscribe("intake", "broken", ["#"], broken)
        env = event()
        await bus.publish([env])  # returns once the message is parked
    finally:
        await bus.close()
    [line] = (tmp_path / "intake.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["consumer"] == "broken"
    assert record["reason"] == "delivery_limit"
    assert record["deliveries"] == 2
    assert record["error_type"] == "ValueError"
    assert record["event"]["id"] == str(env.id)


async def test_publish_returns_after_every_consumer_handled_it() -> None:
    bus = InProcessBus()
    await bus.start()
    done: list[str] = []

    async def slow(env: Envelope) -> None:
        await asyncio.sleep(0.1)
        done.append("slow")

    async def fast(env: Envelope) -> None:
        done.append("fast")

    try:
        await bus.subscribe("a", "slow", ["case.*"], slow)
        await bus.subscribe("b", "fast", ["case.updated"], fast)
        await bus.publish([event()])
        assert sorted(done) == ["fast", "slow"]
    finally:
        await bus.close()


async def test_a_stopped_bus_refuses_to_publish() -> None:
    bus = InProcessBus()
    with pytest.raises(BusUnavailable):
        await bus.publish([event()])
    await bus.start()

    async def h(env: Envelope) -> None:
        return None

    try:
        await bus.subscribe("a", "x", ["#"], h)
        with pytest.raises(ValueError, match="already subscribed"):
            await bus.subscribe("a", "x", ["#"], h)
    finally:
        await bus.close()


async def test_nothing_is_published_while_a_required_consumer_is_not_subscribed() -> None:
    bus = InProcessBus(required=[("audit", "log")])
    await bus.start()
    seen: list[uuid.UUID] = []

    async def log(env: Envelope) -> None:
        seen.append(env.id)

    try:
        early = event()
        with pytest.raises(BusUnavailable, match="is not subscribed"):
            await bus.publish([early])
        await bus.subscribe("audit", "log", ["#"], log)
        await bus.publish([early])
        assert seen == [early.id]
        await bus.unsubscribe("audit")
        with pytest.raises(BusUnavailable):
            await bus.publish([event()])
    finally:
        await bus.close()
