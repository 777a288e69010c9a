"""Who may call what: FastAPI dependencies that check the bearer token's scope.

No ``Authorization`` header (or not ``Bearer``) -> 401; a token that matches no stored hash ->
401; a valid token without the scope -> 403. Read endpoints take no token when the operator
opened them (``--read-open``). The caller's token name is what the audit log and an override's
``created_by`` record.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException, Request

from meta_supervisor.service.tokens import Scope, Tokens

__all__ = ["ANONYMOUS", "require"]

ANONYMOUS = "anonymous"


def require(scope: Scope) -> Callable[[Request], str]:
    """A dependency that returns the caller's name, or raises 401/403."""

    def check(request: Request) -> str:
        service = request.app.state.service
        if scope is Scope.READ and service.settings.read_open:
            return ANONYMOUS
        header = request.headers.get("authorization", "")
        kind, _, secret = header.partition(" ")
        if kind.lower() != "bearer" or not secret.strip():
            raise HTTPException(
                401,
                f"this endpoint needs a bearer token with scope '{scope}'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        tokens: Tokens = service.tokens
        token = tokens.find(secret.strip())
        if token is None:
            raise HTTPException(
                401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"}
            )
        if scope not in token.scopes:
            raise HTTPException(403, f"token {token.name!r} lacks scope '{scope}'")
        return token.name

    return check
