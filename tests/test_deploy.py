"""The deployment files agree with the contract and with the services.

Compose wires each service to the broker and a database of its own; the gateway sends every
path a service serves to that service (checked against the apps' OpenAPI, so it keeps holding
as routes are added); the image runs `icrs` as a non-root user with a health check.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from icrs_shared.bus import InProcessBus

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
NGINX_CONF = ROOT / "deploy" / "gateway" / "nginx.conf"
INIT_SQL = ROOT / "deploy" / "postgres" / "init.sql"

SERVICES = ("partners", "intake", "referral", "audit")
INFRASTRUCTURE = ("rabbitmq", "postgres", "otel-collector", "jaeger", "gateway")

#: Contract §1, literally. `X*` owns X and every path that starts with it, `X/*` every path
#: under X/, and a pattern without `*` that one path.
CONTRACT: dict[str, tuple[str, ...]] = {
    "partners": ("/oauth/*", "/.well-known/*", "/v1/organizations*", "/v1/services*"),
    "intake": ("/v1/cases*", "/v1/imports*", "/v1/reports/cases"),
    "referral": ("/v1/referrals*", "/v1/webhooks*", "/v1/reports/referrals"),
    "audit": ("/v1/log/*", "/v1/audit/*"),
}

#: What every service answers for itself; the gateway exposes these under /<service>/.
SERVICE_OWN_PATHS = {"/healthz", "/readyz", "/openapi.json", "/docs", "/redoc"}


def contract_samples(pattern: str) -> list[str]:
    """Paths the contract says the pattern owns."""
    if pattern.endswith("/*"):
        base = pattern[:-1]
        return [base, base + "x", base + "x/y"]
    if pattern.endswith("*"):
        base = pattern[:-1]
        return [base, base + "/", base + "/x", base + "/x/y"]
    return [pattern]


# --- docker-compose.yml ---------------------------------------------------------------------


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` as if VAR were unset."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def bind_sources(service: dict[str, Any]) -> list[str]:
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                sources.append(volume["source"])
        elif volume.startswith((".", "/", "~")):
            sources.append(volume.split(":", 1)[0])
    return sources


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_compose_has_every_part(compose: dict[str, Any]) -> None:
    assert set(SERVICES + INFRASTRUCTURE) <= set(compose["services"])


@pytest.mark.parametrize("name", SERVICES)
def test_service_runs_the_one_image(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["build"]["context"] == "."
    assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    assert service["image"] == "icrs:latest"
    assert service["command"] == ["serve", name]
    assert "ports" not in service, "only the gateway publishes a port, so services can scale"


@pytest.mark.parametrize("name", SERVICES)
def test_service_reaches_the_broker_and_its_own_database(
    compose: dict[str, Any], name: str
) -> None:
    env = environment(compose["services"][name])
    amqp = urlsplit(env["ICRS_AMQP_URL"])
    assert (amqp.scheme, amqp.hostname) == ("amqp", "rabbitmq")

    database = urlsplit(env[f"ICRS_{name.upper()}_DATABASE_URL"])
    assert database.scheme == "postgresql+asyncpg"
    assert database.hostname == "postgres"
    assert database.path == f"/{name}"
    others = {f"ICRS_{other.upper()}_DATABASE_URL" for other in SERVICES if other != name}
    assert not others & env.keys()
    assert "ICRS_DATABASE_URL" not in env

    assert urlsplit(env["ICRS_AUTH_JWKS_URL"]).hostname == "partners"
    assert urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"]).hostname == "otel-collector"
    assert env["OTEL_SERVICE_NAME"] == f"icrs-{name}"
    assert f"{name}-data:{env['ICRS_DATA_DIR']}" in compose["services"][name]["volumes"]


@pytest.mark.parametrize("name", SERVICES)
def test_service_waits_for_a_healthy_broker_and_database(
    compose: dict[str, Any], name: str
) -> None:
    depends_on = compose["services"][name]["depends_on"]
    for dependency in ("rabbitmq", "postgres"):
        assert depends_on[dependency]["condition"] == "service_healthy"
        assert "healthcheck" in compose["services"][dependency]


def test_postgres_asks_for_a_password(compose: dict[str, Any]) -> None:
    env = environment(compose["services"]["postgres"])
    assert env.get("POSTGRES_HOST_AUTH_METHOD", "scram-sha-256") != "trust"
    assert env["POSTGRES_PASSWORD"]


def test_init_sql_creates_each_service_database() -> None:
    created = re.findall(r"(?i)\bCREATE\s+DATABASE\s+\"?(\w+)\"?", INIT_SQL.read_text())
    assert sorted(created) == sorted(SERVICES)


def test_compose_mounts_only_files_in_the_repository(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for source in bind_sources(service):
            assert (ROOT / source).is_file(), f"{name} mounts {source}, which is not in the repo"
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/", "~")):
                assert volume.split(":", 1)[0] in named, f"{name}: undeclared volume {volume}"
        if "build" in service:
            context = ROOT / service["build"]["context"]
            assert (context / service["build"]["dockerfile"]).is_file()


def test_gateway_serves_the_nginx_conf_on_8080(compose: dict[str, Any]) -> None:
    gateway = compose["services"]["gateway"]
    assert "./deploy/gateway/nginx.conf:/etc/nginx/nginx.conf:ro" in gateway["volumes"]
    assert "8080:8080" in gateway["ports"]
    assert set(SERVICES) <= set(gateway["depends_on"])
    assert re.search(r"^\s*listen\s+8080;", NGINX_CONF.read_text(), re.MULTILINE)


# --- deploy/gateway/nginx.conf --------------------------------------------------------------


def scan(source: str, *, keep_strings: bool) -> str:
    """The config without comments; quoted strings kept, or emptied to `''`."""

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token.startswith("#"):
            return ""
        return token if keep_strings else "''"

    return re.sub(r"#[^\n]*|'[^']*'|\"[^\"]*\"", replace, source)


@dataclass(frozen=True)
class Location:
    modifier: str  # "=" (exact), "^~" or "" (prefix); regex locations are refused below
    path: str
    body: str

    @property
    def upstream(self) -> str | None:
        found = re.search(r"\bproxy_pass\s+http://([\w.-]+)", self.body)
        return found.group(1) if found else None

    def upstream_path(self, path: str) -> str:
        rewrite = re.search(r"\brewrite\s+\^\s+(\S+)\s+break;", self.body)
        return rewrite.group(1) if rewrite else path


@dataclass(frozen=True)
class Gateway:
    text: str
    locations: tuple[Location, ...]
    upstreams: dict[str, list[str]]

    @classmethod
    def parse(cls, source: str) -> Gateway:
        text = scan(source, keep_strings=True)
        # Quoted strings can hold braces (a JSON body): blank them to find the blocks.
        blocks = scan(source, keep_strings=False)
        locations = tuple(
            Location(modifier or "", path, body)
            for modifier, path, body in re.findall(
                r"\blocation\s+(?:(=|\^~|~\*?)\s+)?(\S+)\s*\{([^{}]*)\}", blocks
            )
            if not path.startswith("@")
        )
        upstreams = {
            name: re.findall(r"\bserver\s+([^\s;]+)", body)
            for name, body in re.findall(r"\bupstream\s+([\w.-]+)\s*\{([^{}]*)\}", blocks)
        }
        return cls(text, locations, upstreams)

    def route(self, path: str) -> Location | None:
        """nginx's choice without regex locations: an exact match, else the longest prefix."""
        for location in self.locations:
            if location.modifier == "=" and location.path == path:
                return location
        prefixes = [
            loc for loc in self.locations if loc.modifier != "=" and path.startswith(loc.path)
        ]
        return max(prefixes, key=lambda loc: len(loc.path), default=None)

    def upstream_for(self, path: str) -> str | None:
        location = self.route(path)
        return location.upstream if location else None


@pytest.fixture(scope="module")
def gateway() -> Gateway:
    return Gateway.parse(NGINX_CONF.read_text())


@dataclass(frozen=True)
class ServiceApp:
    paths: tuple[str, ...]
    prefixes: tuple[str, ...]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ServiceApp]:
    """Each service's app, built but not started: no broker or database is touched."""
    built = {}
    for name in SERVICES:
        app_module = importlib.import_module(f"icrs_{name}.app")
        settings_module = importlib.import_module(f"icrs_{name}.settings")
        settings = getattr(settings_module, f"{name.capitalize()}Settings")(
            data_dir=tmp_path_factory.mktemp(name)
        )
        app = app_module.create_app(settings, InProcessBus())
        built[name] = ServiceApp(tuple(app.openapi()["paths"]), tuple(app_module.PATH_PREFIXES))
    return built


def test_model_of_nginx_holds(gateway: Gateway) -> None:
    assert gateway.locations, "no locations parsed"
    assert all(loc.modifier in ("=", "^~", "") for loc in gateway.locations), (
        "regex locations would make the longest-prefix model of this test wrong"
    )
    paths = [(loc.modifier == "=", loc.path) for loc in gateway.locations]
    assert len(paths) == len(set(paths)), "a location is defined twice"


def test_upstreams_are_the_compose_services(gateway: Gateway, compose: dict[str, Any]) -> None:
    for name in SERVICES:
        servers = gateway.upstreams[name]
        assert servers
        assert all(server == f"{name}:8000" for server in servers)
    proxied = {loc.upstream for loc in gateway.locations if loc.upstream}
    assert proxied == set(SERVICES) <= set(compose["services"])


@pytest.mark.parametrize(
    ("name", "pattern"), [(name, pattern) for name in SERVICES for pattern in CONTRACT[name]]
)
def test_contract_paths_reach_their_owner(gateway: Gateway, name: str, pattern: str) -> None:
    for path in contract_samples(pattern):
        assert gateway.upstream_for(path) == name, path


@pytest.mark.parametrize("name", SERVICES)
def test_path_prefixes_follow_the_contract(apps: dict[str, ServiceApp], name: str) -> None:
    expected = {pattern.rstrip("*").rstrip("/") for pattern in CONTRACT[name]}
    assert set(apps[name].prefixes) == expected


@pytest.mark.parametrize("name", SERVICES)
def test_path_prefixes_reach_their_service(
    gateway: Gateway, apps: dict[str, ServiceApp], name: str
) -> None:
    for prefix in apps[name].prefixes:
        assert gateway.upstream_for(prefix + "/x") == name, prefix


@pytest.mark.parametrize("name", SERVICES)
def test_every_openapi_path_reaches_its_service(
    gateway: Gateway, apps: dict[str, ServiceApp], name: str
) -> None:
    paths = apps[name].paths
    assert {"/healthz", "/readyz"} <= set(paths)
    for path in set(paths) - SERVICE_OWN_PATHS:
        assert gateway.upstream_for(path) == name, f"{path} of {name}"


def test_no_two_services_own_overlapping_prefixes(
    gateway: Gateway, apps: dict[str, ServiceApp]
) -> None:
    owned = [(name, prefix) for name in SERVICES for prefix in apps[name].prefixes]
    owned += [
        (loc.upstream, loc.path)
        for loc in gateway.locations
        if loc.modifier == "^~" and loc.upstream
    ]
    for name, prefix in owned:
        for other, other_prefix in owned:
            if name != other:
                assert not other_prefix.startswith(prefix), f"{prefix} ({name}) / {other}"


@pytest.mark.parametrize("name", SERVICES)
@pytest.mark.parametrize("own", ["/readyz", "/openapi.json"])
def test_service_readiness_and_openapi_under_its_name(
    gateway: Gateway, name: str, own: str
) -> None:
    location = gateway.route(f"/{name}{own}")
    assert location is not None
    assert location.upstream == name
    assert location.upstream_path(f"/{name}{own}") == own


def test_gateway_answers_healthz_itself(gateway: Gateway) -> None:
    location = gateway.route("/healthz")
    assert location is not None
    assert location.modifier == "="
    assert location.upstream is None
    assert re.search(r"\breturn\s+200\b", location.body)


@pytest.mark.parametrize("path", ["/", "/v1", "/v1/reports", "/v1/unknown", "/admin"])
def test_paths_no_service_owns_go_nowhere(gateway: Gateway, path: str) -> None:
    assert gateway.upstream_for(path) is None


def test_body_limits(gateway: Gateway) -> None:
    server_level = re.sub(r"\blocation\b[^{]*\{[^{}]*\}", "", gateway.text)
    assert re.search(r"\bclient_max_body_size\s+1m;", server_level)
    for location in gateway.locations:
        size = re.search(r"\bclient_max_body_size\s+(\S+);", location.body)
        if location.path == "/v1/imports":
            assert size
            assert size.group(1) == "64m"
        else:
            assert size is None, f"{location.path} raises the body limit"


def test_trace_context_and_forwarding_headers_reach_the_services(gateway: Gateway) -> None:
    for header in ("traceparent", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
        assert re.search(rf"\bproxy_set_header\s+{header}\s", gateway.text, re.IGNORECASE)
    for location in gateway.locations:
        # A location with its own proxy_set_header drops every inherited one.
        assert "proxy_set_header" not in location.body, location.path


def test_logs_leave_out_query_strings(gateway: Gateway) -> None:
    formats = dict(re.findall(r"\blog_format\s+(\w+)\s+([^;]+);", gateway.text))
    assert formats
    leaky = r"\$(request|request_uri|args|query_string|arg_\w+|http_referer)\b"
    for name, fmt in formats.items():
        assert not re.search(leaky, fmt), f"log_format {name} logs the query string"
    for target in re.findall(r"\baccess_log\s+([^;]+);", gateway.text):
        parts = target.split()
        assert parts == ["off"] or (len(parts) >= 2 and parts[1] in formats), target
    # nginx's error lines quote the request line, query string included.
    levels = re.findall(r"\berror_log\s+\S+\s+(\w+);", gateway.text)
    assert levels
    assert set(levels) <= {"crit", "alert", "emerg"}


# --- deploy/Dockerfile ----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    start = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[start:]


def last(stage: list[tuple[str, str]], keyword: str) -> str:
    values = [rest for kw, rest in stage if kw == keyword]
    assert values, f"no {keyword} in the final stage"
    return values[-1]


def test_image_runs_icrs_as_a_non_root_user() -> None:
    stage = final_stage()
    user = last(stage, "USER").split(":")[0]
    assert user not in ("root", "0")
    assert json.loads(last(stage, "ENTRYPOINT")) == ["icrs"]
    command = json.loads(last(stage, "CMD"))
    assert command[0] == "serve"
    assert command[1] in SERVICES
    assert "8000" in last(stage, "EXPOSE").split()


def test_image_checks_its_health() -> None:
    healthcheck = last(final_stage(), "HEALTHCHECK")
    assert "CMD" in healthcheck
    assert "http://127.0.0.1:8000/healthz" in healthcheck


def test_image_installs_the_locked_workspace_without_its_sources() -> None:
    instructions = dockerfile_instructions()
    syncs = [shlex.split(rest) for kw, rest in instructions if kw == "RUN" and "uv sync" in rest]
    assert syncs
    for argv in syncs:
        assert {"--locked", "--no-dev", "--no-editable"} <= set(argv)
    copied_from_builder = [
        rest for kw, rest in final_stage() if kw == "COPY" and rest.startswith("--from")
    ]
    assert copied_from_builder
    assert all("/app/.venv" in rest for rest in copied_from_builder)
    for kw, rest in instructions:
        if kw == "COPY" and not rest.startswith("--"):
            for source in rest.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


@pytest.mark.parametrize("name", SERVICES)
def test_services_believe_the_gateways_forwarded_headers_only(
    compose: dict[str, Any], name: str
) -> None:
    gateway = compose["services"]["gateway"]["networks"]["default"]["ipv4_address"]
    subnet = compose["networks"]["default"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(gateway) in ipaddress.ip_network(subnet)
    assert compose["services"][name]["environment"]["ICRS_FORWARDED_ALLOW_IPS"] == gateway
