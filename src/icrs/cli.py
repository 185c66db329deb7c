"""The `icrs` command. What a command needs is imported when it runs: listing parked
messages does not load four web applications."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from icrs_shared.settings import Settings, settings_table

from .services import SERVICES, platform_consumers

if TYPE_CHECKING:
    import uvicorn

    from icrs_shared.bus import Parked


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icrs", description="Information, Counselling and Referral System for DDR programmes."
    )
    sub = parser.add_subparsers(metavar="command")

    up = sub.add_parser("up", help="run all four services in one process (embedded default)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--data-dir", type=Path, default=None, help="default: $ICRS_DATA_DIR or ./var")
    up.set_defaults(func=_up)

    serve = sub.add_parser("serve", help="run one service on RabbitMQ and PostgreSQL")
    serve.add_argument("service", choices=list(SERVICES))
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a container's service port
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=_serve)

    migrate = sub.add_parser("migrate", help="bring a service's database to the latest schema")
    migrate.add_argument("service", choices=[*SERVICES, "all"])
    migrate.set_defaults(func=_migrate)

    admin = sub.add_parser("admin", help="platform administration")
    admin_sub = admin.add_subparsers(metavar="action")
    boot = admin_sub.add_parser(
        "bootstrap", help="create the platform administrator's client (prints it once)"
    )
    boot.add_argument("--rotate", action="store_true", help="revoke the current one, issue anew")
    boot.set_defaults(func=_bootstrap)
    rotate_key = admin_sub.add_parser(
        "rotate-signing-key",
        help="make a new token-signing key; the current one stops signing when it starts",
    )
    rotate_key.add_argument(
        "--activate-in",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help=(
            "publish the new key now and sign with it this many seconds later, so that every "
            "service knows it by then (default 300; 0: at once)"
        ),
    )
    rotate_key.set_defaults(func=_rotate_signing_key)

    intake = sub.add_parser("intake", help="the intake service's keys")
    intake_sub = intake.add_subparsers(metavar="action")
    add_key = intake_sub.add_parser(
        "add-master-key",
        help="add a master key version to <data dir>/intake-keys.json (restart intake after)",
    )
    add_key.set_defaults(func=_intake_add_master_key)
    rewrap = intake_sub.add_parser(
        "rewrap-keys", help="re-wrap every case's data key under the newest master key"
    )
    rewrap.set_defaults(func=_intake_rewrap)

    audit = sub.add_parser("audit", help="check the audit log")
    audit_sub = audit.add_subparsers(metavar="action")
    verify = audit_sub.add_parser(
        "verify",
        help="check the log over its API: signature, every entry, consistency with last time",
        description=(
            "Needs a token with audit:read: --token (or ICRS_TOKEN), or a client whose "
            "token is fetched from URL/oauth/token: --client-id (or ICRS_CLIENT_ID) with "
            "the secret in ICRS_CLIENT_SECRET. Exit status 0: the log checks out; 1: a "
            "problem was found; 2: the check could not run."
        ),
    )
    verify.add_argument("--url", required=True, help="the platform's base URL")
    verify.add_argument(
        "--key",
        required=True,
        help="the log's note verifier key (name+keyid+base64), or @FILE holding it; "
        "take it from a source you trust, not from the log itself",
    )
    verify.add_argument(
        "--state", type=Path, default=None, help="where the last verified checkpoint is kept"
    )
    verify.add_argument("--token", default=None, help="an access token with audit:read")
    verify.add_argument("--client-id", default=None, help="a client with audit:read")
    verify.set_defaults(func=_audit_verify)
    fsck = audit_sub.add_parser(
        "fsck",
        help="check the audit service's own database (ICRS_AUDIT_DATABASE_URL)",
        description="Exit status 0: the log checks out; 1: a problem was found.",
    )
    fsck.add_argument(
        "--key", default=None, help="verifier key to check signatures with (default: the service's)"
    )
    fsck.set_defaults(func=_audit_fsck)

    parked = sub.add_parser(
        "parked",
        help="messages a service gave up on: list them, put them back",
        description=(
            "With ICRS_AMQP_URL, on RabbitMQ (in ICRS_AMQP_NAMESPACE); without it, in the "
            "one-process default's files under <data dir>/parked, whose running platform "
            "takes in what is put back within seconds. Exit status 0: done; 1: a message "
            "asked to be put back was not; 2: the broker could not be reached."
        ),
    )
    parked_sub = parked.add_subparsers(metavar="action")
    parked_list = parked_sub.add_parser(
        "list", help="one line per parked message: service, consumer, type, id, reason"
    )
    parked_list.add_argument(
        "service", nargs="*", type=_service, help=f"default: all ({', '.join(SERVICES)})"
    )
    parked_list.set_defaults(func=_parked_list)
    replay = parked_sub.add_parser(
        "replay",
        help="put parked messages back in the queue they came from, their counts anew",
        description="Do it once the cause is fixed: what fails again is parked again.",
    )
    replay.add_argument("service", choices=list(SERVICES))
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--event", action="append", metavar="ID", help="an event id (repeatable)")
    which.add_argument("--all", action="store_true", help="every message the service parked")
    replay.set_defaults(func=_parked_replay)

    show = sub.add_parser("settings", help="list every ICRS_* setting with its default")
    show.set_defaults(func=_settings)

    asyncapi = sub.add_parser("asyncapi", help="print the AsyncAPI document of the events")
    asyncapi.set_defaults(func=_asyncapi)
    return parser


def _up(args: argparse.Namespace) -> int:
    from icrs_shared.logs import configure_logging
    from icrs_shared.telemetry import setup_tracing

    from .platform import Platform, PlatformOptions

    base = Settings()
    data_dir = args.data_dir or base.data_dir
    public_url = f"http://{args.host}:{args.port}"
    overrides: dict[str, Any] = {}
    if "public_url" in base.model_fields_set:
        public_url = base.public_url
    configure_logging(base)
    setup_tracing("icrs")
    platform = Platform(
        PlatformOptions(data_dir=data_dir, public_url=public_url, overrides=overrides)
    )

    async def announce() -> None:
        print(f"ICRS is up at {public_url}", flush=True)
        creds = _read_admin(platform.admin_file)
        if creds:
            print(f"  platform administrator client_id:     {creds['client_id']}", flush=True)
            print(f"  platform administrator client_secret: {creds['client_secret']}", flush=True)
            print(f"  (kept in {platform.admin_file}, mode 0600)", flush=True)

    _run(platform, args.host, args.port, base, after_start=announce)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from icrs_shared.bus import RabbitBus
    from icrs_shared.logs import configure_logging
    from icrs_shared.telemetry import setup_tracing

    entry = SERVICES[args.service]
    settings = entry.make_settings()
    if not settings.amqp_url:
        print("icrs serve runs on RabbitMQ: set ICRS_AMQP_URL.", file=sys.stderr)
        return 2
    if not settings.database_url:
        var = f"ICRS_{entry.name.upper()}_DATABASE_URL"
        print(f"icrs serve needs a database of the service's own: set {var}.", file=sys.stderr)
        return 2
    configure_logging(settings, service=entry.name)
    setup_tracing(f"icrs-{entry.name}")
    bus = RabbitBus(
        settings.amqp_url,
        exchange=settings.amqp_exchange,
        namespace=settings.amqp_namespace,
        prefetch=settings.bus_prefetch,
        delivery_limit=settings.bus_delivery_limit,
        connection_name=f"icrs-{entry.name}",
        # None is published before every consumer's queue exists (every service has
        # started once): the audit log, and no other service, misses an event.
        required=platform_consumers(),
    )
    app = entry.create_app(settings, bus)

    from contextlib import asynccontextmanager

    inner = app.router.lifespan_context

    @asynccontextmanager
    async def with_bus(a: Any) -> Any:
        await bus.start()
        try:
            async with inner(a):
                yield
        finally:
            await bus.close()

    app.router.lifespan_context = with_bus
    _run(app, args.host, args.port, settings)
    return 0


#: What uvicorn allows slow and idle clients; the request limits (body size, JSON depth,
#: body timeout) are the apps' own. No `limit_concurrency`: uvicorn counts idle
#: connections against it, so a few hundred sockets held open by one client would get
#: every other client 503.
SERVER_LIMITS: dict[str, Any] = {
    # An idle keep-alive connection is closed after this many seconds.
    "timeout_keep_alive": 5,
    # The most of a request's head (request line and headers) buffered before it is
    # refused with 400; a token and trace headers fit many times over.
    "h11_max_incomplete_event_size": 16 * 1024,
    # A slow client cannot hold up a restart longer than this, in seconds.
    "timeout_graceful_shutdown": 20,
}


def server_config(
    app: Any,
    host: str,
    port: int,
    *,
    forwarded_allow_ips: str,
    head_timeout: float,
    lifespan: Literal["on", "off"] = "on",
) -> uvicorn.Config:
    """How the platform's processes serve: no uvicorn logging (the apps log their requests),
    the limits above, a deadline for each request's head, and the proxies whose forwarded
    headers are believed."""
    import uvicorn

    from .http import head_timed

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=head_timed(head_timeout),
        forwarded_allow_ips=forwarded_allow_ips,
        log_config=None,
        access_log=False,
        lifespan=lifespan,
        **SERVER_LIMITS,
    )


def _run(app: Any, host: str, port: int, settings: Settings, after_start: Any = None) -> None:
    import uvicorn

    from icrs_shared.telemetry import shutdown_tracing

    config = server_config(
        app,
        host,
        port,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        head_timeout=settings.head_timeout,
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve())
        if after_start is not None:
            # uvicorn offers a flag, not an event, for "listening".
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            if server.started:
                await after_start()
        await task

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass  # uvicorn has shut down cleanly and re-raised the interrupt
    finally:
        shutdown_tracing()


def _read_admin(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _migrate(args: argparse.Namespace) -> int:
    from icrs_shared.db import Database
    from icrs_shared.migrate import upgrade

    names = list(SERVICES) if args.service == "all" else [args.service]

    async def run() -> None:
        for name in names:
            entry = SERVICES[name]
            db = Database(entry.make_settings().db_url)
            try:
                await upgrade(db, entry.package)
            finally:
                await db.dispose()
            print(f"{name}: migrated")

    asyncio.run(run())
    return 0


def _bootstrap(args: argparse.Namespace) -> int:
    from icrs_partners.bootstrap import ensure_admin, write_admin_file
    from icrs_partners.models import metadata
    from icrs_shared.db import Database
    from icrs_shared.events import platform_events
    from icrs_shared.migrate import upgrade
    from icrs_shared.outbox import Outbox
    from icrs_shared.tables import messaging_tables

    settings = SERVICES["partners"].make_settings()

    async def run() -> int:
        db = Database(settings.db_url)
        try:
            await upgrade(db, "icrs_partners")
            outbox = Outbox(
                messaging_tables(metadata)[0], service="partners", registry=platform_events()
            )
            async with db.transaction() as session:
                issued = await ensure_admin(session, outbox, rotate=args.rotate)
        finally:
            await db.dispose()
        if issued is None:
            print(
                "The platform administrator's client exists already; its secret cannot be "
                "shown again. Use --rotate to revoke it and issue a new one.",
                file=sys.stderr,
            )
            return 1
        path = write_admin_file(settings.data_dir, issued)
        print(json.dumps({"client_id": issued.client_id, "client_secret": issued.client_secret}))
        print(f"written to {path} (mode 0600)", file=sys.stderr)
        return 0

    return asyncio.run(run())


def _rotate_signing_key(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from icrs_partners.oauth.kek import load_kek
    from icrs_partners.oauth.keystore import KeyStore
    from icrs_partners.settings import PartnersSettings
    from icrs_shared.db import Database
    from icrs_shared.migrate import upgrade

    if args.activate_in < 0:
        print("--activate-in cannot be negative.", file=sys.stderr)
        return 2
    settings = SERVICES["partners"].make_settings()
    assert isinstance(settings, PartnersSettings)

    async def run() -> dict[str, str]:
        db = Database(settings.db_url)
        try:
            await upgrade(db, "icrs_partners")
            store = KeyStore(
                db,
                kek=load_kek(settings),
                rotate_after=timedelta(days=settings.signing_key_rotation_days),
                leeway=settings.auth_leeway,
            )
            key = await store.rotate(activate_in=timedelta(seconds=args.activate_in))
        finally:
            await db.dispose()
        return {"kid": key.kid, "signs_from": key.activated_at.isoformat()}

    print(json.dumps(asyncio.run(run())))
    return 0


def _intake_add_master_key(_: argparse.Namespace) -> int:
    from icrs_intake.crypto import KEY_FILE, add_master_key
    from icrs_intake.settings import IntakeSettings

    settings = SERVICES["intake"].make_settings()
    assert isinstance(settings, IntakeSettings)
    if settings.intake_master_keys is not None:
        print(
            "The master keys come from ICRS_INTAKE_MASTER_KEYS: add the new version there.",
            file=sys.stderr,
        )
        return 2
    version = add_master_key(settings.data_dir / KEY_FILE)
    print(
        f"Master key version {version} added to {settings.data_dir / KEY_FILE}. Restart every "
        "intake process, then run `icrs intake rewrap-keys`."
    )
    return 0


def _intake_rewrap(_: argparse.Namespace) -> int:
    from icrs_intake.crypto import load_keyring
    from icrs_intake.rekey import rewrap
    from icrs_intake.settings import IntakeSettings
    from icrs_shared.db import Database

    settings = SERVICES["intake"].make_settings()
    assert isinstance(settings, IntakeSettings)
    keyring = load_keyring(settings)

    async def run() -> int:
        db = Database(settings.db_url)
        try:
            return await rewrap(db, keyring)
        finally:
            await db.dispose()

    count = asyncio.run(run())
    print(f"{count} data keys re-wrapped under master key version {keyring.current_version}.")
    return 0


def _verifier_key(value: str) -> str:
    return Path(value[1:]).read_text().strip() if value.startswith("@") else value.strip()


def _audit_verify(args: argparse.Namespace) -> int:
    import os

    import httpx

    from icrs_audit.note import NoteError, Verifier
    from icrs_audit.verify import verify_remote

    try:
        verifier = Verifier(_verifier_key(args.key))
    except (NoteError, OSError) as exc:
        print(f"--key: {exc}", file=sys.stderr)
        return 2
    url = args.url.rstrip("/")
    token = args.token or os.environ.get("ICRS_TOKEN")
    client_id = args.client_id or os.environ.get("ICRS_CLIENT_ID")

    async def run() -> int:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            bearer = token
            if bearer is None:
                secret = os.environ.get("ICRS_CLIENT_SECRET")
                if not client_id or not secret:
                    print(
                        "A token with audit:read is needed: --token or ICRS_TOKEN, or "
                        "--client-id with ICRS_CLIENT_SECRET.",
                        file=sys.stderr,
                    )
                    return 2
                answer = await http.post(
                    "/oauth/token",
                    data={"grant_type": "client_credentials", "scope": "audit:read"},
                    auth=(client_id, secret),
                )
                if answer.status_code != 200:
                    print(
                        f"No token: {url}/oauth/token answered {answer.status_code}.",
                        file=sys.stderr,
                    )
                    return 2
                bearer = str(answer.json()["access_token"])
            http.headers["Authorization"] = f"Bearer {bearer}"
            report = await verify_remote(http, verifier, args.state)
        print(f"Checked the audit log at {url}:")
        print(report.text(), end="")
        return 0 if report.ok else 1

    try:
        return asyncio.run(run())
    except httpx.HTTPError as exc:
        print(f"The check could not run: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _audit_fsck(args: argparse.Namespace) -> int:
    from icrs_audit.note import NoteError, Verifier
    from icrs_audit.settings import AuditSettings
    from icrs_audit.state import log_origin, make_signer
    from icrs_audit.verify import fsck
    from icrs_shared.db import Database

    settings = SERVICES["audit"].make_settings()
    assert isinstance(settings, AuditSettings)

    async def run() -> int:
        db = Database(settings.db_url)
        try:
            try:
                if args.key is not None:
                    verifier = Verifier(_verifier_key(args.key))
                else:
                    verifier = make_signer(settings, await log_origin(db, settings)).verifier()
            except (NoteError, OSError, ValueError) as exc:
                print(f"No key to check signatures with: {exc}", file=sys.stderr)
                return 2
            report = await fsck(db, verifier)
        finally:
            await db.dispose()
        print(f"Checked the audit log in {db.url.render_as_string(hide_password=True)}:")
        print(report.text(), end="")
        return 0 if report.ok else 1

    return asyncio.run(run())


def _service(name: str) -> str:
    if name not in SERVICES:
        raise argparse.ArgumentTypeError(f"{name!r} is none of {', '.join(SERVICES)}")
    return name


def _print_parked(service: str, records: list[Parked], reason: str | None = None) -> None:
    for p in records:
        when = p.parked_at.isoformat() if p.parked_at else "-"
        print(
            f"{service}\t{p.consumer or '-'}\t{p.event_type or '-'}\t"
            f"{p.event_id or '-'}\t{reason or p.reason}\t{p.deliveries}\t{when}"
        )


def _parking_dir(settings: Settings) -> Path:
    return settings.data_dir / "parked"


def _parked_list(args: argparse.Namespace) -> int:
    services = args.service or list(SERVICES)
    settings = Settings()
    if not settings.amqp_url:  # the one-process default's files
        from icrs_shared.bus import parking

        for service in services:
            _print_parked(service, parking.parked(_parking_dir(settings), service))
            _print_parked(service, parking.waiting(_parking_dir(settings), service), "put_back")
        return 0

    async def listing(bus: Any) -> int:
        for service in services:
            _print_parked(service, await bus.parked(service))
        return 0

    return asyncio.run(_with_broker(listing, settings.amqp_url, settings))


def _parked_replay(args: argparse.Namespace) -> int:
    wanted = None if args.all else set(args.event)

    def report(back: list[Parked], why: str) -> int:
        for p in back:
            print(f"put back: {args.service}\t{p.consumer}\t{p.event_type}\t{p.event_id}")
        missing = (wanted or set()) - {p.event_id for p in back}
        for event_id in sorted(missing):
            print(f"not put back ({why}): {event_id}", file=sys.stderr)
        print(f"{len(back)} put back", file=sys.stderr)
        return 1 if missing else 0

    settings = Settings()
    if not settings.amqp_url:
        from icrs_shared.bus import parking

        back = parking.put_back(_parking_dir(settings), args.service, wanted)
        if back:
            print(
                "The running platform hands them to their consumers within seconds "
                "(or when it next starts).",
                file=sys.stderr,
            )
        return report(back, "not parked")

    async def replaying(bus: Any) -> int:
        return report(await bus.replay(args.service, wanted), "not parked, or its queue is gone")

    return asyncio.run(_with_broker(replaying, settings.amqp_url, settings))


async def _with_broker(
    action: Callable[[Any], Awaitable[int]], amqp_url: str, settings: Settings, within: float = 10.0
) -> int:
    from icrs_shared.bus import RabbitBus

    bus = RabbitBus(
        amqp_url,
        exchange=settings.amqp_exchange,
        namespace=settings.amqp_namespace,
        delivery_limit=settings.bus_delivery_limit,
        connection_name="icrs-parked",
    )
    # What the client libraries say while they try is for a service's log, not here.
    for name in ("aio_pika", "aiormq", "icrs_shared.bus"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    await bus.start()
    try:
        deadline = asyncio.get_running_loop().time() + within
        while not await bus.ready():
            if asyncio.get_running_loop().time() > deadline:
                print("The broker at ICRS_AMQP_URL did not answer.", file=sys.stderr)
                return 2
            await asyncio.sleep(0.1)
        return await action(bus)
    finally:
        await bus.close()


def _settings(_: argparse.Namespace) -> int:
    classes = [e.settings for e in SERVICES.values()]
    for var, default, description in settings_table(*classes):
        print(f"{var}\t{default}\t{description}")
    return 0


def _asyncapi(_: argparse.Namespace) -> int:
    from icrs_shared.events import asyncapi_document, platform_events

    print(json.dumps(asyncapi_document(platform_events()), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
