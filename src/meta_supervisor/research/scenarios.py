"""Every named scenario, simulated and real-price, in one register.

:data:`SCENARIOS` maps a name to its :class:`~meta_supervisor.research.simulate.Scenario`;
adding a scenario is one entry in :mod:`~meta_supervisor.research.simulate` or
:mod:`~meta_supervisor.research.realprice`, never an edit here.
"""

from __future__ import annotations

from meta_supervisor.research import calendar, realprice, simulate
from meta_supervisor.research.simulate import Scenario, SimulatedFleet

__all__ = ["SCENARIOS", "build_scenario"]

SCENARIOS: dict[str, Scenario] = {
    **simulate.SCENARIOS,
    **calendar.SCENARIOS,
    **realprice.SCENARIOS,
}


def build_scenario(name: str, seed: int = 0) -> SimulatedFleet:
    """Build the named scenario (see :data:`SCENARIOS`); an unknown name lists the known ones."""
    if name not in SCENARIOS:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
    return SCENARIOS[name].build(seed)
