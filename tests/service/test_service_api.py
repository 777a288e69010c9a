"""The HTTP API through a real client against a real ``meta-supervisor serve`` process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from meta_supervisor.research.demo import write_demo_fleet
from meta_supervisor.state.files import read_history
from meta_supervisor.views.attribution import compare_decisions
from servekit import (
    Server,
    auth,
    copy_fleet,
    demo_fleet,
    ledger_rows,
    poll,
    record_lines,
    server_env,
    serving,
    write_tokens,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template") / "fleet"
    demo_fleet(root)
    return root


@pytest.fixture(scope="module")
def server(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("api")
    copy_fleet(template, base / "fleet")
    tokens = write_tokens(base / "tokens.json")
    with serving(base / "fleet", "--read-open", tokens=tokens) as running:
        yield running


def _root(server: Server) -> Path:
    return server.root


def test_current_allocation_has_weights_cash_as_of_and_an_etag(server: Server) -> None:
    answer = server.client.get("/v1/allocation")
    assert answer.status_code == 200
    body = answer.json()
    last = read_history(_root(server) / "meta_supervisor/state/history.jsonl")[-1]
    assert body["seq"] == last.seq
    assert body["hash"] == last.hash
    assert body["as_of"] == "2026-01-15T00:00:00Z"
    assert body["weights"] == last.decision["weights"]
    assert body["cash"] == pytest.approx(1 - sum(body["weights"].values()), abs=1e-9)
    assert answer.headers["etag"] == f'"{last.hash}"'
    again = server.client.get("/v1/allocation", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_decisions_by_sequence_and_one_agents_explanation(server: Server) -> None:
    first = server.client.get("/v1/decisions/1").json()
    assert first["seq"] == 1
    assert first["decision"]["as_of"] == "2026-01-14T18:00:00Z"
    latest = server.client.get("/v1/decisions/latest").json()
    cygnus = server.client.get(f"/v1/decisions/{latest['seq']}/agents/cygnus").json()
    assert cygnus["summary"] == latest["decision"]["agents"]["cygnus"]["summary"]
    assert {f["factor"] for f in cygnus["factors"]} >= {"rule", "cvar"}
    assert server.client.get("/v1/agents/cygnus").json() == cygnus
    assert server.client.get("/v1/decisions/99").status_code == 404
    missing = server.client.get("/v1/agents/nobody")
    assert missing.status_code == 404
    assert "nobody" in missing.json()["error"]


def test_history_per_agent_and_time_range(server: Server) -> None:
    all_points = server.client.get("/v1/history").json()["points"]
    assert [p["seq"] for p in all_points] == [1, 2]
    late = server.client.get("/v1/history", params={"start": "2026-01-14T20:00:00Z"}).json()
    assert [p["seq"] for p in late["points"]] == [2]
    agent = server.client.get("/v1/history", params={"agent": "borealis"}).json()
    assert agent["agent"] == "borealis"
    assert all("drawdown" in p["factors"] for p in agent["points"])
    bad = server.client.get("/v1/history", params={"start": "yesterday"})
    assert bad.status_code == 422
    assert "start" in bad.json()["error"]


def test_diff_is_the_clis_comparison(server: Server) -> None:
    entries = read_history(_root(server) / "meta_supervisor/state/history.jsonl")
    body = server.client.get("/v1/diff", params={"old": 1, "new": 2}).json()
    expected = json.loads(json.dumps(compare_decisions(entries[0].decision, entries[1].decision)))
    assert {k: body[k] for k in expected} == expected
    assert body["old"]["seq"] == 1
    assert body["new"]["seq"] == 2


def test_overrides_quarantine_status_openapi(server: Server) -> None:
    overrides = server.client.get("/v1/overrides").json()["overrides"]
    assert [o["agent"] for o in overrides] == ["hydra"]
    assert overrides[0]["active"] is False  # the demo's override expired in January 2026
    assert server.client.get("/v1/quarantine").json()["total"] >= 0
    assert server.client.get("/v1/status").json()["schedule"] is None
    spec = server.client.get("/v1/openapi.json").json()
    for path in ("/v1/allocation", "/v1/records", "/v1/overrides", "/v1/diff", "/v1/history"):
        assert path in spec["paths"]
    assert server.client.get("/docs").status_code == 200


def test_health_readiness_and_metrics(server: Server) -> None:
    assert server.client.get("/healthz").json()["ok"] is True
    ready = server.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    text = server.client.get("/metrics").text
    served = server.client.get("/v1/allocation").json()
    for name in (
        "meta_supervisor_cycle_duration_seconds",
        "meta_supervisor_cycle_last_success_timestamp_seconds",
        "meta_supervisor_cycle_failures_total",
        'meta_supervisor_agent_weight{agent="atlas"} 0.25',
        'meta_supervisor_gated_agents{gate="error_rate"} 1.0',
        f"meta_supervisor_gross {float(served['gross'])!r}",
        f"meta_supervisor_cash {float(served['cash'])!r}",
        "meta_supervisor_ingested_rows_total",
        "meta_supervisor_http_request_duration_seconds_bucket",
    ):
        assert name in text, name


def test_a_cycle_from_the_shell_is_served_at_once(server: Server) -> None:
    before = server.client.get("/v1/allocation").json()
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "meta_supervisor",
            "allocate",
            "--root",
            str(_root(server)),
            "--as-of",
            "2026-01-15T06:00:00Z",
            "--json",
        ],
        env=server_env(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr.decode()
    after = server.client.get("/v1/allocation").json()  # the very next request
    assert after["seq"] == before["seq"] + 1
    assert after["as_of"] == "2026-01-15T06:00:00Z"
    assert after["weights"] == json.loads(cli.stdout)["weights"]


def test_upload_is_idempotent_under_its_key(server: Server) -> None:
    body = record_lines("atlas", 6)
    headers = {**auth("ingester"), "Content-Type": "application/x-ndjson"}
    first = server.client.post(
        "/v1/records", content=body, headers={**headers, "Idempotency-Key": "k-1"}
    )
    assert first.status_code == 200, first.text
    assert first.json()["accepted_records"] == 6
    assert first.json()["replayed"] is False
    again = server.client.post(
        "/v1/records", content=body, headers={**headers, "Idempotency-Key": "k-1"}
    )
    assert again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["accepted_records"] == 6
    assert ledger_rows(_root(server)) == 6
    other = server.client.post(
        "/v1/records",
        content=record_lines("atlas", 2, 40),
        headers={**headers, "Idempotency-Key": "k-1"},
    )
    assert other.status_code == 409
    new_key = server.client.post(
        "/v1/records", content=body, headers={**headers, "Idempotency-Key": "k-2"}
    )
    assert new_key.json()["accepted_records"] == 0
    assert new_key.json()["duplicates"] == 6
    assert ledger_rows(_root(server)) == 6
    audit = (_root(server) / "meta_supervisor/state/audit.jsonl").read_text().splitlines()
    uploads = [json.loads(line) for line in audit if "upload_records" in line]
    assert [(u["target"], u["outcome"]) for u in uploads] == [
        ("k-1", "committed"),
        ("k-1", "replayed"),
        ("k-2", "nothing new"),  # the 409 wrote nothing: answered, not audited
    ]
    assert all(u["who"] == "ingester" for u in uploads)


def test_parquet_upload_of_telemetry(server: Server) -> None:
    frame = pl.DataFrame(
        {
            "ts": ["2026-01-16T00:00:00Z", "2026-01-16T01:00:00Z"],
            "agent": ["atlas", "indus"],
            "run_id": ["t-1", "t-2"],
            "error": [None, "timeout"],
            "latency_ms": [12.0, 30.0],
        }
    )
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    answer = server.client.post(
        "/v1/telemetry",
        content=buffer.getvalue(),
        headers={
            **auth("ingester"),
            "Content-Type": "application/vnd.apache.parquet",
            "Idempotency-Key": "tel-1",
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted_telemetry"] == 2


def test_overrides_added_listed_and_lifted_with_an_audit_trail(server: Server) -> None:
    root = _root(server)
    added = server.client.post(
        "/v1/overrides",
        json={
            "agent": "fornax",
            "action": "cap",
            "cap": 0.02,
            "reason": "sim review",
            "duration": "24h",
        },
        headers=auth("risk-desk"),
    )
    assert added.status_code == 201, added.text
    assert added.json()["added"]["created_by"] == "risk-desk"
    listed = {o["agent"]: o for o in server.client.get("/v1/overrides").json()["overrides"]}
    assert listed["fornax"]["active"] is True
    assert listed["fornax"]["in_latest_decision"] is False  # applies from the next cycle
    lifted = server.client.delete("/v1/overrides/fornax", headers=auth("risk-desk"))
    assert lifted.status_code == 200
    assert "fornax" not in {
        o["agent"] for o in server.client.get("/v1/overrides").json()["overrides"]
    }
    assert (
        server.client.delete("/v1/overrides/fornax", headers=auth("risk-desk")).status_code == 404
    )
    audit = [
        json.loads(x) for x in (root / "meta_supervisor/state/audit.jsonl").read_text().splitlines()
    ]
    actions = [
        (a["who"], a["action"], a["target"]) for a in audit if a["action"].startswith("override")
    ]
    assert actions == [
        ("risk-desk", "override_add", "fornax"),
        ("risk-desk", "override_lift", "fornax"),
    ]


def test_reads_need_a_token_unless_opened(template: Path, tmp_path: Path) -> None:
    copy_fleet(template, tmp_path / "fleet")
    tokens = write_tokens(tmp_path / "tokens.json")
    with serving(tmp_path / "fleet", tokens=tokens) as closed:
        assert closed.client.get("/v1/allocation").status_code == 401
        assert closed.client.get("/v1/allocation", headers=auth("ingester")).status_code == 403
        assert closed.client.get("/v1/allocation", headers=auth("reader")).status_code == 200
        assert closed.client.get("/healthz").status_code == 200
        assert closed.client.get("/metrics").status_code == 401  # per-agent weights inside
        assert closed.client.get("/metrics", headers=auth("reader")).status_code == 200


def test_scheduled_cycles_catch_up_once_and_report_missed_slots(
    template: Path, tmp_path: Path
) -> None:
    copy_fleet(template, tmp_path / "fleet")
    with serving(tmp_path / "fleet", "--read-open", "--every", "1h") as server:
        status = poll(
            lambda: (s := server.client.get("/v1/status").json())["last_success_at"] and s,
            timeout_s=120,
            what="the catch-up cycle",
        )
        assert status["missed"]["count"] > 7000  # every hour since 2026-01-15, reported
        assert status["missed"]["why"] == "while the service was down"
        current = server.client.get("/v1/allocation").json()
        assert current["seq"] == 3  # one catch-up cycle, not thousands replayed
        assert current["as_of"] == status["missed"]["last"]
        text = server.client.get("/metrics").text
        assert f"meta_supervisor_missed_slots_total {float(status['missed']['count'])}" in text
        assert server.client.get("/readyz").status_code == 200


def test_a_new_state_gets_its_first_decision_at_start(tmp_path: Path) -> None:
    write_demo_fleet(tmp_path / "fleet")
    with serving(tmp_path / "fleet", "--read-open", "--every", "1h") as server:
        poll(lambda: server.client.get("/v1/status").json()["last_success_at"], timeout_s=120)
        current = server.client.get("/v1/allocation").json()
        assert current["seq"] == 1
        assert current["as_of"].endswith(":00:00Z")  # the current slot, aligned to the hour
        assert server.client.get("/v1/status").json()["missed"] is None


def test_pages_load_only_what_the_package_serves(server: Server) -> None:
    page = server.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    html = page.text
    assert "http" not in html.replace('href="/', "")  # no absolute URL: no CDN
    for asset in ("/assets/app.js", "/assets/charts.js", "/assets/style.css"):
        assert server.client.get(asset).status_code == 200


def test_an_edited_explanations_file_is_a_named_error_not_a_served_text(
    template: Path, tmp_path: Path
) -> None:
    """The API builds each decision's explanations from its inputs file (issue 17) and holds
    it against the SHA-256 its history entry records: an edited file is refused, naming it,
    and the current allocation (weights are in the entry itself) is still served."""
    copy_fleet(template, tmp_path / "fleet")
    state = tmp_path / "fleet" / "meta_supervisor" / "state"
    edited = state / "explanations" / "00000001.inputs"
    data = edited.read_bytes()
    middle = len(data) // 2
    edited.write_bytes(data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :])
    with serving(tmp_path / "fleet", "--read-open") as running:
        answer = running.client.get("/v1/decisions/1/agents/cygnus")
        assert answer.status_code == 500
        assert "00000001.inputs" in answer.json()["error"]
        assert running.client.get("/v1/allocation").status_code == 200
        assert running.client.get("/v1/decisions/2/agents/cygnus").status_code == 200


def test_weights_over_time_are_served_from_the_records_alone(
    template: Path, tmp_path: Path
) -> None:
    """/v1/history without an agent (and the health check) read each entry's record, where the
    weights are: no decision is taken again from its inputs file (it read every entry's
    explanations: a missing file made the whole history a 500); an agent's points still need
    them, and name the file that is missing."""
    copy_fleet(template, tmp_path / "fleet")
    state = tmp_path / "fleet" / "meta_supervisor" / "state"
    (state / "explanations" / "00000001.inputs").unlink()
    with serving(tmp_path / "fleet", "--read-open") as running:
        answer = running.client.get("/v1/history")
        assert answer.status_code == 200, answer.text
        assert [p["seq"] for p in answer.json()["points"]] == [1, 2]
        assert running.client.get("/healthz").status_code in (200, 503)
        missing = running.client.get("/v1/history", params={"agent": "cygnus"})
        assert missing.status_code == 500
        assert "00000001.inputs" in missing.json()["error"]
