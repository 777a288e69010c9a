"""A look back (``allocate --dry-run`` at an instant before the latest decision) smooths against
the decision that was in force then, never against one made after it."""

from __future__ import annotations

from datetime import timedelta

from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.research.demo import DEMO_AS_OF, DEMO_CYCLES, write_demo_fleet
from meta_supervisor.state.files import read_history


def test_a_dry_run_look_back_smooths_against_the_decision_in_force_then(tmp_path):
    # Regression (newcomer review): with a 07:00 decision recorded, a dry run at 06:00 used the
    # 07:00 weights as its previous weights (fornax 2% -> 7%, where 11.5% was in force).
    paths = write_demo_fleet(tmp_path)
    for as_of in DEMO_CYCLES:
        run_cycle(paths, as_of)
    later = DEMO_AS_OF + timedelta(hours=7)
    run_cycle(paths, later)
    entries = read_history(paths.history)
    in_force = next(e for e in reversed(entries) if e.decision["as_of"] <= "2026-01-15T06")
    assert in_force.decision["as_of"] == "2026-01-15T00:00:00Z"

    look_back, _ = run_cycle(paths, DEMO_AS_OF + timedelta(hours=6), write=False)

    assert look_back.provenance["previous_decision_hash"] == in_force.hash
    for name, e in look_back.agents.items():
        assert e["previous_weight"] == in_force.decision["weights"].get(name, 0.0), name
    assert len(read_history(paths.history)) == len(entries)  # a look back records nothing
