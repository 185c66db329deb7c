"""What every service's `create_app(settings, bus)` shares: the lifespan that owns the
engine, migrations, messaging and token validation; health and readiness; problem
details; tracing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncSession

from .auth import JWKSCache, TokenValidator
from .bus import Bus
from .db import Database
from .errors import PROBLEM_RESPONSES, install_problem_handlers
from .limits import RequestLimits, install_limits
from .messaging import Consumers, Messaging
from .middleware import install_observability
from .migrate import upgrade
from .settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The resources a running service holds; `app.state.runtime`."""

    name: str
    settings: ServiceSettings
    db: Database
    bus: Bus
    messaging: Messaging
    tokens: TokenValidator
    extras: dict[str, Any] = field(default_factory=dict)


StartHook = Callable[[Runtime], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    package: str
    title: str
    description: str
    metadata: MetaData
    routers: Sequence[APIRouter] = ()
    consumers: Consumers | None = None
    on_start: Sequence[StartHook] = ()
    on_stop: Sequence[StartHook] = ()
    #: (method, path) of the routes whose body is an uploaded file: they get the import
    #: limits (`max_import_bytes`, `import_body_timeout`) instead of the ordinary ones.
    uploads: Sequence[tuple[str, str]] = ()
    version: str = "0.1.0"


def build_app(
    spec: ServiceSpec,
    settings: ServiceSettings,
    bus: Bus,
    *,
    jwks: JWKSCache | None = None,
) -> FastAPI:
    """A service's FastAPI app. The caller owns `bus` (starts and closes it)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(
            settings.db_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        try:
            if settings.migrate_on_start:
                await upgrade(db, spec.package)
            messaging = Messaging(
                service=spec.name, db=db, bus=bus, metadata=spec.metadata, settings=settings
            )
            if spec.consumers is not None:
                messaging.consume(spec.consumers)
            tokens = TokenValidator.from_settings(
                settings, jwks=jwks or JWKSCache(settings.jwks_url)
            )
            runtime = Runtime(spec.name, settings, db, bus, messaging, tokens)
            app.state.runtime = runtime
            app.state.token_validator = tokens
            await messaging.start()
            try:
                for hook in spec.on_start:
                    await hook(runtime)
                yield
            finally:
                # Consumers stop first, so that no delivery meets a half-stopped service.
                await bus.unsubscribe(spec.name)
                for hook in spec.on_stop:
                    await hook(runtime)
                await messaging.stop()
                if jwks is None:
                    await tokens.aclose()
        finally:
            await db.dispose()

    app = FastAPI(
        title=spec.title,
        description=spec.description,
        version=spec.version,
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    install_problem_handlers(app)
    # Inside the tracing middleware (added after it), so refusals are traced and logged.
    install_limits(app, RequestLimits.of(settings, spec.uploads))
    install_observability(app, spec.name)
    app.include_router(health_router())
    for router in spec.routers:
        app.include_router(router)
    return app


async def service_state(runtime: Runtime) -> dict[str, str]:
    db_ok = await runtime.db.ping()
    bus_ok = await runtime.bus.ready()
    return {"database": "ok" if db_ok else "unavailable", "bus": "ok" if bus_ok else "unavailable"}


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="The database and the bus answer",
        responses={503: {"description": "Not ready"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        if runtime is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        checks = await service_state(runtime)
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if ok else "unavailable", "service": runtime.name, **checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    return router


# Dependencies are coroutines, even trivial ones: FastAPI runs a plain function in a
# worker thread, a thread hop for every request.


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for one request. Routes commit explicitly; what is not committed is
    rolled back when the request ends."""
    async with runtime_of(request).db.sessions() as session:
        yield session


async def get_reading(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for a request that reads with one statement (`Database.at_once`)."""
    async with runtime_of(request).db.at_once() as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadingDep = Annotated[AsyncSession, Depends(get_reading)]
