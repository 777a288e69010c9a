"""Bearer tokens with scopes, stored hashed, compared in constant time.

The tokens file (``--tokens FILE`` or ``META_SUPERVISOR_TOKENS``) is a JSON list::

    [{"name": "executor-1", "scopes": ["read"], "sha256": "9f86d0..."},
     {"name": "risk-desk", "scopes": ["read", "override"], "sha256": "..."}]

Only the SHA-256 of each token is kept (tokens are 32 random bytes, so a plain hash is enough:
there is nothing to brute-force). A presented token is hashed and compared with every stored
hash by :func:`hmac.compare_digest`, all of them, so the time taken does not tell which one
nearly matched. Create one with ``python -m meta_supervisor.service.tokens NAME SCOPE...``: it
prints the token once and appends its hash to the file.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from meta_supervisor.state.files import atomic_write_text

__all__ = ["Scope", "Token", "TokenError", "Tokens", "hash_token", "new_token"]


class Scope(StrEnum):
    """What a token may do."""

    READ = "read"
    INGEST = "ingest"
    OVERRIDE = "override"


class TokenError(ValueError):
    """The tokens file is invalid; the message names the entry and field."""


@dataclass(frozen=True)
class Token:
    """One stored token: who holds it, what it may do, and the hash of its secret."""

    name: str
    scopes: frozenset[Scope]
    sha256: str


def hash_token(secret: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(secret.encode()).hexdigest()


class Tokens:
    """The tokens the service accepts (possibly none: then every write is refused)."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = list(tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    @classmethod
    def load(cls, path: Path | None) -> Tokens:
        """Read the tokens file; ``None`` or a missing file means no token."""
        if path is None or not Path(path).exists():
            return cls([])
        try:
            items = json.loads(Path(path).read_text(encoding="utf-8") or "[]")
        except json.JSONDecodeError as err:
            raise TokenError(f"{path}: line {err.lineno}: not valid JSON: {err.msg}") from None
        if not isinstance(items, list):
            raise TokenError(f"{path}: expected a JSON list of tokens")
        return cls([_parse(item, f"{path}: entry {i}") for i, item in enumerate(items, 1)])

    def find(self, secret: str) -> Token | None:
        """The token whose hash matches ``secret`` (every entry is compared, in constant time)."""
        presented = hash_token(secret).encode()
        found = None
        for token in self._tokens:
            if hmac.compare_digest(presented, token.sha256.encode()):
                found = token
        return found


def _parse(item: object, where: str) -> Token:
    if not isinstance(item, dict):
        raise TokenError(f"{where}: expected an object")
    name, scopes, digest = item.get("name"), item.get("scopes"), item.get("sha256")
    if not isinstance(name, str) or not name.strip():
        raise TokenError(f"{where}: field 'name' is required (a non-empty string)")
    if not isinstance(scopes, list) or not scopes:
        raise TokenError(f"{where}: field 'scopes' must list some of read, ingest, override")
    try:
        parsed = frozenset(Scope(s) for s in scopes)
    except ValueError:
        raise TokenError(f"{where}: field 'scopes': one of read, ingest, override") from None
    if not isinstance(digest, str) or len(digest) != 64:
        raise TokenError(f"{where}: field 'sha256' must be a SHA-256 hex digest")
    return Token(name.strip(), parsed, digest.lower())


def new_token(path: Path, name: str, scopes: list[str]) -> str:
    """Create a token, append its hash to ``path`` (atomically) and return the secret."""
    current = json.loads(path.read_text(encoding="utf-8") or "[]") if path.exists() else []
    Tokens([_parse(item, f"{path}: entry {i}") for i, item in enumerate(current, 1)])
    secret = secrets.token_urlsafe(32)
    entry = {"name": name, "scopes": sorted(set(scopes)), "sha256": hash_token(secret)}
    _parse(entry, f"new token {name!r}")
    atomic_write_text(path, json.dumps([*current, entry], indent=2) + "\n")
    os.chmod(path, 0o600)
    return secret


def main(argv: list[str] | None = None) -> int:
    """``python -m meta_supervisor.service.tokens NAME SCOPE... [--file FILE]``."""
    parser = argparse.ArgumentParser(description="Create a bearer token for the service.")
    parser.add_argument("name", help="who holds it (recorded in the audit log)")
    parser.add_argument("scopes", nargs="+", choices=[s.value for s in Scope])
    parser.add_argument(
        "--file",
        type=Path,
        default=Path(os.environ.get("META_SUPERVISOR_TOKENS", "tokens.json")),
        help="tokens file (default: META_SUPERVISOR_TOKENS, else ./tokens.json)",
    )
    args = parser.parse_args(argv)
    try:
        secret = new_token(args.file, args.name, args.scopes)
    except (TokenError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(secret)
    print(f"(hash stored in {args.file}; the token is not kept anywhere else)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
