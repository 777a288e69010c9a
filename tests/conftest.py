"""Shared fixtures (simulated fleets, built once a session) and the hypothesis profile
(deterministic, no deadline: CI has 2 cores)."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

from meta_supervisor.research.simulate import FleetSpec, SimulatedFleet, simulate_fleet

settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def fleets() -> Callable[[FleetSpec, int], SimulatedFleet]:
    """Simulated fleets shared by the whole session: ``fleets(spec, seed)`` builds each
    (spec, seed) once (simulation is deterministic by seed; callers must not mutate it)."""
    built: dict[tuple[FleetSpec, int], SimulatedFleet] = {}

    def build(spec: FleetSpec, seed: int) -> SimulatedFleet:
        if (spec, seed) not in built:
            built[(spec, seed)] = simulate_fleet(spec, seed)
        return built[(spec, seed)]

    return build
