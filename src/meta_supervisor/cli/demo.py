"""``meta-supervisor demo``: the example fleet, two cycles, and what to try next."""

from __future__ import annotations

import shlex
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from meta_supervisor.allocate.decision import iso
from meta_supervisor.cli.common import (
    JsonOut,
    console,
    invocation,
    overrides_line,
)
from meta_supervisor.cycle.run import run_cycle
from meta_supervisor.research.demo import DEMO_AS_OF, DEMO_CYCLES, write_demo_fleet
from meta_supervisor.views.terminal import (
    print_decision,
)


def demo(
    root: Annotated[
        Path,
        typer.Option(
            "--root",
            "--out",
            help="Where to write the example fleet and its state (--out: the former name).",
        ),
    ] = Path("demo-out"),
    json_out: JsonOut = False,
) -> None:
    """Generate the example fleet, run two cycles on it (6 h apart) and print the decision.

    The fleet (8 agents, 21 days of records) is written under ROOT in the original system's
    layout, so every other command works on it with --root ROOT. Between the two cycles one
    agent's runs start failing: its error rate crosses the gate and it is cut ('diff' and the
    memo tell the story).

    Examples:

      meta-supervisor demo

      meta-supervisor demo --root /tmp/fleet --json
    """
    out = root
    paths = write_demo_fleet(out)
    decisions = []
    for as_of in DEMO_CYCLES:
        decision, ledger = run_cycle(paths, as_of)
        decisions.append(decision)
    decision = decisions[-1]
    if json_out:
        sys.stdout.write(decision.to_json() + "\n")
        return
    console.print(
        f"Example fleet: {ledger.records.height} records, {ledger.telemetry.height} telemetry runs "
        f"({ledger.refused} refused, {ledger.duplicates} duplicates) in {out}/. "
        f"Ran {len(decisions)} cycles: {', '.join(d.as_of for d in decisions)}."
    )
    print_decision(decision, console)
    line = overrides_line(decision)
    if line:
        console.print(line, highlight=False)
    where = shlex.quote(str(out))
    as_of_next = iso(DEMO_AS_OF + timedelta(hours=6))
    run = invocation()
    how = (
        ""
        if run == "meta-supervisor"
        else " (as shown here; 'meta-supervisor ...' once .venv is activated)"
    )
    console.print(
        f"\nState written to {paths.state_dir}/. Next, try{how}:\n"
        f"  {run} explain cygnus --root {where}      # every factor behind one weight\n"
        f"  {run} history --root {where}             # weights over time\n"
        f"  {run} diff --root {where}                # what changed, and why\n"
        f"  {run} explain --format md --root {where} > memo.md   # the memo for LPs\n"
        f"  {run} override add fornax --cap 0.02 --reason 'sim under review' "
        f"--for 24h --as-of {iso(DEMO_AS_OF)} --root {where}\n"
        f"  {run} allocate --as-of {as_of_next} --root {where}   # one more cycle\n"
        f"  {run} verify --root {where}              # check the history's hash chain",
        highlight=False,
        soft_wrap=True,
    )
