"""Parked messages of the one-process default, made the way its bus makes them."""

from __future__ import annotations

from pathlib import Path

from ..bus import InProcessBus
from ..events import Envelope


async def park(directory: Path, service: str, consumer: str, envelope: Envelope) -> None:
    """Park `envelope` in the parking files under `directory` as the in-process bus does
    when `consumer` of `service` fails on it every time."""

    async def fails(_: Envelope) -> None:
        raise RuntimeError("fails every time")

    bus = InProcessBus(delivery_limit=0, parking_dir=directory)
    await bus.subscribe(service, consumer, ["#"], fails)
    await bus.start()
    try:
        await bus.publish([envelope])  # returns once it is parked
    finally:
        await bus.close()
