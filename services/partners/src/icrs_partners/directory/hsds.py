"""The directory in Open Referral HSDS 3.0 JSON, and back.

An organization is an HSDS `organization` with its `services`. A service keeps HSDS's own
fields where they exist: `minimum_age` and `maximum_age`, `languages` (`code` is the ISO 639
code), `service_areas` (`extent_type` `text`, with the P-code as `extent` and `name`). What
HSDS has no field for travels in an `x_icrs` extension object:

```
service.x_icrs      = {"category", "eligibility": {"sexes", "beneficiary_categories",
                       "programme_tracks", "accepts_minors"}, "capacity": {"maximum",
                       "accepting"}, "accept_within"}
organization.x_icrs = {"kind", "country"}
```

An organization's contact (`email`, `phones`) is exported to the platform administrator
only. Its status and child safeguarding flag are never exported: they are decisions of
this platform that an import must not carry.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..models import Organization, Service
from ..organizations.schemas import Contact, Country, Name
from ..scopes import Kind
from .durations import format_duration
from .schemas import ServiceSpec

EXTENSION = "x_icrs"

#: Where a field of a service spec sits in an HSDS service.
_SPEC_TO_HSDS = {
    "category": f"{EXTENSION}.category",
    "eligibility.min_age": "minimum_age",
    "eligibility.max_age": "maximum_age",
    "eligibility": f"{EXTENSION}.eligibility",
    "capacity": f"{EXTENSION}.capacity",
    "accept_within": f"{EXTENSION}.accept_within",
}


class Rejected(Exception):
    """An entry that cannot be imported: each (field, reason) wrong with it."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {r}" for f, r in problems))
        self.problems = problems


# Export -------------------------------------------------------------------------


def organization_to_hsds(
    org: Organization, services: list[Service], *, show_contact: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(org.id), "name": org.name, "description": ""}
    contact = org.contact or {}
    if show_contact and contact.get("email"):
        out["email"] = contact["email"]
    if show_contact and contact.get("phone"):
        phone_id = uuid.uuid5(org.id, "phone")
        out["phones"] = [
            {"id": str(phone_id), "organization_id": str(org.id), "number": contact["phone"]}
        ]
    out[EXTENSION] = {"kind": org.kind, "country": org.country}
    out["services"] = [service_to_hsds(s) for s in services]
    return out


def service_to_hsds(row: Service) -> dict[str, Any]:
    sid = str(row.id)
    out: dict[str, Any] = {
        "id": sid,
        "organization_id": str(row.organization_id),
        "name": row.name,
        "status": row.status,
    }
    for key in ("description", "url", "email"):
        if getattr(row, key) is not None:
            out[key] = getattr(row, key)
    eligibility = row.eligibility
    if eligibility.get("min_age") is not None:
        out["minimum_age"] = eligibility["min_age"]
    if eligibility.get("max_age") is not None:
        out["maximum_age"] = eligibility["max_age"]
    out["languages"] = [
        {"id": str(uuid.uuid5(row.id, f"language:{code}")), "service_id": sid, "code": code}
        for code in row.languages
    ]
    out["service_areas"] = [
        {
            "id": str(uuid.uuid5(row.id, f"service_area:{code}")),
            "service_id": sid,
            "name": code,
            "extent": code,
            "extent_type": "text",
        }
        for code in row.service_areas
    ]
    out[EXTENSION] = {
        "category": row.category,
        "eligibility": {
            "sexes": list(eligibility.get("sexes", [])),
            "beneficiary_categories": list(eligibility.get("beneficiary_categories", [])),
            "programme_tracks": list(eligibility.get("programme_tracks", [])),
            "accepts_minors": bool(eligibility.get("accepts_minors", False)),
        },
        "capacity": {"maximum": row.capacity_maximum, "accepting": row.accepting},
        "accept_within": format_duration(row.accept_within_seconds),
    }
    return out


# Import -------------------------------------------------------------------------


class _OrganizationFields(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: Name
    kind: Kind = Kind.SERVICE_PROVIDER
    country: Country | None = None
    contact: Contact


@dataclass
class HsdsOrganization:
    """An organization as an import gives it. `present` names the fields the document
    carries: the others stay as they are on an organization that exists."""

    id: uuid.UUID
    name: str
    kind: Kind
    country: str | None
    contact: dict[str, str | None]
    present: set[str] = field(default_factory=set)


@dataclass
class HsdsService:
    id: uuid.UUID
    organization_id: uuid.UUID
    spec: ServiceSpec


def organization_from_hsds(item: Any) -> HsdsOrganization:
    if not isinstance(item, dict):
        raise Rejected([("organization", "must be an object")])
    problems: list[tuple[str, str]] = []
    org_id = _uuid(item.get("id"), "id", problems)
    ext = item.get(EXTENSION) or {}
    if not isinstance(ext, dict):
        problems.append((EXTENSION, "must be an object"))
        ext = {}
    present = {"name"}
    contact: dict[str, Any] = {}
    if "email" in item:
        present.add("email")
        contact["email"] = item["email"]
    phones = item.get("phones")
    if phones is not None:
        present.add("phone")
        if not isinstance(phones, list) or not all(isinstance(p, dict) for p in phones):
            problems.append(("phones", "must be a list of phone objects"))
        else:
            contact["phone"] = phones[0].get("number") if phones else None
    raw = {"name": item.get("name"), "contact": contact}
    if "kind" in ext:
        raw["kind"] = ext["kind"]
    if "country" in ext:
        present.add("country")
        raw["country"] = ext["country"]
    try:
        fields = _OrganizationFields.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_problems(exc, _organization_path))
        fields = None
    if problems or fields is None or org_id is None:
        raise Rejected(problems)
    return HsdsOrganization(
        id=org_id,
        name=fields.name,
        kind=fields.kind,
        country=fields.country,
        contact=fields.contact.model_dump(),
        present=present,
    )


def service_from_hsds(item: Any, *, organization_id: uuid.UUID | None) -> HsdsService:
    """A service from its HSDS form; `organization_id` is the enclosing organization's."""
    if not isinstance(item, dict):
        raise Rejected([("service", "must be an object")])
    problems: list[tuple[str, str]] = []
    service_id = _uuid(item.get("id"), "id", problems)
    own = item.get("organization_id")
    if organization_id is None:
        organization_id = _uuid(own, "organization_id", problems)
    elif own is not None and str(own) != str(organization_id):
        problems.append(("organization_id", "differs from the enclosing organization's id"))
    ext = item.get(EXTENSION)
    if not isinstance(ext, dict):
        problems.append((EXTENSION, "required: an object with the service's category"))
        ext = {}
    eligibility = ext.get("eligibility", {})
    if isinstance(eligibility, dict):
        eligibility = {
            **eligibility,
            "min_age": _whole(item.get("minimum_age")),
            "max_age": _whole(item.get("maximum_age")),
        }
    raw: dict[str, Any] = {
        "name": item.get("name"),
        "category": ext.get("category"),
        "description": item.get("description"),
        "languages": _codes(item.get("languages", []), "languages", _language_code, problems),
        "service_areas": _codes(item.get("service_areas"), "service_areas", _area, problems),
        "eligibility": eligibility,
        "url": item.get("url"),
        "email": item.get("email"),
        "status": item.get("status", "active"),
    }
    for key in ("capacity", "accept_within"):
        if key in ext:
            raw[key] = ext[key]
    try:
        spec = ServiceSpec.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_problems(exc, _service_path))
        spec = None
    if problems or spec is None or service_id is None or organization_id is None:
        raise Rejected(problems)
    return HsdsService(id=service_id, organization_id=organization_id, spec=spec)


def _uuid(value: Any, name: str, problems: list[tuple[str, str]]) -> uuid.UUID | None:
    if value is None:
        problems.append((name, "required"))
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        problems.append((name, "must be a UUID"))
        return None


def _whole(value: Any) -> Any:
    """HSDS ages are numbers; a whole float is taken as the integer it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _codes(
    items: Any, name: str, code_of: Callable[[Any], Any], problems: list[tuple[str, str]]
) -> list[Any] | None:
    if items is None:
        return None
    if not isinstance(items, list):
        problems.append((name, "must be a list"))
        return []
    out: list[Any] = []
    for i, entry in enumerate(items):
        code = code_of(entry)
        if code is None:
            problems.append((f"{name}.{i}", "names no code"))
        else:
            out.append(code)
    return out


def _language_code(entry: Any) -> Any:
    return entry.get("code") if isinstance(entry, dict) else entry


def _area(entry: Any) -> Any:
    """The P-code of an HSDS service area: its text extent, else its name."""
    if not isinstance(entry, dict):
        return entry
    if entry.get("extent_type") == "text" and entry.get("extent"):
        return entry["extent"]
    return entry.get("name")


def _problems(exc: ValidationError, where: Any) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()))
        out.append((where(loc), str(err.get("msg", "invalid"))))
    return out


def _service_path(loc: str) -> str:
    for prefix, target in _SPEC_TO_HSDS.items():
        if loc == prefix or loc.startswith(prefix + "."):
            return target + loc[len(prefix) :]
    if loc.startswith("languages."):
        return loc + ".code"
    return loc or "service"


def _organization_path(loc: str) -> str:
    if loc.startswith("contact.email"):
        return "email"
    if loc.startswith("contact.phone"):
        return "phones.0.number"
    if loc in ("kind", "country"):
        return f"{EXTENSION}.{loc}"
    return loc or "organization"
