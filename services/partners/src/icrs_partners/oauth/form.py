"""Reading a token request (RFC 6749 §2.3.1, §3.2, §4.4.2) before anything is looked up."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

#: A client credentials request is a few hundred bytes; anything near this is not one.
MAX_BODY = 8192
_MAX_FIELDS = 32
FORM_TYPE = "application/x-www-form-urlencoded"


class TokenRequestError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class TokenRequest:
    form: dict[str, str]
    authorization: str | None
    #: The client the request names, and the secret it presents, however it sends them.
    client_id: str | None
    secret: str | None

    @property
    def grant_type(self) -> str:
        return self.form["grant_type"]


def parse_token_request(
    content_type: str | None, body: bytes | None, authorization: str | None
) -> TokenRequest:
    """The request's parameters and credentials; `invalid_request` when it is malformed,
    `invalid_client` when its Basic credentials cannot be read. `body` None: too large."""
    form = _form(content_type, body)
    if "grant_type" not in form:
        raise TokenRequestError("invalid_request")
    client_id, secret = form.get("client_id"), form.get("client_secret")
    basic = _basic(authorization)
    if basic is not None:
        # One authentication method per request (RFC 6749 §2.3); a client_id in the body
        # may only repeat the one in the header.
        if secret is not None or client_id not in (None, basic[0]):
            raise TokenRequestError("invalid_request")
        client_id, secret = basic
    if client_id is not None and any(ch < " " or ch == "\x7f" for ch in client_id):
        # No client id holds a control character (and PostgreSQL refuses NUL in text).
        raise TokenRequestError("invalid_client")
    return TokenRequest(form, authorization if basic else None, client_id, secret)


def _form(content_type: str | None, body: bytes | None) -> dict[str, str]:
    media_type, _, params = (content_type or "").partition(";")
    if media_type.strip().lower() != FORM_TYPE or body is None:
        raise TokenRequestError("invalid_request")
    charset = params.strip().lower()
    if charset and charset.replace(" ", "") not in ("charset=utf-8", 'charset="utf-8"'):
        raise TokenRequestError("invalid_request")
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError):
        raise TokenRequestError("invalid_request") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise TokenRequestError("invalid_request")  # RFC 6749 §3.2: no repeats
        form[name] = value
    # RFC 6749 §3.2: a parameter without a value is as if omitted.
    return {name: value for name, value in form.items() if value}


def _basic(authorization: str | None) -> tuple[str, str | None] | None:
    """Client id and secret from `Authorization: Basic`; None for any other scheme."""
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise TokenRequestError("invalid_client") from None
    # RFC 6749 §2.3.1: both are form-encoded before they are joined.
    client_id, colon, secret = decoded.partition(":")
    if not client_id:
        raise TokenRequestError("invalid_client")
    return unquote(client_id), unquote(secret) if colon else None
