"""Every text the tools print about a decision is held against the numbers it explains.

For every agent of a fleet (hypothesis-generated fleets and the demo's simulated one), under
every profile and both ``cap_excess`` settings: the quality formula's factors multiply to the
quality, the risk factors times the capped share give the weight after risk, the summary
quotes the share, each moving factor and the weight the explanation holds, the table's
columns are the profile's, and the memo states the profile's method, the gates the decision
applied and where the cap's excess went, in the decision's own numbers.
"""

from __future__ import annotations

import io
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from rich.console import Console

from helpers import AS_OF, fleet_strategies, tails_st
from meta_supervisor.allocate.core import allocate
from meta_supervisor.allocate.decision import Decision
from meta_supervisor.allocate.inputs import Confidence, Tail
from meta_supervisor.allocate.profiles import PROFILES
from meta_supervisor.cycle.run import decide, load_ledger
from meta_supervisor.policy.model import CapExcess, Policy, Profile
from meta_supervisor.research.demo import DEMO_CYCLES, write_demo_fleet
from meta_supervisor.views.attribution import STEPS, cash_breakdown, fleet_quality, step_notes
from meta_supervisor.views.memo import decision_memo, md_cell
from meta_supervisor.views.terminal import allocation_table, print_decision

POLICIES = [Policy(profile=p, cap_excess=c) for p in Profile for c in CapExcess]
NAMES = [f"agent{i:02d}" for i in range(8)]
fleet_st, conf_st, previous_st = fleet_strategies(NAMES, max_previous_weight=0.1)

_TERM = re.compile(r"(\w+) (-?[0-9.]+(?:e[-+]?\d+)?)")


def _terms(note: str) -> list[tuple[str, float]]:
    """``name value`` pairs of a formula note (``= prior 1 × evidence 2.3 × confidence 1``)."""
    return [(name, float(value)) for name, value in _TERM.findall(note)]


def _product(values: list[float]) -> float:
    return math.prod(values)


def check_texts(decision: Decision) -> None:
    """Hold every text of ``decision`` against its numbers (see the module docstring)."""
    d = decision.to_dict()
    method = PROFILES[Profile(d["profile"])]
    total_q = fleet_quality(d)
    for name, e in d["agents"].items():
        factors = {f["factor"]: f["value"] for f in e["factors"]}
        steps = e["steps"]
        texts = step_notes(e, total_q, d["policy"], d["profile"])
        notes = dict(zip([k for k, _ in STEPS], texts, strict=True))
        gated = [g for g in e["gates"] if not g["passed"]]
        assert e["summary"].endswith(f"-> {e['weight']:.2%}") or gated, name
        if gated:
            assert e["summary"].startswith(f"gated by {gated[0]['gate']}: ")
            assert e["weight"] == 0
            continue
        # quality = the product of the profile's quality factors, each shown at its value
        quality_terms = _terms(notes["quality"])
        assert [n for n, _ in quality_terms] == list(method.quality_factors), notes["quality"]
        for n, shown in quality_terms:
            assert shown == pytest.approx(factors[n], rel=1e-5, abs=1e-12)
        assert _product([v for _, v in quality_terms]) == pytest.approx(
            steps["quality"], rel=1e-4, abs=1e-12
        )
        assert math.prod(factors[n] for n in method.quality_factors) == pytest.approx(
            steps["quality"], rel=1e-12, abs=1e-300
        )
        # share = q / Σq with the Σq shown
        sigma = float(notes["share_before_risk"].rsplit("= ", 1)[1].rstrip(")"))
        assert steps["quality"] / sigma == pytest.approx(steps["share_before_risk"], rel=1e-5)
        # after_risk = after_cap × the product of the risk factors shown
        risk_terms = _terms(notes["after_risk"].split(": × ", 1)[1])
        assert [n for n, _ in risk_terms] == list(method.risk_factors)
        assert steps["after_cap"] * _product([v for _, v in risk_terms]) == pytest.approx(
            steps["after_risk"], rel=1e-4, abs=1e-9
        )
        assert steps["after_cap"] * math.prod(
            factors[n] for n in method.risk_factors
        ) == pytest.approx(steps["after_risk"], rel=1e-12, abs=1e-15)
        # the summary: the share, each moving shown factor at its value, the weight
        summary = e["summary"]
        assert summary.startswith(f"{steps['share_before_risk']:.1%} on quality")
        for n in method.shown_factors:
            shown = f"{n} x{factors[n]:.2f}"
            assert (shown in summary) == (f"{factors[n]:.2f}" != "1.00"), (n, summary)
        if "excess from capped agents" in summary:
            assert d["policy"]["cap_excess"] == "agents"
            extra = steps["after_cap"] - steps["share_before_risk"]
            assert f"+{extra:.1%} excess from capped agents" in summary
        check_reasons(d["profile"], factors, {f["factor"]: f["reason"] for f in e["factors"]})
    # the cash breakdown adds up to the cash
    parts = cash_breakdown(d)
    assert math.fsum(p["amount"] for p in parts) == pytest.approx(d["cash"], abs=1e-5)
    check_memo(d)
    check_table(decision)


def _within(value: float, low: float, high: float) -> bool:
    return min(low, high) - 1e-9 <= value <= max(low, high) + 1e-9


def _num(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text)
    assert match is not None, (pattern, text)
    return [float(g.replace("%", "")) for g in match.groups()]


def check_reasons(profile: str, values: dict[str, float], reasons: dict[str, str]) -> None:
    """The numbers a factor's reason quotes make the factor's value (up to their rounding)."""
    if profile == "seed":
        (pnl,) = _num(r"sqrt of pnl_sum (-?[0-9.]+) bps", reasons["alpha"])
        lo, hi = math.sqrt(max(pnl - 0.05, 0)), math.sqrt(max(pnl + 0.05, 0))
        assert _within(values["alpha"], lo, hi), reasons["alpha"]
        offset, hit = _num(r"([0-9.]+) \+ hit rate ([0-9.]+)%", reasons["hit_rate"])
        assert abs(values["hit_rate"] - (offset + hit / 100)) <= 0.005 + 1e-9
        if "vs scale" in reasons["sim_integrity"]:
            gap, scale = _num(
                r"avg \|gap\| ([0-9.]+) bps vs scale ([0-9.]+)", reasons["sim_integrity"]
            )
            lo, hi = 1 / (1 + (gap + 0.05) / scale), 1 / (1 + max(gap - 0.05, 0) / scale)
            assert _within(values["sim_integrity"], lo, hi), reasons["sim_integrity"]
        return
    dd = reasons["drawdown"]
    if "x sigma·sqrt(n)" in dd:
        depth, z, sigma, n = _num(
            r"drawdown ([-+]?[0-9.]+) bps = ([0-9.]+) x sigma·sqrt\(n\) "
            r"\(sigma ([0-9.]+) bps, n (\d+)",
            dd,
        )
        # |depth| and sigma as shown are rounded to 0.1 bps: the true ratio is inside these
        shown = abs(depth)
        ratios = [
            d / ((sigma + b) * math.sqrt(n))
            for d in (max(0.0, shown - 0.05), shown + 0.05)
            for b in (-0.05, 0.05)
            if sigma + b > 0
        ]
        assert min(ratios) - 0.005 <= z <= max(ratios) + 0.005, dd
    tail = reasons["cvar"]
    if "mean |gap|" in tail:
        used, rho, scale = _num(
            r"CVaR95 ([-+]?[0-9.]+) bps = ([0-9.]+) x its own mean \|gap\| ([0-9.]+) bps", tail
        )
        ratios = [
            max(0.0, -(used + a)) / (scale + b)
            for a in (-0.05, 0.05)
            for b in (-0.05, 0.05)
            if scale + b > 0
        ]
        assert min(ratios) - 0.005 <= rho <= max(ratios) + 0.005, tail
    tilt = reasons.get("evidence", "")
    if "shrunk" in tilt:
        t, mean_t, share, shrunk = _num(
            r"t of mean PnL ([-+0-9.]+) vs fleet ([-+0-9.]+), signal share ([0-9]+)%.*"
            r"shrunk ([-+0-9.]+)",
            tilt,
        )
        spread = abs(t - mean_t) * 0.005 + (share / 100) * 0.01 + 0.005
        assert abs(shrunk - share / 100 * (t - mean_t)) <= spread + 1e-9, tilt


def check_memo(d: dict[str, Any]) -> None:
    memo = decision_memo(d)
    method = PROFILES[Profile(d["profile"])]
    head = memo.split("### What changed", 1)[0]
    assert f"used the **`{d['profile']}`** profile: {method.method}." in head
    assert "q = " + " x ".join(method.quality_factors) in head
    gates = [g["gate"] for g in next(iter(d["agents"].values()))["gates"]]
    assert re.findall(r"`(\w+)`: ", head) == gates
    assert f"more than {d['policy']['max_error_rate']:.0%} of its runs errored" in head
    assert f'`cap_excess = "{d["policy"]["cap_excess"]}"`' in head
    for other in PROFILES.values():
        if other is not method:
            assert other.method not in memo
    capped = [
        e
        for e in d["agents"].values()
        if e["steps"]["after_cap"] + 5e-7 < e["steps"]["share_before_risk"]
    ]
    if capped:
        cut = math.fsum(e["steps"]["share_before_risk"] - e["steps"]["after_cap"] for e in capped)
        assert f"whose excess was {cut:.2%} of capital" in head
    for name, e in d["agents"].items():
        section = memo.split(f"### {name} ({e['strategy']}): {e['weight']:.2%}", 1)[1]
        section = section.split("\n### ", 1)[0]
        for f in e["factors"]:
            assert md_cell(f["reason"]) in section
        assert f"| quality | {e['steps']['quality']:.4f} |" in section
        assert f"| final | {e['weight']:.4%} |" in section


def check_table(decision: Decision) -> None:
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    console.print(allocation_table(decision))
    header = next(line for line in console.export_text().splitlines() if "agent" in line)
    columns = header.split()
    method = PROFILES[Profile(decision.profile)]
    shown = [n.replace("_integrity", "") for n in method.shown_factors]
    assert columns[3 : 3 + len(shown)] == shown


def _decide(policy, stats, conf, tails, previous=None):
    return allocate(
        stats,
        as_of=AS_OF,
        policy=policy,
        confidence={k: Confidence(multiplier=v, n_evidence=10) for k, v in conf.items()},
        tails={
            k: Tail(strategy=k, n=50, gap_cvar95_bps=v, gap_cvar95_used_bps=v, mean_abs_gap=10.0)
            for k, v in tails.items()
        },
        previous=previous,
    )


@pytest.mark.parametrize(
    "policy", POLICIES, ids=lambda p: f"{p.profile.value}-{p.cap_excess.value}"
)
@settings(max_examples=40, deadline=None)
@given(fleet_st, conf_st, tails_st, previous_st)
def test_every_text_matches_its_numbers(policy, stats, conf, tails, previous):
    check_texts(_decide(policy, stats, conf, tails, previous))


@pytest.fixture(scope="module")
def demo_ledger(tmp_path_factory: pytest.TempPathFactory):
    paths = write_demo_fleet(tmp_path_factory.mktemp("demo"))
    return load_ledger(paths)


@pytest.mark.parametrize(
    "policy", POLICIES, ids=lambda p: f"{p.profile.value}-{p.cap_excess.value}"
)
def test_every_text_matches_its_numbers_on_the_simulated_demo_fleet(demo_ledger, policy):
    first = decide(demo_ledger, DEMO_CYCLES[0], policy)
    second = decide(demo_ledger, DEMO_CYCLES[1], policy, previous=first.weights)
    for decision in (first, second):
        check_texts(decision)


def test_quality_note_includes_the_evidence_tilt(demo_ledger):
    """Regression: under the evidence profile the quality step read ``= 1`` for atlas while
    its quality was 3.0 (the tilt was left out of the formula)."""
    d = decide(demo_ledger, DEMO_CYCLES[1], Policy(profile=Profile.EVIDENCE)).to_dict()
    atlas = d["agents"]["atlas"]
    note = step_notes(atlas, fleet_quality(d), d["policy"], d["profile"])[0]
    assert note == "= prior 1 × evidence 3 × confidence 1"
    assert atlas["steps"]["quality"] == 3.0


def test_memo_states_the_method_used_not_the_seeds(demo_ledger):
    """Regression: the memo's reading guide described the seed profile (square root of summed
    PnL, a positive-PnL gate) for a decision made with ``evidence``."""
    evidence = Policy(profile=Profile.EVIDENCE)
    memo = decision_memo(decide(demo_ledger, DEMO_CYCLES[1], evidence).to_dict())
    assert "`evidence`** profile" in memo
    for seed_words in ("√", "square root", "summed PnL", "positive PnL", "positive_pnl"):
        assert seed_words not in memo
    seed = decision_memo(
        decide(demo_ledger, DEMO_CYCLES[1], Policy(profile=Profile.SEED)).to_dict()
    )
    assert "square root of its PnL" in seed and "`positive_pnl`" in seed


def test_summary_line_says_deployed_once(demo_ledger):
    """Regression: the line under the table said "deployed" twice, rounded two ways."""
    decision = decide(demo_ledger, DEMO_CYCLES[1], Policy())
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    print_decision(decision, console)
    line = next(t for t in console.export_text().splitlines() if t.startswith("deployed"))
    assert line.count("deployed") == 1
    assert line.startswith(f"deployed {decision.gross:.2%}, cash {decision.cash:.2%}.")


def test_cap_excess_cash_keeps_the_excess_out_of_the_other_agents(demo_ledger):
    default = decide(demo_ledger, DEMO_CYCLES[1], Policy())
    explicit = decide(demo_ledger, DEMO_CYCLES[1], Policy(cap_excess=CapExcess.AGENTS))
    assert default.weights == explicit.weights  # the default is today's behaviour
    cash = decide(demo_ledger, DEMO_CYCLES[1], Policy(cap_excess=CapExcess.CASH))
    for name, e in cash.agents.items():
        steps = e["steps"]
        assert steps["after_cap"] == min(steps["share_before_risk"], 0.25), name
        assert cash.weights.get(name, 0.0) <= default.weights.get(name, 0.0) + 1e-12
    # the uncapped agents got the capped agents' excess by default; with cash each keeps its
    # own share
    gained = {
        name: e["steps"]["after_cap"] - e["steps"]["share_before_risk"]
        for name, e in default.agents.items()
    }
    most = max(gained, key=gained.__getitem__)
    assert gained[most] > 0.02
    kept = cash.agents[most]["steps"]
    assert kept["after_cap"] == kept["share_before_risk"]
    assert "(cap_excess = cash)" in cash.portfolio["reason"]
    assert cash.cash > default.cash


@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_the_line_under_the_table_names_the_rule_select_follows(demo_ledger, profile):
    """Newcomer walkthrough: the demo's table showed `rule x0.34` without saying which rule;
    under `select` a line under the table now quotes the rule factor's reason (the same for
    every agent); other profiles, which have no rule factor, print no such line."""
    decision = decide(demo_ledger, DEMO_CYCLES[1], Policy(profile=profile))
    console = Console(width=200, record=True, color_system=None, file=io.StringIO())
    print_decision(decision, console)
    lines = [t for t in console.export_text().splitlines() if t.startswith("Quality (")]
    reasons = {
        f["reason"] for e in decision.agents.values() for f in e["factors"] if f["factor"] == "rule"
    }
    if profile is Profile.SELECT:
        assert len(reasons) == 1 and next(iter(reasons)).startswith("follows ")
        assert lines == [f"Quality (select profile): {next(iter(reasons))}."]
    else:
        assert not reasons and not lines
