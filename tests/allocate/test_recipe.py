"""A decision kept as its inputs (issue #17): explanations built on demand, bit for bit.

The cycle writes the arguments of ``allocate_frames`` (allocate/recipe.py) instead of 2 MB of
explanations; a reader decides again from them. Checked here: any frame survives the file to
the bit, equal frames give equal bytes however polars laid them out, a cycle's decision reads
back exactly as decided under every profile, and inputs that give another decision, or are
not inputs at all, are refused by name."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import assert_same_bits
from meta_supervisor.allocate.core import allocate_frames, replay
from meta_supervisor.allocate.decision import canonical_json
from meta_supervisor.allocate.recipe import Recipe, RecipeError
from meta_supervisor.cycle.run import cycle_frames
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.simulate import FleetSpec, simulate_fleet
from meta_supervisor.state import explanations
from meta_supervisor.state.explanations import ExplanationsError
from meta_supervisor.state.files import append_history, history_tail, read_history, verify_history

T0 = datetime(2026, 1, 1, tzinfo=UTC)

floats = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, -1.7976931348623157e308]),
)
columns = {
    "f64": (st.lists(floats, min_size=3, max_size=3), pl.Float64),
    "f32": (
        st.lists(st.one_of(st.none(), st.floats(width=32)), min_size=3, max_size=3),
        pl.Float32,
    ),
    "i64": (
        st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=3, max_size=3),
        pl.Int64,
    ),
    "u32": (
        st.lists(st.one_of(st.none(), st.integers(0, 2**32 - 1)), min_size=3, max_size=3),
        pl.UInt32,
    ),
    "bool": (st.lists(st.one_of(st.none(), st.booleans()), min_size=3, max_size=3), pl.Boolean),
    "text": (
        st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=3, max_size=3),
        pl.String,
    ),
    "when": (
        st.lists(st.one_of(st.none(), st.integers(-(2**50), 2**50)), min_size=3, max_size=3).map(
            lambda v: pl.Series(v, dtype=pl.Int64).cast(pl.Datetime("us", "UTC"))
        ),
        None,
    ),
    "local": (
        st.lists(st.one_of(st.none(), st.integers(0, 2**40)), min_size=3, max_size=3).map(
            lambda v: pl.Series(v, dtype=pl.Int64).cast(pl.Datetime("ns", "Asia/Kolkata"))
        ),
        None,
    ),
    "day": (
        st.lists(st.one_of(st.none(), st.dates(date(1900, 1, 1))), min_size=3, max_size=3),
        pl.Date,
    ),
    "span": (
        st.lists(st.one_of(st.none(), st.integers(-(2**40), 2**40)), min_size=3, max_size=3).map(
            lambda v: pl.Series(v, dtype=pl.Int64).cast(pl.Duration("ms"))
        ),
        None,
    ),
}


@st.composite
def frames(draw: st.DrawFn) -> pl.DataFrame:
    names = draw(st.lists(st.sampled_from(sorted(columns)), min_size=1, max_size=6, unique=True))
    out = []
    for name in names:
        values, dtype = columns[name]
        drawn = draw(values)
        series = drawn if isinstance(drawn, pl.Series) else pl.Series(drawn, dtype=dtype)
        out.append(series.alias(name))
    return pl.DataFrame(out)


def _recipe(stats: pl.DataFrame, tails: pl.DataFrame | None = None) -> Recipe:
    return Recipe(stats, None, tails, T0, Policy(), {"a": 0.25}, (), None, None)


@given(frames(), frames())
@settings(max_examples=60)
def test_any_frame_survives_the_file_to_the_bit(stats, tails):
    """Values (NaN, −0.0, ±inf, extremes), nulls, types and time zones come back as they
    were (a NaN as one NaN), and the bytes written again are the same."""
    data = _recipe(stats, tails).to_bytes()
    back = Recipe.from_bytes(data)
    assert back.stats.schema == stats.schema and back.tails.schema == tails.schema
    assert_same_bits((back.stats, back.tails), (stats, tails), canonical_nan=True)
    assert back.confidence is None and back.previous == {"a": 0.25}
    assert back.to_bytes() == data


def test_equal_frames_give_equal_bytes_however_laid_out():
    """A frame in two chunks, or whose column keeps an all-valid null mask, is written as the
    frame in one piece (an Arrow IPC stream writes each chunk and each mask as they are: one
    cycle's inputs file would differ between a warm and a rebuilt engine)."""
    whole = pl.DataFrame({"agent": ["a", "b", "c", "d"], "x": [1.0, 2.0, 3.0, 4.0]})
    chunked = pl.concat([whole.slice(0, 2), whole.slice(2, 2)], rechunk=False)
    masked = whole.with_columns(pl.Series("x", [1.0, None, 3.0, 4.0]).fill_null(2.0))
    assert chunked.n_chunks() == 2
    datas = {_recipe(frame).to_bytes() for frame in (whole, chunked, masked)}
    assert len(datas) == 1


def test_a_nans_sign_does_not_change_the_bytes():
    """0/0 and -(0/0) are both NaN (an undefined ratio on a warm engine and on a rebuilt one
    may carry either sign): the inputs file, and so the history's bytes, are the same."""
    signs = (np.array([np.nan, 1.0]), np.array([-np.nan, 1.0]))
    frames = [pl.DataFrame({"agent": ["a", "b"], "x": pl.Series(v)}) for v in signs]
    assert np.signbit(frames[1]["x"].to_numpy()[0])
    assert _recipe(frames[0]).to_bytes() == _recipe(frames[1]).to_bytes()


SPEC = FleetSpec(n_agents=12, days=20, interval_hours=(6, 24), horizons=(24,))


@given(
    seed=st.integers(0, 50),
    profile=st.sampled_from(list(Profile)),
    days_back=st.integers(0, 3),
)
@settings(max_examples=15, deadline=None)
def test_a_cycles_decision_is_kept_as_its_inputs_and_reads_back_as_decided(
    seed, profile, days_back, tmp_path_factory
):
    """Under every profile the history holds no explanation, the entry names an ``.inputs``
    file, and what a reader gets is the decision's JSON form, byte for byte."""
    fleet = simulate_fleet(SPEC, seed)
    as_of = fleet.ledger.records["matured_at"].max() - timedelta(days=days_back)
    policy = Policy(profile=profile)
    stats, conf, tails = cycle_frames(fleet.ledger, as_of, policy)
    first = allocate_frames(stats, conf, tails, as_of=as_of, policy=policy)
    decision = allocate_frames(
        stats, conf, tails, as_of=as_of, policy=policy, previous=first.weights, previous_hash="0"
    )
    assert decision.recipe is not None
    path = tmp_path_factory.mktemp("state") / "history.jsonl"
    append_history(path, decision)
    (entry,) = history_tail(path)
    assert entry.record["explanations"]["file"] == "explanations/00000001.inputs"
    assert "agents" not in entry.record
    assert canonical_json(entry.decision) == canonical_json(decision.to_dict())
    assert verify_history(path)[0]


def _two_entries(tmp_path: Path) -> list[dict]:
    fleet = simulate_fleet(SPEC, 3)
    as_of = fleet.ledger.records["matured_at"].max()
    stats, conf, tails = cycle_frames(fleet.ledger, as_of, Policy())
    path = tmp_path / "history.jsonl"
    first = allocate_frames(stats, conf, tails, as_of=as_of)
    append_history(path, first)
    second = allocate_frames(stats, conf, tails, as_of=as_of, previous={"x": 1.0})
    append_history(path, second)
    return [e.record for e in read_history(path)]


def _pointing_at(record: dict, state: Path, name: str) -> dict:
    """``record`` naming the file ``name`` with its true SHA-256 (a history re-hashed by hand)."""
    data = (state / name).read_bytes()
    ref = {**record["explanations"], "file": name, "sha256": hashlib.sha256(data).hexdigest()}
    return {**record, "explanations": ref}


def test_inputs_that_give_another_decision_do_not_explain_it(tmp_path):
    """Another entry's inputs under this entry's record, hashes made to match: the decision
    taken again differs (other previous weights), so no reader is shown its explanations."""
    first, second = _two_entries(tmp_path)
    swapped = _pointing_at(first, tmp_path, second["explanations"]["file"])
    with pytest.raises(ExplanationsError, match=r"do not give the decision of .*provenance"):
        explanations.resolve(tmp_path, swapped)
    assert explanations.problem(tmp_path, swapped) is not None
    assert explanations.resolve(tmp_path, first)["weights"] == first["weights"]


@pytest.mark.parametrize(
    "data",
    [b"", b"PK\x05\x06" + b"\x00" * 18, b"not a zip", b"{}"],
    ids=["empty", "empty zip", "text", "json"],
)
def test_bytes_that_are_not_inputs_are_refused_by_name(tmp_path, data):
    first, _ = _two_entries(tmp_path)
    (tmp_path / "explanations" / "00000009.inputs").write_bytes(data)
    record = _pointing_at(first, tmp_path, "explanations/00000009.inputs")
    with pytest.raises(ExplanationsError, match=r"00000009\.inputs: not a decision's inputs"):
        explanations.resolve(tmp_path, record)
    with pytest.raises(RecipeError):
        Recipe.from_bytes(data)


def test_a_decision_with_a_column_a_recipe_cannot_hold_keeps_its_explanations(tmp_path):
    """A stats frame with a list column (allocate_frames takes any extra column) cannot be kept
    as inputs: the decision is written with its explanations, as before."""
    fleet = simulate_fleet(SPEC, 1)
    as_of = fleet.ledger.records["matured_at"].max()
    stats, conf, tails = cycle_frames(fleet.ledger, as_of, Policy())
    stats = stats.with_columns(pl.lit([1, 2]).alias("tags"))
    decision = allocate_frames(stats, conf, tails, as_of=as_of)
    assert decision.recipe is None
    path = tmp_path / "history.jsonl"
    append_history(path, decision)
    (entry,) = history_tail(path)
    assert entry.record["explanations"]["file"] == "explanations/00000001.json"
    assert canonical_json(entry.decision) == canonical_json(decision.to_dict())


def test_replay_decides_the_same_weights_and_explanations():
    fleet = simulate_fleet(SPEC, 5)
    as_of = fleet.ledger.records["matured_at"].max()
    stats, conf, tails = cycle_frames(fleet.ledger, as_of, Policy())
    decision = allocate_frames(stats, conf, tails, as_of=as_of, previous={"agent-0": 0.1})
    again = replay(Recipe.from_bytes(decision.recipe.to_bytes()))
    assert again.to_json() == decision.to_json()
    assert np.isfinite(list(again.weights.values())).all()
