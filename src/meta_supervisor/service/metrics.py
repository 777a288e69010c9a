"""Prometheus metrics of one service (its own registry, so two apps in a process never clash).

Cycle metrics are set by the scheduler; the decision gauges (gross, cash, per-agent weight,
gated count by gate) from whichever decision is the latest committed one, whoever committed it
(the scheduler or ``allocate`` from a shell); HTTP latency by the ASGI middleware, labelled by
route template (never by raw path, so an attacker cannot grow the label set).
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from meta_supervisor.allocate.decision import parse_iso

__all__ = ["ServiceMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServiceMetrics:
    """The metric families named in docs/SERVICE.md."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.cycle_duration = Histogram(
            "meta_supervisor_cycle_duration_seconds",
            "Wall time of scheduled cycles (successful or not).",
            registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        )
        self.last_success = Gauge(
            "meta_supervisor_cycle_last_success_timestamp_seconds",
            "Unix time at which the last scheduled cycle committed.",
            registry=r,
        )
        self.failures = Counter(
            "meta_supervisor_cycle_failures",
            "Scheduled cycle attempts that failed (each retry counts).",
            registry=r,
        )
        self.missed = Counter(
            "meta_supervisor_missed_slots",
            "Schedule slots that passed without a cycle (service down), reported at start.",
            registry=r,
        )
        self.decision_as_of = Gauge(
            "meta_supervisor_decision_as_of_timestamp_seconds",
            "as_of of the latest committed decision (Unix time).",
            registry=r,
        )
        self.gross = Gauge("meta_supervisor_gross", "Gross weight deployed.", registry=r)
        self.cash = Gauge("meta_supervisor_cash", "Weight held in cash.", registry=r)
        self.weight = Gauge(
            "meta_supervisor_agent_weight", "Weight of each agent.", ["agent"], registry=r
        )
        self.gated = Gauge(
            "meta_supervisor_gated_agents",
            "Agents gated, by the first gate they failed.",
            ["gate"],
            registry=r,
        )
        self.ingested = Counter(
            "meta_supervisor_ingested_rows",
            "Rows stored by uploads, by kind (records, telemetry).",
            ["kind"],
            registry=r,
        )
        self.refused = Counter(
            "meta_supervisor_refused_rows",
            "Rows refused by uploads (the batch was refused whole), by kind.",
            ["kind"],
            registry=r,
        )
        self.alerts = Counter(
            "meta_supervisor_alerts",
            "Webhook notices, by outcome (sent, failed, dropped by the rate limit or queue).",
            ["outcome"],
            registry=r,
        )
        self.http_latency = Histogram(
            "meta_supervisor_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self._agents: set[str] = set()
        self._gates: set[str] = set()
        self._shown: str | None = None

    def show_decision(self, digest: str, decision: dict[str, Any]) -> None:
        """Set the decision gauges from ``decision`` (once per distinct decision)."""
        if digest == self._shown:
            return
        self._shown = digest
        self.decision_as_of.set(parse_iso(decision["as_of"]).timestamp())
        self.gross.set(decision["gross"])
        self.cash.set(decision["cash"])
        agents = decision.get("agents", {})
        for name in self._agents - set(agents):
            self.weight.remove(name)
        for name, explanation in agents.items():
            self.weight.labels(agent=name).set(explanation.get("weight", 0.0))
        self._agents = set(agents)
        by_gate: Tally[str] = Tally(
            first
            for e in agents.values()
            if (first := next((g["gate"] for g in e.get("gates", []) if not g.get("passed")), None))
            is not None
        )
        for gate in self._gates | set(by_gate):
            self.gated.labels(gate=gate).set(by_gate.get(gate, 0))
        self._gates |= set(by_gate)
