"""The token endpoint's flow: throttle, read the request, authenticate the client, then let
authlib's server run the grant.

No answer says whether a client id exists: an unknown client, a wrong secret, a revoked
client and a client of an organization that is not active all get `invalid_client`, after
the same scrypt work (against a stand-in hash when there is no client to check).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from ..credentials import verify_secret
from ..scopes import ALL_SCOPES, KIND_SCOPES, Kind
from . import repository
from .form import TokenRequest, TokenRequestError, parse_token_request
from .server import GRANT_TYPE, AuthenticatedClient, Issued, Refused, create_token_response
from .state import AuthorizationServerState

log = logging.getLogger(__name__)

#: Longer secrets than any this server issues are refused without hashing them.
MAX_SECRET_LENGTH = 512


@dataclass(frozen=True)
class Throttled:
    retry_after: int


async def issue_token(
    *,
    session: AsyncSession,
    server: AuthorizationServerState,
    content_type: str | None,
    body: bytes | None,
    authorization: str | None,
    remote: str,
) -> Issued | Refused | Throttled:
    failures, clients = server.failure_limiter, server.client_limiter
    if wait := failures.wait(remote):
        return Throttled(failures.retry_after(wait))
    # Every request counts as a failure of its address until it proves good: charged
    # before the scrypt work, so that concurrent requests cannot all pass the look above
    # before any is charged (at most a burst of them is ever in flight per address).
    failures.take(remote)
    try:
        request = parse_token_request(content_type, body, authorization)
    except TokenRequestError as exc:
        return Refused(exc.error)
    if request.client_id is not None and (wait := clients.wait(request.client_id)):
        # Looked at before the scrypt work, charged only once the client is authenticated:
        # requests that merely name a client cannot use up its allowance. (Only a client
        # over its rate has an empty bucket, so this says no more about an id than that
        # its own holder is flooding; ids are random and unguessable.)
        failures.give_back(remote)
        return Throttled(clients.retry_after(wait))
    client = None
    if request.grant_type == GRANT_TYPE:
        client = await _authenticate(session, server, request)
    if client is not None:
        failures.give_back(remote)
        # Looked at again: concurrent requests of one client all passed the first look.
        if wait := clients.wait(client.client_id):
            return Throttled(clients.retry_after(wait))
        clients.take(client.client_id)
    result = create_token_response(
        form=request.form,
        authorization=request.authorization,
        token_endpoint=server.token_endpoint,
        client=client,
        key=await server.keys.signing_key(),
        settings=server.token_settings,
    )
    if isinstance(result, Issued) and client is not None:
        log.info("access token issued", extra={"client_id": client.client_id})
    elif isinstance(result, Refused):
        log.info("token request refused", extra={"error": result.error})
    return result


async def _authenticate(
    session: AsyncSession, server: AuthorizationServerState, request: TokenRequest
) -> AuthenticatedClient | None:
    client_id, secret = request.client_id, request.secret
    if client_id is None or secret is None or len(secret) > MAX_SECRET_LENGTH:
        return None
    found = await repository.client_with_organization(session, client_id)
    stored = server.stand_in_hash
    if found is not None and found[0].auth_method == "client_secret":
        stored = found[0].secret_hash
    if not await asyncio.to_thread(verify_secret, secret, stored) or found is None:
        return None
    client, organization = found
    if client.auth_method != "client_secret":
        return None
    if client.revoked_at is not None or organization.status != "active":
        log.info(
            "token refused to a client that may not have one",
            extra={"client_id": client.client_id, "organization_status": organization.status},
        )
        return None
    return AuthenticatedClient(
        client_id=client.client_id,
        organization_id=organization.id,
        scopes=frozenset(client.scopes) & _kind_scopes(organization.kind),
        secret=secret,
    )


def _kind_scopes(kind: str) -> frozenset[str]:
    try:
        return KIND_SCOPES[Kind(kind)] & ALL_SCOPES
    except ValueError:
        return frozenset()
