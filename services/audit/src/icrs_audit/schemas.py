"""What the audit service answers (contract §8)."""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import BaseModel, Field

from .models import LogEntry


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class LogKey(BaseModel):
    name: str = Field(description="The key's name: the log's origin.")
    public_key: str = Field(description="Base64 of the raw 32-byte Ed25519 public key.")
    verifier: str = Field(description="The C2SP note verifier key: name+keyid+base64(0x01‖key).")


class Entry(BaseModel):
    index: int
    leaf: str = Field(description="Base64 of the leaf data: the envelope's RFC 8785 JSON.")
    event: dict[str, Any] = Field(description="The event's CloudEvents envelope.")

    @classmethod
    def of(cls, row: LogEntry) -> Entry:
        return cls(index=row.idx, leaf=b64(row.leaf), event=json.loads(row.leaf))


class Entries(BaseModel):
    items: list[Entry]
    next_cursor: str | None = Field(
        default=None, description="When the range was cut at the page limit: the next `start`."
    )


class InclusionProof(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str = Field(description="Base64 of the RFC 9162 leaf hash.")
    hashes: list[str] = Field(description="The audit path, base64, leaf to root.")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    hashes: list[str]
