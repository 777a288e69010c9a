"""The policy: every tunable of the allocator in one validated object.

Units: all PnL-like quantities are in basis points (bps) of notional; durations in hours;
weights are fractions of capital in ``[0, 1]``.

Sign conventions: ``gap = realized − expected`` (negative = under-delivered); CVaR and drawdown
are reported ``≤ 0`` (negative = bad).

The defaults reproduce the seed's constants (``MAX_WEIGHT``, ``MIN_CONF``, ``CVAR_PENALTY_K``,
``DD_PENALTY_K``, the sim-error scale 75 and the error-rate gate 0.15).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from meta_supervisor.errors import BadInput

__all__ = ["CapExcess", "Policy", "PolicyError", "Profile", "load_policy", "policy_fingerprint"]


class Profile(StrEnum):
    """Which allocation formula a cycle applies.

    ``select`` (the default): equal weight until another allocation rule has beaten it out of
    sample with a paired t above ``selection_t0``, then that rule; a broken agent cut to zero
    (:mod:`meta_supervisor.allocate.profiles.select`). Chosen by walk-forward evaluation on
    the real-price sub-periods (docs/BACKTEST.md, "Default").
    ``evidence``: tilt from equal weight only as far as the t-statistic of each agent's mean
    PnL is strong; drawdown and tail against the agent's own scale
    (:mod:`meta_supervisor.allocate.profiles.evidence`; the default before issue #14).
    ``seed``: the seed's steps made correct (DESIGN.md "Allocation").
    """

    SEED = "seed"
    EVIDENCE = "evidence"
    SELECT = "select"


class CapExcess(StrEnum):
    """Where the per-agent cap's excess goes.

    ``agents``: water-filling hands it to the uncapped agents in proportion to quality (cash
    only when every agent is capped; DESIGN.md "Allocation" step 5); ``cash``: it stays in cash.
    """

    AGENTS = "agents"
    CASH = "cash"


class PolicyError(BadInput):
    """A policy file or value is invalid. The message names the key at fault."""


class Policy(BaseModel):
    """All tunables, validated. Out-of-range values raise an error naming the field."""

    # strict: a policy file's ``true`` or ``"0.5"`` is not a number (``max_weight = true`` once
    # meant no cap); an integer is a float, a float is not an integer.
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False, strict=True)

    profile: Profile = Field(
        Profile.SELECT,
        strict=False,  # named by its value in a file ("seed")
        description="allocation formula: select (default, learned rule selection, chosen by "
        "walk-forward), evidence (t-statistic tilt) or seed",
    )

    # ---- windows ----
    horizon_hours: int = Field(24, ge=1, le=24 * 30, description="record horizon used (h)")
    lookback_hours: float = Field(
        168.0, gt=0, le=24 * 366, description="agent-stats window (as_of - lookback, as_of] (h)"
    )
    cvar_lookback_hours: float = Field(
        720.0, gt=0, le=24 * 366, description="strategy CVaR window (h), 30 days"
    )

    # ---- gates ----
    max_error_rate: float = Field(0.15, ge=0, le=1, description="gate: error rate above this")
    min_records: int = Field(
        5, ge=0, le=1_000_000, description="gate: fewer matured records than this"
    )
    cadence_history_hours: float = Field(
        672.0,
        ge=0,
        le=24 * 366,
        description="min_records judged against the agent's own cadence: its records over "
        "the last max(this, lookback) hours scaled to the window (meta_supervisor.signals."
        "cadence); 0: off (a holiday week then gates a daily fleet)",
    )
    cadence_min_share: float = Field(
        0.6,
        ge=0,
        le=1,
        description="cadence: an agent with at least this share of its expected records "
        "passes min_records (a holiday week holds 4 of 5 trading days)",
    )
    cadence_min_records: int = Field(
        3,
        ge=0,
        le=1_000_000,
        description="cadence: never relax min_records below this many records",
    )

    # ---- quality ----
    hit_rate_offset: float = Field(0.6, ge=0, le=10, description="q ∝ (offset + hit_rate)")
    sim_error_scale_bps: float = Field(
        75.0, gt=0, le=1e6, description="sim penalty 1/(1 + avg_abs_error/scale) (bps)"
    )

    # ---- confidence ----
    confidence_floor: float = Field(0.50, ge=0, le=1, description="lowest multiplier")
    confidence_ceiling: float = Field(1.00, ge=0, le=1, description="highest multiplier")
    confidence_prior: float = Field(
        1.00, ge=0, le=1, description="multiplier with no evidence (in (floor, ceiling])"
    )
    confidence_half_life_hours: float = Field(
        72.0, gt=0, le=24 * 366, description="evidence weight 0.5**(age/half_life) (h)"
    )
    confidence_prior_weight: float = Field(
        3.0, ge=0, le=1e6, description="pseudo-records of prior evidence"
    )
    confidence_tolerance: float = Field(
        0.8,
        gt=0,
        le=100,
        description="mean |gap|/scale at or below which confidence is the ceiling "
        "(0.8 ≈ E|N(0,1)|, a calibrated simulator)",
    )
    confidence_lookback_hours: float = Field(
        720.0, gt=0, le=24 * 366, description="confidence evidence window (h)"
    )

    # ---- risk multipliers ----
    cvar_k: float = Field(0.015, ge=0, le=10, description="cvar_mult = max(floor, 1 + k·cvar)")
    cvar_floor: float = Field(0.25, ge=0, le=1, description="lowest CVaR multiplier")
    cvar_min_samples: int = Field(
        20, ge=1, le=1_000_000, description="below this many gaps CVaR is shrunk to the prior"
    )
    cvar_prior_bps: float = Field(
        0.0, le=0, ge=-1e6, description="CVaR assumed with no evidence (bps, ≤ 0)"
    )
    drawdown_k: float = Field(0.01, ge=0, le=10, description="dd_mult = max(floor, 1 + k·dd)")
    drawdown_floor: float = Field(0.40, ge=0, le=1, description="lowest drawdown multiplier")

    # ---- portfolio ----
    max_weight: float = Field(0.25, gt=0, le=1, description="per-agent cap")
    cap_excess: CapExcess = Field(
        CapExcess.AGENTS,
        strict=False,  # named by its value in a file ("cash")
        description="where a capped agent's excess goes: agents (the uncapped, by quality) or cash",
    )
    gross_cap: float = Field(1.0, gt=0, le=1, description="cap on total deployed capital")
    max_increase_per_cycle: float = Field(
        0.05, gt=0, le=1, description="largest weight increase per cycle (fraction of capital)"
    )
    no_trade_band: float = Field(
        0.0025, ge=0, le=0.5, description="moves smaller than this keep the previous weight"
    )
    no_trade_band_relative: float = Field(
        0.25,
        ge=0,
        le=1,
        description="...and smaller than this share of the position (so an agent at 0 can enter)",
    )
    weight_decimals: int = Field(6, ge=2, le=12, description="weights rounded down to this")

    # ---- evidence profile (meta_supervisor.allocate.profiles.evidence) ----
    evidence_t0: float = Field(
        0.0, ge=0, le=100, description="evidence: |shrunk t| below this gives no tilt"
    )
    evidence_k: float = Field(
        1.5, ge=0, le=100, description="evidence: tilt exp(k·(|shrunk t| − t0)) beyond t0"
    )
    evidence_tilt_min: float = Field(0.25, gt=0, le=1, description="evidence: lowest tilt")
    evidence_tilt_max: float = Field(3.0, ge=1, le=100, description="evidence: highest tilt")
    evidence_learn_strength: bool = Field(
        True, description="evidence: shrink t by the fleet's signal share clip(1 − 1/var t)"
    )
    evidence_min_agents: int = Field(
        5, ge=2, le=100_000, description="evidence: fewer eligible agents than this: no tilt"
    )
    evidence_persistence_lags: int = Field(
        20,
        ge=0,
        le=1000,
        description="evidence: lags J over which past t is tested against the next period's "
        "PnL to learn the tilt strength (meta_supervisor.signals.persistence); 0: signal share "
        "clip(1 − 1/var t) instead",
    )
    evidence_persistence_step_hours: float = Field(
        24.0,
        gt=0,
        le=24 * 366,
        description="evidence: H, the period whose PnL past evidence must predict (h)",
    )
    evidence_persistence_z0: float = Field(
        2.0,
        ge=0,
        le=100,
        description="evidence: tilt strength max(0, 1 − (z0/z)²) of the mean rank correlation's z",
    )
    evidence_dd_z0: float = Field(
        1.5, ge=0, le=100, description="evidence: drawdown/(sigma·sqrt n) penalised beyond this"
    )
    evidence_dd_k: float = Field(0.5, ge=0, le=100, description="evidence: drawdown slope")
    evidence_dd_floor: float = Field(0.25, ge=0, le=1, description="evidence: drawdown floor")
    evidence_tail_r0: float = Field(
        4.0, ge=0, le=100, description="evidence: -CVaR95(gap)/mean |gap| penalised beyond this"
    )
    evidence_tail_k: float = Field(0.25, ge=0, le=100, description="evidence: tail slope")
    evidence_tail_floor: float = Field(0.25, ge=0, le=1, description="evidence: tail floor")
    evidence_risk_strength_ref: float = Field(
        0.1,
        gt=0,
        le=1,
        description="evidence: g = min(1, tilt strength / this) weighs the agent-specific "
        "drawdown and confidence factors (0 strength: fleet level only)",
    )
    evidence_dd_relative: bool = Field(
        True,
        description="evidence: drawdown g·own + (1 − g)·min(fleet mean, beyond-null); false: "
        "the agent's own drawdown factor alone",
    )
    evidence_dd_null_z: float = Field(
        2.7,
        ge=0,
        le=100,
        description="evidence: drawdown/(sigma·sqrt n) a zero-drift walk exceeds about 1% of "
        "the time; beyond it the agent is penalised on its own whatever g",
    )
    evidence_confidence_shrink: bool = Field(
        True, description="evidence: confidence c used as c + (1 − g)·(1 − c) (pulled to 1)"
    )

    # ---- select profile (meta_supervisor.allocate.profiles.select) ----
    selection_lags: int = Field(
        60,
        ge=0,
        le=10_000,
        description="select: past periods J over which each rule's next-period PnL is "
        "compared with equal weight's (meta_supervisor.signals.selection)",
    )
    selection_step_hours: float = Field(
        24.0, gt=0, le=24 * 366, description="select: H, the out-of-sample period (h)"
    )
    selection_t0: float = Field(
        2.0,
        ge=0,
        le=100,
        description="select: leave equal weight only for a rule whose paired t of "
        "risk-adjusted next-period PnL against it exceeds this",
    )
    broken_loss_scale: float = Field(
        2.5,
        gt=0,
        le=1000,
        description="select: cut an agent whose broken_consecutive consecutive losses each "
        "exceed this many of its own robust scales (meta_supervisor.signals.broken)",
    )
    broken_consecutive: int = Field(
        2, ge=0, le=1000, description="select: consecutive losses that make an agent broken"
    )
    broken_memory_records: int = Field(
        5,
        ge=0,
        le=100_000,
        description="select: a broken agent stays cut until this many records pass without "
        "a new run of such losses (0: no cut)",
    )
    broken_regime_relative: bool = Field(
        True,
        description="select: judge the run of losses in the fleet's volatility regime, "
        "z/V when V >= 1.5 (else z) with V the median over agents of their recent/earlier "
        "robust scale (false: against the agent's own earlier scale only; "
        "meta_supervisor.signals.broken)",
    )

    @model_validator(mode="after")
    def _check_order(self) -> Policy:
        if self.confidence_floor > self.confidence_ceiling:
            raise ValueError("confidence_floor must be <= confidence_ceiling")
        if not (self.confidence_floor < self.confidence_prior <= self.confidence_ceiling) and not (
            self.confidence_floor == self.confidence_ceiling == self.confidence_prior
        ):
            raise ValueError("confidence_prior must lie in (confidence_floor, confidence_ceiling]")
        if self.confidence_lookback_hours > 900 * self.confidence_half_life_hours:
            # evidence older than 900 half-lives weighs under 2^-900: nothing, and the
            # engine's exact confidence sums hold weights down to 2^-1000 only
            raise ValueError(
                "confidence_lookback_hours must be at most 900 x confidence_half_life_hours "
                "(older evidence weighs less than 2^-900)"
            )
        if self.profile is Profile.SELECT and self.cadence_history_hours <= 0:
            # The select profile's broken-agent cut reads each agent's recent losses against
            # its own history, which the cadence history provides: without it the cut would be
            # silently off while the fleet is blowing up.
            raise ValueError(
                "profile 'select' needs cadence_history_hours > 0 (its broken-agent cut reads "
                "that history)"
            )
        return self

    def fingerprint(self) -> str:
        """Return the SHA-256 of the canonical JSON of this policy (provenance)."""
        return policy_fingerprint(self)


def policy_fingerprint(policy: Policy) -> str:
    """SHA-256 hex digest of the canonical JSON form of ``policy``."""
    blob = json.dumps(policy.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _explain_validation(err: ValidationError, source: str) -> str:
    known = list(Policy.model_fields)
    parts = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(policy)"
        if item["type"] == "extra_forbidden":
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
            parts.append(f"{source}: unknown key '{key}'{suggestion}")
        else:
            parts.append(f"{source}: key '{key}': {item['msg']} (got {item.get('input')!r})")
    return "\n".join(parts)


def make_policy(values: dict[str, Any] | None = None, *, source: str = "policy") -> Policy:
    """Build a :class:`Policy` from a mapping; raise :class:`PolicyError` naming the bad key."""
    try:
        return Policy(**(values or {}))
    except ValidationError as err:
        raise PolicyError(_explain_validation(err, source)) from None


def load_policy(path: str | Path | None) -> Policy:
    """Load a policy from a TOML file (a top-level table ``[policy]`` or bare keys, not both).

    ``None`` returns the defaults. Types are strict: a number is a TOML number (an integer
    where the key is a count), a switch is ``true``/``false``. Errors name the file and the
    key: unknown keys (with a did-you-mean), keys beside a ``[policy]`` table, wrong types and
    out-of-range values.
    """
    if path is None:
        return Policy()
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError(f"{path}: policy file not found") from None
    except tomllib.TOMLDecodeError as err:
        raise PolicyError(f"{path}: not valid TOML: {err}") from None
    return make_policy(_policy_values(doc, path), source=str(path))


def _policy_values(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """The keys of a policy file: bare keys, or one ``[policy]`` table and nothing beside it
    (a key written outside the table would otherwise be silently ignored)."""
    if "policy" not in doc:
        return doc
    table = doc["policy"]
    if not isinstance(table, dict):
        raise PolicyError(f"{path}: key 'policy' must be a table ([policy]), got {table!r}")
    outside = sorted(k for k in doc if k != "policy")
    if outside:
        named = ", ".join(f"'{k}'" for k in outside)
        raise PolicyError(
            f"{path}: key(s) {named} outside the [policy] table; put every key inside it "
            "(or use bare keys and no table)"
        )
    return table
