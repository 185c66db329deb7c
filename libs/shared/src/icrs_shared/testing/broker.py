"""A RabbitMQ node of a test's own, to stop and start without disturbing anyone else's
broker, and `rabbitmqctl` reads of what a broker's queues hold.

    node = BrokerNode()
    await node.start()          # answers on node.url after some seconds
    await node.restart()        # same data: durable queues and messages survive
    queues = await node.queues(prefix=namespace)
    await node.close()          # stops it and removes its files

As root, the node runs as the `rabbitmq` user (the packaged `rabbitmq-server` script
switches to it), so its directory is made outside pytest's private temp dirs and given
to that user.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _two_ports(first: int | None = None) -> tuple[int, int]:
    """Two free ports, not the same one twice."""
    first = first or free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def rabbitmq_installed() -> bool:
    return shutil.which("rabbitmq-server") is not None and shutil.which("rabbitmqctl") is not None


@dataclass(frozen=True)
class QueueState:
    name: str
    ready: int
    unacked: int

    @property
    def messages(self) -> int:
        return self.ready + self.unacked


QueueReader = Callable[[], Awaitable[list[QueueState]]]


async def list_queues(node: str | None = None, *, prefix: str = "") -> list[QueueState]:
    """The queues of `node` (rabbitmqctl's default node when None) whose name starts with
    `prefix`, with their ready and unacknowledged message counts."""
    command = ["rabbitmqctl", "-q"]
    if node is not None:
        command += ["-n", node]
    command += ["list_queues", "name", "messages_ready", "messages_unacknowledged"]
    command += ["--formatter", "json"]
    out = await _run(command, within=60)
    rows = json.loads(out or "[]")
    return [
        QueueState(str(r["name"]), int(r["messages_ready"]), int(r["messages_unacknowledged"]))
        for r in rows
        if str(r["name"]).startswith(prefix)
    ]


async def _run(command: list[str], *, within: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), within)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        said = (out + err).decode(errors="replace").strip()
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}: {said}")
    return out.decode()


class BrokerNode:
    """One RabbitMQ node on ports of its own, its data in a directory of its own."""

    def __init__(self, *, name: str | None = None, port: int | None = None) -> None:
        self.name = name or f"icrsfault{uuid.uuid4().hex[:8]}@localhost"
        self.port, self.dist_port = _two_ports(port)
        self.dir = Path(tempfile.mkdtemp(prefix="icrs-broker-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._configure()

    def _configure(self) -> None:
        conf = self.dir / "rabbitmq.conf"
        conf.write_text(f"listeners.tcp.default = 127.0.0.1:{self.port}\n")
        if os.geteuid() == 0:
            # The packaged script runs the node as `rabbitmq`: its files must be that user's.
            user = pwd.getpwnam("rabbitmq")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            os.chown(conf, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _env(self) -> dict[str, str]:
        d = self.dir
        return {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))} | {
            "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq.conf"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(d / "feature_flags"),
            "RABBITMQ_LOG_BASE": str(d / "log"),
            "RABBITMQ_PID_FILE": str(d / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
        }

    async def start(self, within: float = 90.0) -> None:
        """Start the node (on the same data as before) and wait until it takes connections.
        A first start that fails (a port taken meanwhile) is tried again on other ports."""
        if self.running:
            return
        for attempt in range(3):
            self.process = self._spawn()
            deadline = time.monotonic() + within
            while not await _speaks_amqp(self.port):
                if self.process.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the broker did not answer in {within}s:\n{self.output_tail()}"
                    )
                await asyncio.sleep(0.2)
            else:
                self.starts += 1
                return
            if self.starts > 0 or attempt == 2:
                raise RuntimeError(f"rabbitmq-server exited:\n{self.output_tail()}")
            self.port, self.dist_port = _two_ports()
            self._configure()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Not an asyncio subprocess: the node may outlive the event loop that started it.
        with (self.dir / "server.out").open("ab") as out:
            return subprocess.Popen(
                ["rabbitmq-server"],  # noqa: S607 - found on PATH, as an operator runs it
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def stop(self, within: float = 60.0) -> None:
        """Stop the node as an operator does (`rabbitmqctl stop`); kill it if that fails."""
        if not self.running:
            return
        with contextlib.suppress(RuntimeError, TimeoutError):
            await _run(["rabbitmqctl", "-q", "-n", self.name, "stop"], within=within)
        assert self.process is not None
        try:
            await asyncio.to_thread(self.process.wait, within)
        except subprocess.TimeoutExpired:
            self._kill()

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def queues(self, *, prefix: str = "") -> list[QueueState]:
        return await list_queues(self.name, prefix=prefix)

    async def close(self) -> None:
        try:
            await self.stop()
        finally:
            self._kill()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _kill(self) -> None:
        # The node runs under `su` in a session of its own: its pid file names the VM.
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((self.dir / "pid").read_text().strip()), signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def output_tail(self, lines: int = 30) -> str:
        try:
            text = (self.dir / "server.out").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def _speaks_amqp(port: int) -> bool:
    """Whether a broker listens on `port`: it answers the AMQP 0-9-1 protocol header with
    a method frame (Connection.Start) on channel 0."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"AMQP\x00\x00\x09\x01")
        frame = await asyncio.wait_for(reader.readexactly(3), 5.0)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return frame == b"\x01\x00\x00"


async def delete_queues(
    amqp_url: str, queues: Iterable[str], exchanges: Iterable[str] = ()
) -> None:
    """Remove queues and exchanges a test made on a broker others use."""
    connection = await aio_pika.connect(amqp_url)
    try:
        for name in queues:
            async with connection.channel() as channel:
                await channel.queue_delete(name)
        for name in exchanges:
            async with connection.channel() as channel:
                await channel.exchange_delete(name)
    finally:
        await connection.close()


async def local_node_queues(amqp_url: str, prefix: str) -> QueueReader | None:
    """A reader of the queues named `prefix...` on the broker at `amqp_url` through
    `rabbitmqctl` and its default node, when that is the broker; else None. Call it once
    the queues are declared: if none is seen, another node answered."""
    if shutil.which("rabbitmqctl") is None:
        return None
    if urlsplit(amqp_url).hostname not in ("127.0.0.1", "localhost", "::1"):
        return None

    async def read() -> list[QueueState]:
        return await list_queues(prefix=prefix)

    try:
        found = await read()
    except (RuntimeError, TimeoutError):
        return None
    return read if found else None
