import json
import uuid
from datetime import datetime

import pytest
from pydantic import ValidationError

from icrs_shared.events import Envelope, asyncapi_document, platform_events
from icrs_shared.events.catalog import CaseEvent

CONTRACT_TYPES = {
    *(f"icrs.organization.{v}" for v in ("registered", "verified", "suspended", "reactivated")),
    *(f"icrs.service.{v}" for v in ("published", "updated", "withdrawn")),
    "icrs.client.issued",
    "icrs.client.revoked",
    *(f"icrs.case.{v}" for v in ("registered", "updated", "closed", "erased", "accessed")),
    "icrs.consent.granted",
    "icrs.consent.withdrawn",
    "icrs.needs.assessed",
    "icrs.plan.updated",
    "icrs.import.completed",
    *(
        f"icrs.referral.{v}"
        for v in [
            "created",
            "received",
            "accepted",
            "rejected",
            "started",
            "held",
            "resumed",
            "completed",
            "failed",
            "cancelled",
            "expired",
            "rerouted",
            "unmatched",
        ]
    ),
    "icrs.webhook.delivery_failed",
}

# Words that would mean a payload carries a direct identifier (contract §7).
IDENTIFYING = ("name", "birth", "dob", "document", "phone", "email", "contact", "address", "note")


def test_envelope_round_trips_and_routes_by_type() -> None:
    env = Envelope(
        source="/icrs/intake",
        type="icrs.case.registered",
        subject=str(uuid.uuid4()),
        data={"case_id": str(uuid.uuid4())},
        actor="client-1",
        actororg=str(uuid.uuid4()),
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    raw = json.loads(env.to_json())
    assert raw["specversion"] == "1.0"
    assert raw["datacontenttype"] == "application/json"
    assert Envelope.from_json(env.to_json()) == env
    assert env.routing_key == "case.registered"


@pytest.mark.parametrize(
    "change",
    [
        {"type": "case.registered"},
        {"source": "intake"},
        {"time": datetime(2026, 1, 1)},
        {"specversion": "0.3"},
        {"unexpected": 1},
    ],
)
def test_envelope_refuses_what_the_contract_does_not_allow(change: dict[str, object]) -> None:
    fields: dict[str, object] = {"source": "/icrs/intake", "type": "icrs.case.registered"}
    fields.update(change)
    with pytest.raises(ValidationError):
        Envelope.model_validate(fields)


def test_registry_holds_exactly_the_contract_types() -> None:
    assert {t.type for t in platform_events()} == CONTRACT_TYPES


def test_no_event_payload_has_a_field_for_direct_identifiers() -> None:
    def fields(schema: dict[str, object], defs: dict[str, dict[str, object]]) -> set[str]:
        names: set[str] = set()
        for name in schema.get("properties", {}):  # type: ignore[union-attr]
            names.add(name)
        for nested in defs.values():
            names |= set(nested.get("properties", {}))  # type: ignore[arg-type]
        return names

    for et in platform_events():
        schema = et.data.model_json_schema()
        names = fields(schema, schema.get("$defs", {}))
        bad = {n for n in names if any(word in n for word in IDENTIFYING)}
        assert not bad, f"{et.type} has identifying fields {bad}"


def test_registry_parses_data_with_its_schema() -> None:
    reg = platform_events()
    case_id, org = uuid.uuid4(), uuid.uuid4()
    env = Envelope(
        source="/icrs/intake",
        type="icrs.case.registered",
        data={"case_id": str(case_id), "organization_id": str(org), "is_minor": True, "extra": 1},
    )
    data = reg.parse(env, CaseEvent)
    assert (data.case_id, data.is_minor) == (case_id, True)
    with pytest.raises(ValidationError):
        reg.validate(env.model_copy(update={"data": {"case_id": "not-a-uuid"}}))
    with pytest.raises(KeyError):
        reg["icrs.case.teleported"]


def test_asyncapi_document_describes_every_event() -> None:
    reg = platform_events()
    doc = asyncapi_document(reg)
    assert doc["asyncapi"] == "3.0.0"
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {t.routing_key for t in reg}
    schemas = doc["components"]["schemas"]
    assert "Envelope" in schemas
    for name, message in doc["components"]["messages"].items():
        data_ref = message["payload"]["allOf"][1]["properties"]["data"]["$ref"]
        assert data_ref.rsplit("/", 1)[-1] in schemas, name
    # every $ref resolves inside the document
    text = json.dumps(doc)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        node: object = doc
        for key in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict), ref
            assert key in node, ref
            node = node[key]
