"""The broken-agent cut judged in the fleet's volatility regime (signals/broken.py, issue #14).

``recent_loss_z = z_i / V`` when the fleet's ``V`` (median over agents of their recent/earlier
robust scale) is at least ``REGIME_MIN_RATIO``, else ``z_i``: a market-wide volatility rise
cuts nobody by itself, a single agent's blow-up is still cut at its second record."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import brute_earlier_scale
from meta_supervisor.cycle.run import decide
from meta_supervisor.policy.model import Policy, PolicyError, Profile, make_policy
from meta_supervisor.research.simulate import FleetSpec, simulate_fleet
from meta_supervisor.signals.broken import (
    MAD_TO_SIGMA,
    MIN_REGIME_AGENTS,
    MIN_SCALE_RECORDS,
    REGIME_MIN_RATIO,
    fleet_loss_runs,
    fleet_vol_ratio,
    judged_records,
    loss_run,
    loss_run_z,
    loss_runs,
    loss_runs_sorted,
    records_read,
)
from meta_supervisor.signals.cadence import CadenceIndex

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = Policy(profile=Profile.SELECT)
JUDGED = POLICY.broken_memory_records + POLICY.broken_consecutive - 1  # 6 records


def _index(series: dict[str, list[float]]) -> CadenceIndex:
    """One record a day per agent, the last maturing at ``T0``."""
    rows = [
        {
            "agent": a,
            "matured_at": T0 - timedelta(days=len(x) - 1 - j),
            "ts": T0 - timedelta(days=len(x) - j),
            "horizon_hours": 24,
            "realized_pnl_bps": v,
        }
        for a, x in series.items()
        for j, v in enumerate(x)
    ]
    frame = pl.DataFrame(
        rows,
        schema={
            "agent": pl.String,
            "matured_at": pl.Datetime("us", "UTC"),
            "ts": pl.Datetime("us", "UTC"),
            "horizon_hours": pl.Int64,
            "realized_pnl_bps": pl.Float64,
        },
    )
    return CadenceIndex.from_records(frame, 24)


def _regime(series: dict[str, list[float]], policy: Policy = POLICY) -> tuple[np.ndarray, float]:
    names = sorted(series)
    return _index(series).loss_regime(names, T0, policy)


def _brute_ratio(x: list[float]) -> float:
    """``v_i`` by hand: robust scale of the judged records around the earlier median, over the
    earlier robust scale (NaN where that scale is unknown)."""
    cut = len(x) - JUDGED
    med, scale = brute_earlier_scale(x, cut)
    if math.isnan(scale):
        return math.nan
    return MAD_TO_SIGMA * float(np.median([abs(v - med) for v in x[cut:]])) / scale


def _brute_v(series: dict[str, list[float]]) -> float:
    ratios = sorted(r for r in map(_brute_ratio, series.values()) if math.isfinite(r))
    if len(ratios) < MIN_REGIME_AGENTS:
        return math.nan
    mid = len(ratios) // 2
    return ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2


# A daily agent's 4-week history: 20 records (the cadence history is 672 h).
histories = st.lists(st.integers(-300, 300).map(float), min_size=4, max_size=26)
fleets = st.dictionaries(
    st.sampled_from([f"a{k:02d}" for k in range(12)]), histories, min_size=0, max_size=12
)


@settings(max_examples=80, deadline=None)
@given(fleets)
def test_fleet_v_and_the_judged_z_equal_a_computation_by_hand(series):
    z, fleet_v = _regime(series)
    want_v = _brute_v(series)
    np.testing.assert_allclose(fleet_v, want_v, rtol=1e-12, equal_nan=True)
    divisor = want_v if want_v >= REGIME_MIN_RATIO else 1.0
    want_z = [loss_run_z(np.array(series[a]), POLICY) / divisor for a in sorted(series)]
    np.testing.assert_allclose(z, want_z, rtol=1e-12, equal_nan=True)
    ratios = np.array([_brute_ratio(series[a]) for a in sorted(series)])
    np.testing.assert_allclose(fleet_vol_ratio(ratios), want_v, rtol=1e-12, equal_nan=True)


def _calm(earlier: list[float], inner: list[float]) -> list[float]:
    """``earlier`` followed by judged records inside its inner half: ``|y − median| ≤ MAD``
    for each (so the agent's ``v_i ≤ 1``)."""
    med = float(np.median(earlier))
    mad = float(np.median(np.abs(np.array(earlier) - med)))
    return [*earlier, *(med + u * mad for u in inner)]


earliers = st.lists(st.integers(-300, 300).map(float), min_size=MIN_SCALE_RECORDS, max_size=20)
inners = st.lists(st.floats(-1, 1), min_size=JUDGED, max_size=JUDGED)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(earliers, inners), min_size=MIN_REGIME_AGENTS, max_size=12))
def test_a_calm_fleet_is_judged_as_before(agents):
    """Every agent's recent records within its own earlier spread: ``V ≤ 1``, nothing is
    divided, and ``recent_loss_z`` is the absolute run the cut read before."""
    series = {f"a{k:02d}": _calm(e, u) for k, (e, u) in enumerate(agents)}
    z, fleet_v = _regime(series)
    assert math.isnan(fleet_v) or fleet_v <= 1.0 + 1e-12
    absolute, _ = _regime(series, POLICY.model_copy(update={"broken_regime_relative": False}))
    np.testing.assert_array_equal(z, absolute)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(earliers, inners), min_size=MIN_REGIME_AGENTS, max_size=12),
    st.data(),
)
def test_a_blow_up_is_cut_at_its_second_record_while_at_most_half_the_fleet_blows_up(agents, data):
    """Up to half the fleet blows up (two records each beyond ``broken_loss_scale`` own
    scales down, after four calm ones): every one of them is cut at its second record."""
    n = len(agents)
    blown = data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n // 2))
    # beyond the limit (at exactly 2.5 scales, -x/scale may round to 2.4999999999999996)
    sizes = data.draw(st.lists(st.floats(1.001, 20.0), min_size=2, max_size=2))
    series = {}
    for k, (earlier, inner) in enumerate(agents):
        x = _calm(earlier, inner)
        if k in blown:
            past = np.array(earlier)
            scale = MAD_TO_SIGMA * float(np.median(np.abs(past - np.median(past))))
            if not scale > 0:
                continue  # no scale to judge a blow-up by: not this property's case
            x[-2:] = [-POLICY.broken_loss_scale * s * scale for s in sizes]
        series[f"a{k:02d}"] = x
    z, _ = _regime(series)
    names = sorted(series)
    for k in blown:
        name = f"a{k:02d}"
        if name in series:
            assert z[names.index(name)] >= POLICY.broken_loss_scale


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(-300, 300).map(float), min_size=11, max_size=21),
            st.lists(st.integers(-300, 300).map(float), min_size=JUDGED, max_size=JUDGED),
        ),
        min_size=MIN_REGIME_AGENTS,
        max_size=12,
    ),
    st.floats(2.0, 50.0),
)
def test_a_fleet_wide_volatility_rise_changes_no_verdict(agents, m):
    """Every agent's recent records scaled up by ``m`` (a market-wide volatility rise, each
    agent's earlier median 0): once the fleet's ``V`` reads the regime, every agent's judged
    ``z`` is what it was at twice the calm volatility, so whoever was spared is spared; the
    absolute cut, as it was, cuts every agent with a loss run once ``m`` is large enough."""

    def centred(x: list[float]) -> list[float]:
        if len(x) % 2 == 0:
            x = x[1:]
        med = float(np.median(x))
        return [v - med for v in x]

    base = {f"a{k:02d}": [*centred(e), *y] for k, (e, y) in enumerate(agents)}

    def scaled(f: float) -> dict[str, list[float]]:
        return {a: [*x[:-JUDGED], *(f * v for v in x[-JUDGED:])] for a, x in base.items()}

    z2, v2 = _regime(scaled(2.0))
    zm, vm = _regime(scaled(2.0 * m))
    if math.isnan(v2) or v2 < REGIME_MIN_RATIO:
        return  # the fleet's regime not read at 2x (too few scales, or no spread)
    np.testing.assert_allclose(vm, m * v2, rtol=1e-9)
    np.testing.assert_allclose(zm, z2, rtol=1e-9, atol=1e-12)
    old = POLICY.model_copy(update={"broken_regime_relative": False})
    huge, _ = _regime(scaled(1e6), old)
    positive = np.nan_to_num(z2) > 0
    assert np.all(huge[positive] >= POLICY.broken_loss_scale)


def test_one_agents_series_gives_its_z_and_its_ratio():
    rng = np.random.default_rng(1)
    calm = list(50 * rng.standard_normal(40))
    z, ratio = loss_run(np.array([*calm, *(2 * v for v in calm[-JUDGED:])]), POLICY)
    assert z == loss_run_z(np.array([*calm, *(2 * v for v in calm[-JUDGED:])]), POLICY)
    assert ratio == _brute_ratio([*calm, *(2 * v for v in calm[-JUDGED:])])
    assert math.isnan(fleet_vol_ratio(np.array([1.0, 2.0, np.nan, np.inf])))


def _crash_fleet(seed: int = 3):
    """20 daily agents for 40 days; then the market's volatility triples and every agent's
    last six records move three of its own scales, the last two down (late 2008)."""
    spec = FleetSpec(n_agents=20, days=40, interval_hours=(24, 24), horizons=(24,))
    fleet = simulate_fleet(spec, seed)
    records = fleet.ledger.records.sort("agent", "matured_at")
    as_of = records["matured_at"].max()
    pnl = records["realized_pnl_bps"].to_numpy().copy()
    agents = records["agent"].to_numpy()
    shape = np.array([3.0, -3.0, 3.1, -2.9, -3.2, -3.4])
    for name in np.unique(agents):
        rows = np.flatnonzero(agents == name)
        past = pnl[rows[:-JUDGED]]
        scale = MAD_TO_SIGMA * float(np.median(np.abs(past - np.median(past))))
        pnl[rows[-JUDGED:]] = shape * scale
    fleet.ledger.records = records.with_columns(pl.Series("realized_pnl_bps", pnl))
    return fleet, as_of


def test_a_market_wide_volatility_spike_does_not_cut_the_whole_fleet():
    """Regression (issue #14, late 2008 on real prices): when every agent's volatility
    triples at once, two consecutive losses beyond 2.5 of the calm weeks' scale are routine
    for all of them, and the cut took the whole fleet to cash at the lows. Judged in the
    fleet's regime (V ≈ 3) nobody is cut; the absolute cut, kept as an option, cuts all."""
    fleet, as_of = _crash_fleet()
    decision = decide(fleet.ledger, as_of, POLICY)
    broken = [
        a
        for a, e in decision.agents.items()
        if next(f for f in e["factors"] if f["factor"] == "broken")["value"] == 0.0
    ]
    assert broken == []
    assert decision.cash < 0.05
    one = next(iter(decision.agents.values()))
    assert one["inputs"]["fleet_vol_ratio"] > 2.5
    reason = next(f for f in one["factors"] if f["factor"] == "broken")["reason"]
    assert "fleet's volatility ratio V" in reason
    absolute = Policy(profile=Profile.SELECT, broken_regime_relative=False)
    old = decide(fleet.ledger, as_of, absolute)
    assert all(e["weight"] == 0.0 for e in old.agents.values())
    assert old.cash == 1.0


def test_the_knob_is_a_validated_boolean():
    assert Policy().broken_regime_relative is True
    assert make_policy({"broken_regime_relative": False}).broken_regime_relative is False
    try:
        make_policy({"broken_regime_relative": "no"})
    except PolicyError as err:
        assert "broken_regime_relative" in str(err)
    else:
        raise AssertionError("a string was accepted as a boolean")


@given(
    seed=st.integers(0, 2**32 - 1),
    past=st.integers(MIN_SCALE_RECORDS - 1, 60),
    memory=st.integers(1, 6),
    run=st.integers(1, 3),
    rows=st.integers(1, 5),
    spread=st.sampled_from([0.0, 0.1, 10.0, 1e300]),
)
@settings(max_examples=120, deadline=None)
def test_sorted_earlier_records_give_the_ordered_rows_bits(seed, past, memory, run, rows, spread):
    """loss_runs_sorted (the engine's full rings, earlier records kept sorted) against
    loss_runs on the same records in order: any past count (odd, even, too few), ties, zeros,
    −0.0, a row of one value (a zero scale), values near the float limit (inf distances)."""
    policy = Policy(profile=Profile.SELECT, broken_memory_records=memory, broken_consecutive=run)
    judged = memory + run - 1
    rng = np.random.default_rng(seed)
    ordered = np.round(rng.standard_t(4, (rows, past + judged)) * 10, 1) * max(spread, 1.0)
    if spread == 0.0:
        ordered[0, :past] = 3.0
    ordered[rng.random(ordered.shape) < 0.2] = 0.0
    ordered[rng.random(ordered.shape) < 0.1] = -0.0
    want = loss_runs(ordered, policy)
    got = loss_runs_sorted(np.sort(ordered[:, :past], axis=1), ordered[:, past:].copy(), policy)
    assert [a.tobytes() for a in got] == [a.tobytes() for a in want]


def test_distances_beyond_the_float_limit_are_inf_quietly_and_alike():
    """Earlier records at ±1e308: their distances to the centre overflow to inf. Both paths
    (ordered rows by partition, sorted rows by bisection) say so without a RuntimeWarning
    (regression: the ordered path warned) and give the same bits."""
    import warnings

    policy = Policy(broken_memory_records=1, broken_consecutive=1)
    rows = np.array(
        [
            [-1e308] * 6 + [1e308] * 7 + [5.0],
            [-1e308] * 7 + [1e308] * 6 + [-5.0],
            [-1.7e308] * 4 + [0.0] * 5 + [1.7e308] * 4 + [5.0],  # 1.4826 · MAD overflows
        ]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want = loss_runs(rows, policy)
        got = loss_runs_sorted(np.sort(rows[:, :-1], axis=1), rows[:, -1:], policy)
        fleet = fleet_loss_runs(np.full(3, rows.shape[1]), lambda agents, n: rows[agents], policy)
    assert [a.tobytes() for a in got] == [a.tobytes() for a in want]
    assert [a.tobytes() for a in fleet] == [a.tobytes() for a in want]
    assert want[0][2] == 0.0  # an infinite scale: a loss of 5 is none


def test_the_scale_is_the_median_distance_whichever_side_it_falls():
    """The distances' middle taken from the right of the centre only, the left only, and
    both (regression guard for the merge of the two runs: an off-by-one there picks a
    neighbour's distance), against np.median of the distances."""
    policy = Policy(broken_memory_records=1, broken_consecutive=1)
    rows = [
        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 50.0, 60.0],  # left of the centre
        [-60.0, -50.0, -4.0, -3.0, -2.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # right of it
        [-9.0, -7.0, -5.0, -3.0, -1.0, 0.0, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0],  # interleaved
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 7.0],  # a zero scale
    ]
    block = np.array(rows)
    recent = np.full((len(rows), 1), -5.0)
    z, v = loss_runs_sorted(block, recent, policy)
    for i, row in enumerate(block):
        centre = np.median(row)
        scale = MAD_TO_SIGMA * np.median(np.abs(row - centre))
        if scale > 0:
            assert z[i] == 5.0 / scale
            assert v[i] == MAD_TO_SIGMA * abs(-5.0 - centre) / scale
        else:
            assert math.isnan(z[i])


def test_a_fleet_large_enough_for_threads_has_each_rows_own_medians(monkeypatch):
    """Blocks of threads.MIN_SIZE values or more are partitioned (ordered rows) or sorted (a
    ring's earlier records, any order) by rows in threads: each row's ``(z, v)`` must still be
    the one of its row alone (``loss_runs`` on the ordered row, by ``np.median``), ties and an
    odd row count included; in a forked child too (a pool made before a fork has no threads
    there)."""
    import os
    import signal

    from meta_supervisor.signals import threads
    from meta_supervisor.signals.sortedrows import sort_rows
    from meta_supervisor.signals.threads import MIN_SIZE

    monkeypatch.setattr(threads, "cores", lambda: 2)  # two parts on any machine
    policy = Policy(broken_memory_records=4, broken_consecutive=2)
    judged = judged_records(policy)
    past = 1024
    rows = MIN_SIZE // past + 3  # odd, and over the threshold
    rng = np.random.default_rng(5)
    ordered = np.round(rng.standard_t(4, (rows, past + judged)) * 10, 1)
    expected = [loss_runs(row[None, :], policy) for row in ordered]

    def threaded_runs() -> list[tuple[np.ndarray, np.ndarray]]:
        block = np.full((rows, past + 3), np.inf)
        for i in range(rows):
            block[i, rng.permutation(past + 3)[:past]] = ordered[i, :past]
        assert block.size >= MIN_SIZE
        sort_rows(block)
        return [
            loss_runs_sorted(block[:, :past], ordered[:, past:].copy(), policy),
            loss_runs(ordered, policy),
        ]

    for z, v in threaded_runs():
        assert z.tobytes() == np.concatenate([e[0] for e in expected]).tobytes()
        assert v.tobytes() == np.concatenate([e[1] for e in expected]).tobytes()
    child = os.fork()
    if child == 0:  # the pool above was made in the parent: the child must not wait on it
        signal.alarm(60)  # a hung child dies (and fails the test) instead of hanging it
        got = threaded_runs()
        os._exit(0 if all(z_child.tobytes() == z.tobytes() for z_child, _ in got) else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    past=st.integers(MIN_SCALE_RECORDS, 60),
    rows=st.integers(1, 4),
    odd=st.sampled_from([None, math.inf, -math.inf, math.nan]),
)
def test_ordered_rows_have_np_medians_own_centre_and_scale(seed, past, rows, odd):
    """``loss_runs`` on ordered rows takes each row's centre and robust scale by one partition
    (no NaN in the block) or by ``np.median`` (a NaN): either way, the bits of ``np.median``
    of each row alone, ties, ±0.0, infinities and NaN included (the judged records then
    give z and v as before)."""
    policy = Policy(broken_memory_records=3, broken_consecutive=2)
    judged = judged_records(policy)
    rng = np.random.default_rng(seed)
    block = np.round(rng.standard_t(4, (rows, past + judged)) * 10, 1)
    block[0, 0] = -0.0
    if odd is not None:
        block[rows - 1, rng.integers(0, past)] = odd
    z, v = loss_runs(block, policy)
    for i in range(rows):
        earlier = block[i, :past]
        centre = np.median(earlier)
        scale = MAD_TO_SIGMA * np.median(np.abs(earlier - centre))
        if not scale > 0:
            assert math.isnan(z[i]) and math.isnan(v[i])
            continue
        recent = block[i, past:]
        losses = -recent / scale
        want_z = max(min(losses[k : k + 2]) for k in range(judged - 1))
        want_v = MAD_TO_SIGMA * np.median(np.abs(recent - centre)) / scale
        assert np.array([z[i], v[i]]).tobytes() == np.array([want_z, want_v]).tobytes()


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    lengths=st.lists(st.integers(0, 1_100), min_size=1, max_size=7),
    odd=st.sampled_from([None, math.inf, -math.inf, math.nan, 1e308]),
    rings=st.booleans(),
)
def test_a_fleet_of_series_of_any_lengths_has_each_agents_own_run(seed, lengths, odd, rings):
    """``fleet_loss_runs`` computes series of every length at once (each row laid out so its
    medians fall in one column of one partition): each agent's ``(z, v)`` must be
    ``loss_run`` of its own series alone (``np.median`` of one row), bit for bit, whatever the
    other agents' lengths, with garbage before a series' first record, ties, -0.0, infinities,
    NaN and huge values, and with full series read as rings in any order."""
    policy = Policy(broken_memory_records=4, broken_consecutive=2)
    keep = records_read(policy)
    rng = np.random.default_rng(seed)
    series = [np.round(rng.standard_t(4, n) * 10, 1) for n in lengths]
    if series[0].size:
        series[0][0] = -0.0
    if odd is not None and series[-1].size:
        series[-1][rng.integers(0, series[-1].size)] = odd
    garbage = np.array([np.nan, np.inf, -5.0])

    def rows_of(agents: np.ndarray, n: int) -> np.ndarray:
        out = np.empty((agents.size, n))
        for row, a in enumerate(agents):
            tail = series[a][-n:]
            out[row] = np.concatenate([np.resize(garbage, n - tail.size), tail])
        return out

    def sorted_of(agents: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        block = np.stack([series[a][-keep:] for a in agents])
        judged = judged_records(policy)
        clean = np.isfinite(block).all(axis=1)
        return np.sort(block[:, : keep - judged], axis=1), block[:, keep - judged :], clean

    z, v = fleet_loss_runs(np.array(lengths), rows_of, policy, sorted_of if rings else None)
    for a, x in enumerate(series):
        want = loss_run(x, policy)
        assert np.array([z[a], v[a]]).tobytes() == np.array(want).tobytes(), (a, x.size)


def test_an_agents_run_does_not_depend_on_a_neighbours_nan():
    """Two agents of one length, one with +inf and 1e308 among its earlier records (its
    centre overflows to inf, its spread holds inf − inf), the other with a NaN: each gets the
    run of its own series alone, as ``np.median`` gives it (regression: the neighbour's NaN
    sent both rows down ``np.median``'s path while the agent alone took the partition's,
    and the two disagreed on the NaN in the spread)."""
    policy = Policy(broken_memory_records=3, broken_consecutive=2)
    a = np.array([1e308] * 9 + [np.inf] + [1.0, -2.0, -3.0, 4.0])
    b = np.array([np.nan] + [1.0] * 13)
    series = [a, b]
    z, v = fleet_loss_runs(
        np.array([14, 14]), lambda agents, n: np.stack([series[i][-n:] for i in agents]), policy
    )
    with np.errstate(all="ignore"):
        centre = np.median(a[:10])
        scale = MAD_TO_SIGMA * np.median(np.abs(a[:10] - centre))
    assert math.isnan(scale)  # np.median's: a NaN in the spread
    for k, x in enumerate(series):
        assert np.array([z[k], v[k]]).tobytes() == np.array(loss_run(x, policy)).tobytes()
    assert math.isnan(z[0]) and math.isnan(v[0])


def test_a_fleet_is_laid_out_in_bands_of_at_most_twice_its_records(monkeypatch):
    """Series are computed in bands of lengths within a factor of two, so the padded blocks
    hold at most about twice the fleet's records (regression: one block at the longest
    series' length held 20,000 daily agents' 25 records as 1,000 each, 0.8 GB), with each
    agent's run its own."""
    from meta_supervisor.signals import broken

    policy = Policy(broken_memory_records=4, broken_consecutive=2)
    rng = np.random.default_rng(0)
    lengths = np.concatenate([np.full(300, 25), [1_000], rng.integers(10, 1_200, 60)])
    flat = rng.standard_normal((lengths.size, 1_200))
    laid: list[int] = []
    real = broken._padded_runs

    def spy(rows, past, policy):
        laid.append(rows.size)
        return real(rows, past, policy)

    monkeypatch.setattr(broken, "_padded_runs", spy)
    z, v = fleet_loss_runs(lengths, lambda agents, n: flat[agents, -n:], policy)
    kept = np.minimum(lengths, records_read(policy))
    counted = kept[kept >= judged_records(policy) + MIN_SCALE_RECORDS]
    assert sum(laid) <= 2 * counted.sum()
    for k in range(0, lengths.size, 7):
        want = loss_run(flat[k, -kept[k] :], policy)
        assert np.array([z[k], v[k]]).tobytes() == np.array(want).tobytes()


def test_hostile_values_raise_no_floating_point_warnings():
    """Infinities, NaN, 1e308 and subnormals in the rings and the ordered rows give NaN and inf
    as IEEE says, without a RuntimeWarning (a caller that turns warnings into errors)."""
    import warnings

    policy = Policy(broken_memory_records=4, broken_consecutive=2)
    keep = records_read(policy)
    judged = judged_records(policy)
    values = [1e308, -1e308, np.inf, -np.inf, np.nan, 5e-324, 0.0, -0.0, 1.0]
    rng = np.random.default_rng(9)
    series = [rng.choice(values, n) for n in (keep, keep, 40, 300, 17)]
    series.append(np.full(keep, 1e308))

    def rows_of(agents, n):
        return np.stack([series[a][-n:] for a in agents])

    def sorted_of(agents):
        block = np.stack([series[a][-keep:] for a in agents])
        clean = np.isfinite(block).all(axis=1)
        return np.sort(block[:, : keep - judged], axis=1), block[:, keep - judged :], clean

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fleet_loss_runs(np.array([s.size for s in series]), rows_of, policy, sorted_of)
        fleet_loss_runs(np.array([s.size for s in series]), rows_of, policy)
