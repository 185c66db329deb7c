"""InProcessBus specifics: parked messages survive in a file and can be put back; publish
waits for handling."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path

import pytest

from icrs_shared.bus import BusUnavailable, InProcessBus, parking
from icrs_shared.events import Envelope
from icrs_shared.testing import eventually


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


class Flaky:
    """A handler that fails until it is mended, recording the events it handled."""

    def __init__(self) -> None:
        self.mended = False
        self.handled: list[str] = []

    async def __call__(self, env: Envelope) -> None:
        if not self.mended:
            raise ValueError("not yet")
        self.handled.append(str(env.id))


async def parked_on(bus: InProcessBus, handler: Flaky, *envelopes: Envelope) -> None:
    await bus.subscribe("intake", "flaky", ["#"], handler)
    await bus.publish(list(envelopes))  # returns once they are parked


async def test_a_message_put_back_is_handed_to_its_consumer_again(tmp_path: Path) -> None:
    bus = InProcessBus(delivery_limit=1, parking_dir=tmp_path, replay_every=0.05)
    handler = Flaky()
    first, second = event(), event()
    await bus.start()
    try:
        await parked_on(bus, handler, first, second)
        assert {p.event_id for p in parking.parked(tmp_path, "intake")} == {
            str(first.id),
            str(second.id),
        }
        handler.mended = True
        [back] = parking.put_back(tmp_path, "intake", {str(first.id)})
        assert back.event_id == str(first.id)
        await eventually(lambda: handler.handled == [str(first.id)])
        # The other stays parked, in the file and in the bus's record, until it is put back.
        assert [p.event_id for p in parking.parked(tmp_path, "intake")] == [str(second.id)]
        assert [p.event_id for p in await bus.parked("intake")] == [str(second.id)]
        assert parking.put_back(tmp_path, "intake", None)[0].event_id == str(second.id)
        await eventually(lambda: handler.handled == [str(first.id), str(second.id)])
        assert await bus.parked("intake") == []
        assert parking.waiting(tmp_path, "intake") == []
        assert sorted(f.name for f in tmp_path.iterdir()) == [".lock"]
    finally:
        await bus.close()


async def test_a_message_put_back_that_fails_again_is_parked_again(tmp_path: Path) -> None:
    bus = InProcessBus(delivery_limit=1, parking_dir=tmp_path, replay_every=0.05)
    handler = Flaky()
    env = event()
    await bus.start()
    try:
        await parked_on(bus, handler, env)
        parking.put_back(tmp_path, "intake", None)
        await eventually(lambda: parking.waiting(tmp_path, "intake") == [])
        [again] = parking.parked(tmp_path, "intake")
        assert (again.event_id, again.deliveries) == (str(env.id), 2)  # counted anew
        assert [p.event_id for p in await bus.parked("intake")] == [str(env.id)]
    finally:
        await bus.close()


async def test_what_is_put_back_waits_for_its_consumer_and_survives_a_stop(
    tmp_path: Path,
) -> None:
    # Parked by one platform, put back while none runs: the next one hands it over once
    # its consumer subscribes, also when the one before stopped while handing it over.
    bus = InProcessBus(delivery_limit=1, parking_dir=tmp_path)
    handler = Flaky()
    env = event()
    await bus.start()
    try:
        await parked_on(bus, handler, env)
    finally:
        await bus.close()
    parking.put_back(tmp_path, "intake", None)

    stuck = asyncio.Event()

    async def hangs(_: Envelope) -> None:
        stuck.set()
        await asyncio.Event().wait()

    bus = InProcessBus(delivery_limit=1, parking_dir=tmp_path, replay_every=0.05)
    await bus.start()
    try:
        await asyncio.sleep(0.2)  # rounds with no consumer subscribed: it waits
        assert [p.event_id for p in parking.waiting(tmp_path, "intake")] == [str(env.id)]
        await bus.subscribe("intake", "flaky", ["#"], hangs)
        await asyncio.wait_for(stuck.wait(), 5)
    finally:
        await bus.close()  # while the handler holds it
    assert [p.event_id for p in parking.waiting(tmp_path, "intake")] == [str(env.id)]

    handler.mended = True
    bus = InProcessBus(delivery_limit=1, parking_dir=tmp_path, replay_every=0.05)
    await bus.subscribe("intake", "flaky", ["#"], handler)
    await bus.start()
    try:
        await eventually(lambda: handler.handled == [str(env.id)])
        assert parking.waiting(tmp_path, "intake") == []
    finally:
        await bus.close()


def test_lines_parked_while_others_are_put_back_are_not_lost(tmp_path: Path) -> None:
    # The platform appends while `icrs parked replay` rewrites the file: the lock keeps
    # every line in one file or the other.
    def line(n: int) -> dict[str, object]:
        return {"consumer": "c", "reason": "delivery_limit", "deliveries": 6, "event": {"id": n}}

    def parks(start: int) -> None:
        for n in range(start, start + 300):
            parking.park_line(tmp_path, "intake", line(n))

    threads = [threading.Thread(target=parks, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    moved: list[str] = []
    while any(t.is_alive() for t in threads):
        moved += [p.event_id or "" for p in parking.put_back(tmp_path, "intake", None)]
    for t in threads:
        t.join()
    left = [p.event_id for p in parking.parked(tmp_path, "intake")]
    waiting = [p.event_id for p in parking.waiting(tmp_path, "intake")]
    assert moved == waiting
    assert sorted(moved + left, key=int) == [
        str(k * 1000 + n) for k in range(3) for n in range(300)
    ]
