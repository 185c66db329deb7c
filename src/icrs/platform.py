"""The one-process default: all four services behind one port, on the in-process bus.

Each service keeps its own FastAPI app, database and lifespan; requests are dispatched
by the path prefixes each owns (contract §1). `/healthz`, `/readyz`, `/openapi.json`,
`/docs` and `/asyncapi.json` answer for the whole platform.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from icrs_audit.state import CONSUMER as AUDIT_LOG
from icrs_shared.auth import JWKSCache
from icrs_shared.bus import Bus, InProcessBus
from icrs_shared.errors import problem_body, problem_response
from icrs_shared.events import asyncapi_document, platform_events
from icrs_shared.middleware import install_observability
from icrs_shared.runtime import service_state

from .services import SERVICES, service_for_path

log = logging.getLogger(__name__)


@dataclass
class PlatformOptions:
    data_dir: Path = Path("var")
    public_url: str = "http://127.0.0.1:8000"
    overrides: dict[str, Any] = field(default_factory=dict)


class Platform:
    """An ASGI app serving the four services, and their shared bus."""

    def __init__(self, options: PlatformOptions, bus: Bus | None = None) -> None:
        self.options = options
        # Every event goes to the audit log: none is published before it listens.
        self.bus: Bus = bus or InProcessBus(
            parking_dir=options.data_dir / "parked", required=[("audit", AUDIT_LOG)]
        )
        self.apps: dict[str, FastAPI] = {}
        common = {"data_dir": options.data_dir, "public_url": options.public_url}
        common.update(options.overrides)
        self.settings = {name: e.make_settings(**common) for name, e in SERVICES.items()}
        self._jwks = self._jwks_cache()
        for name, entry in SERVICES.items():
            self.apps[name] = entry.create_app(self.settings[name], self.bus, jwks=self._jwks)
        self.root = self._root_app()

    def _jwks_cache(self) -> JWKSCache:
        settings = self.settings["partners"]
        if settings.auth_jwks_url:
            return JWKSCache(settings.auth_jwks_url)
        # The built-in issuer lives in this process: ask it directly, not over TCP.
        transport = _LazyASGITransport(lambda: self.apps["partners"])
        return JWKSCache(
            settings.jwks_url, client=httpx.AsyncClient(transport=transport, timeout=5.0)
        )

    @property
    def admin_file(self) -> Path:
        return self.options.data_dir / "admin-client.json"

    def _root_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            async with AsyncExitStack() as stack:
                await self.bus.start()
                stack.push_async_callback(self.bus.close)
                stack.push_async_callback(self._jwks.aclose)
                for name, app in self.apps.items():
                    await stack.enter_async_context(app.router.lifespan_context(app))
                    log.info("service started", extra={"service": name})
                yield

        root = FastAPI(
            title="ICRS",
            description="Information, Counselling and Referral System for DDR programmes.",
            lifespan=lifespan,
            docs_url=None,
            openapi_url=None,
            redoc_url=None,
        )
        install_observability(root, "icrs")

        @root.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @root.get("/readyz", include_in_schema=False)
        async def readyz() -> JSONResponse:
            services = await asyncio.gather(*(self._state(n, a) for n, a in self.apps.items()))
            states = dict(zip(self.apps, services, strict=True))
            ok = all(s["status"] == "ok" for s in states.values())
            body = {"status": "ok" if ok else "unavailable", "services": states}
            return JSONResponse(body, status_code=200 if ok else 503)

        @root.get("/openapi.json", include_in_schema=False)
        async def openapi() -> JSONResponse:
            return JSONResponse(self.openapi())

        @root.get("/asyncapi.json", include_in_schema=False)
        async def asyncapi() -> JSONResponse:
            return JSONResponse(asyncapi_document(platform_events()))

        @root.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="ICRS API")

        return root

    async def _state(self, name: str, app: FastAPI) -> dict[str, str]:
        runtime = getattr(app.state, "runtime", None)
        if runtime is None:
            return {"status": "starting"}
        checks = await service_state(runtime)
        ok = all(v == "ok" for v in checks.values())
        return {"status": "ok" if ok else "unavailable", **checks}

    def openapi(self) -> dict[str, Any]:
        """One document covering the four services."""
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {
                "title": "ICRS",
                "version": "0.1.0",
                "description": "All four ICRS services under one base URL.",
            },
            "paths": {},
            "components": {"schemas": {}, "securitySchemes": {}},
        }
        for name, app in self.apps.items():
            doc = app.openapi()
            for path, item in doc.get("paths", {}).items():
                if service_for_path(path) == name:
                    merged["paths"][path] = item
            for kind, entries in doc.get("components", {}).items():
                merged["components"].setdefault(kind, {})
                for key, value in entries.items():
                    merged["components"][kind].setdefault(key, value)
        return merged

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            name = service_for_path(scope["path"])
            if name is not None:
                await self.apps[name](scope, receive, send)
                return
            if scope["path"] not in {
                "/healthz",
                "/readyz",
                "/openapi.json",
                "/asyncapi.json",
                "/docs",
            }:
                response = problem_response(404, problem_body(404, detail="no such path"))
                await response(scope, receive, send)
                return
        await self.root(scope, receive, send)


class _LazyASGITransport(httpx.AsyncBaseTransport):
    """Sends requests to an ASGI app that exists only once the platform is built."""

    def __init__(self, app: Callable[[], ASGIApp]) -> None:
        self._app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await httpx.ASGITransport(app=self._app()).handle_async_request(request)
