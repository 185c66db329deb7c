"""Finding the real RabbitMQ and PostgreSQL the tests run on (contract §2).

In order: `ICRS_TEST_AMQP_URL` / `ICRS_TEST_DATABASE_URL`; the local default ports when
they answer; testcontainers when Docker is there. Otherwise the run stops and says what
to start: tests never silently skip the real broker or database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"
LOCAL_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

HOW_TO_START = (
    "ICRS tests need a real RabbitMQ and PostgreSQL. Set ICRS_TEST_AMQP_URL and "
    "ICRS_TEST_DATABASE_URL, or start them on the default local ports "
    "(RabbitMQ 127.0.0.1:5672 guest/guest: `rabbitmq-server -detached`; PostgreSQL "
    "127.0.0.1:5432, user postgres with trust auth: `pg_ctlcluster <version> main start`), "
    "or make Docker available for testcontainers."
)


class ServiceMissing(RuntimeError):
    pass


def answers(url: str, default_port: int, timeout: float = 1.0) -> bool:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def docker_available() -> bool:
    if shutil.which("docker") is None and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def amqp_url() -> Iterator[str]:
    yield from _resolve("ICRS_TEST_AMQP_URL", LOCAL_AMQP, 5672, _rabbit_container, what="RabbitMQ")


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    yield from _resolve(
        "ICRS_TEST_DATABASE_URL", LOCAL_DATABASE, 5432, _postgres_container, what="PostgreSQL"
    )


def _resolve(
    env: str, local: str, port: int, container: Callable[[], Any], *, what: str
) -> Iterator[str]:
    configured = os.environ.get(env)
    if configured:
        if not answers(configured, port):
            raise ServiceMissing(f"{env} is set but {what} does not answer there. {HOW_TO_START}")
        yield configured
        return
    if answers(local, port):
        yield local
        return
    if docker_available():
        with container() as url:
            yield url
        return
    raise ServiceMissing(f"No {what} found. {HOW_TO_START}")


@contextlib.contextmanager
def _rabbit_container() -> Iterator[str]:
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.13-alpine") as rabbit:
        host = rabbit.get_container_host_ip()
        port = rabbit.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}/"


@contextlib.contextmanager
def _postgres_container() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver="asyncpg") as pg:
        yield pg.get_connection_url()
