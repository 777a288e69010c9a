"""Refusals: no token, a wrong token, a token without the scope, a huge body, a malformed body,
path tricks in agent names. Each gets the right status and leaves nothing written."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meta_supervisor.service.tokens import Scope, Token, Tokens, hash_token
from servekit import Server, auth, demo_fleet, record_lines, serving, write_tokens

pytestmark = pytest.mark.slow
MAX_BODY = 4096
JSONL = {"Content-Type": "application/x-ndjson"}


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its content hash (lock files aside: not data)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("security")
    demo_fleet(base / "fleet")
    tokens = write_tokens(base / "tokens.json")
    with serving(base / "fleet", "--max-body", str(MAX_BODY), tokens=tokens) as running:
        yield running


@pytest.fixture
def unchanged(server: Server) -> Iterator[None]:
    """Fails the test if any file under the served root changed."""
    before = _snapshot(server.root)
    yield
    assert _snapshot(server.root) == before


def _post_records(server: Server, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return server.client.post("/v1/records", content=body, headers=headers)


@pytest.mark.usefixtures("unchanged")
def test_no_token_wrong_token_and_missing_scope(server: Server) -> None:
    body = record_lines("atlas", 3)
    key = {"Idempotency-Key": "sec-1", **JSONL}
    missing = _post_records(server, body, key)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert "scope 'ingest'" in missing.json()["error"]
    wrong = _post_records(server, body, {**key, "Authorization": "Bearer not-a-token"})
    assert wrong.status_code == 401
    basic = _post_records(server, body, {**key, "Authorization": "Basic cmVhZGVyOng="})
    assert basic.status_code == 401
    scope = _post_records(server, body, {**key, **auth("reader")})
    assert scope.status_code == 403
    assert "lacks scope 'ingest'" in scope.json()["error"]
    override = {"agent": "atlas", "action": "exclude", "reason": "x", "duration": "1h"}
    assert server.client.post("/v1/overrides", json=override).status_code == 401
    denied = server.client.post("/v1/overrides", json=override, headers=auth("ingester"))
    assert denied.status_code == 403
    assert server.client.delete("/v1/overrides/hydra", headers=auth("ingester")).status_code == 403
    assert server.client.get("/v1/allocation").status_code == 401  # reads closed here


@pytest.mark.usefixtures("unchanged")
def test_huge_bodies_are_refused(server: Server) -> None:
    headers = {"Idempotency-Key": "big-1", **JSONL, **auth("ingester")}
    big = record_lines("atlas", 200)
    assert len(big) > MAX_BODY
    declared = _post_records(server, big, headers)
    assert declared.status_code == 413
    assert "limit" in declared.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream itself is counted
        for start in range(0, len(big), 1024):
            yield big[start : start + 1024]

    streamed = server.client.post("/v1/records", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    huge_override = server.client.post(
        "/v1/overrides", content=b"{" + b" " * 70_000 + b"}", headers=auth("risk-desk")
    )
    assert huge_override.status_code == 413


@pytest.mark.usefixtures("unchanged")
def test_malformed_bodies_name_the_line_and_field(server: Server) -> None:
    headers = {"Idempotency-Key": "bad-1", **JSONL, **auth("ingester")}
    lines = record_lines("atlas", 3).decode().splitlines()
    lines[1] = lines[1].replace('"realized_pnl_bps": 2.5', '"realized_pnl_bps": "lots"')
    bad_field = _post_records(server, ("\n".join(lines) + "\n").encode(), headers)
    assert bad_field.status_code == 422
    error = bad_field.json()
    assert error["errors"][0]["line"] == 2
    assert error["errors"][0]["field"] == "realized_pnl_bps"
    assert "nothing written" in error["error"]
    garbage = _post_records(server, b"\x00\xff not json at all\n{]\n", headers)
    assert garbage.status_code == 422
    assert garbage.json()["errors"][0]["line"] == 1
    empty = _post_records(server, b"", headers)
    assert empty.status_code == 422
    not_parquet = _post_records(
        server, b"PAR1 but no", {**headers, "Content-Type": "application/vnd.apache.parquet"}
    )
    assert not_parquet.status_code == 422
    assert _post_records(server, b"{}", {**headers, "Content-Type": "text/csv"}).status_code == 415
    no_key = _post_records(server, record_lines("atlas", 1), {**JSONL, **auth("ingester")})
    assert no_key.status_code == 422
    assert "Idempotency-Key" in no_key.json()["error"]
    odd_key = {**headers, "Idempotency-Key": "../../etc"}
    assert _post_records(server, record_lines("atlas", 1), odd_key).status_code == 422
    for body in (b"{not json", b"[]", b'{"agent": "atlas"}', b'{"agent": "atlas", "x": 1}'):
        answer = server.client.post("/v1/overrides", content=body, headers=auth("risk-desk"))
        assert answer.status_code == 422, body
        assert answer.json()["errors"], body
    unknown = server.client.post(
        "/v1/overrides",
        json={"agent": "atlas", "action": "exclude", "reason": "r", "duration": "1h", "x": 1},
        headers=auth("risk-desk"),
    )
    assert unknown.json()["errors"][0]["field"] == "x"
    past = server.client.post(
        "/v1/overrides",
        json={"agent": "atlas", "action": "exclude", "reason": "r", "expires_at": "2020-01-01Z"},
        headers=auth("risk-desk"),
    )
    assert past.status_code == 422
    assert "expires_at" in past.json()["error"]
    stranger = server.client.post(
        "/v1/overrides",
        json={"agent": "nobody", "action": "exclude", "reason": "r", "duration": "1h"},
        headers=auth("risk-desk"),
    )
    assert stranger.status_code == 422
    assert "not in the latest decision" in stranger.json()["error"]


TRICKS = ["../../etc/passwd", "..", "./x", "/abs", "a/b", "a\\b", "a\x00b", "", " atlas", "%2e%2e"]


@pytest.mark.usefixtures("unchanged")
@pytest.mark.parametrize("name", TRICKS)
def test_path_tricks_in_agent_names(server: Server, name: str) -> None:
    override = {"agent": name, "action": "exclude", "reason": "r", "duration": "1h"}
    added = server.client.post(
        "/v1/overrides", json={**override, "allow_unknown": True}, headers=auth("risk-desk")
    )
    assert added.status_code == 422
    assert added.json()["errors"][0]["field"] == "agent"
    quoted = f"/v1/overrides/{quote(name, safe='')}"
    lifted = server.client.delete(quoted, headers=auth("risk-desk"))
    assert lifted.status_code in {404, 405, 422}
    read = server.client.get(f"/v1/agents/{quote(name, safe='')}", headers=auth("reader"))
    assert read.status_code in {404, 422}


@pytest.mark.usefixtures("unchanged")
@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.builds(
        lambda head, body, tail: head + body + tail,
        st.sampled_from(["../", "/", "./", "..\\", " ", "-", ".", "a/"]),
        st.text(max_size=20),
        st.sampled_from(["", "/", "/../x", "\\..", "\x00"]),
    )
)
def test_no_agent_name_with_a_path_shape_is_accepted(server: Server, name: str) -> None:
    answer = server.client.post(
        "/v1/overrides",
        json={
            "agent": name,
            "action": "exclude",
            "reason": "r",
            "duration": "1h",
            "allow_unknown": True,
        },
        headers=auth("risk-desk"),
    )
    assert answer.status_code == 422


def test_tokens_are_stored_hashed_and_matched_whole() -> None:
    secret = "s3cret-token-value"
    tokens = Tokens([Token("a", frozenset({Scope.READ}), hash_token(secret))])
    assert tokens.find(secret) is not None
    assert tokens.find(secret[:-1]) is None
    assert tokens.find(secret + "x") is None
    assert secret not in hash_token(secret)
