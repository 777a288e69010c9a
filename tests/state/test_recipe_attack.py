"""Attacks on a decision kept as its inputs (issue #17: ``explanations/<seq>.inputs``).

A cycle writes the arguments of ``allocate_frames`` (allocate/recipe.py) and every reader
decides again from them, holds the result against the history record and builds the
explanations then (state/explanations.py). Attacked here:

1. a reader gets exactly the explanations the decision had (every profile; overrides,
   previous weights, a learned strength with NaN fields, hostile agent names, empty and
   all-gated fleets, frames with nulls, NaN, -0.0 and inf);
2. equal frames give equal bytes however polars laid them out;
3. and 4. a file that is missing, edited, truncated, swapped, or replaced by a hostile zip with
   the history re-hashed by hand is refused with an error naming the file (never a crash, a
   huge allocation or a wrong explanation), and ``verify`` says so;
5. a file left by a cycle killed before its history line is replaced by the next cycle;
6. frames with a column a recipe cannot keep fall back to the explanations JSON file.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from faultkit import make_inputs
from meta_supervisor.allocate.core import allocate_frames
from meta_supervisor.allocate.decision import canonical_json, iso
from meta_supervisor.allocate.inputs import Override
from meta_supervisor.allocate.recipe import Recipe, RecipeError
from meta_supervisor.cycle.engine import meta_path
from meta_supervisor.cycle.run import cycle_frames, run_cycle
from meta_supervisor.ingest.batch import ingest
from meta_supervisor.policy.model import Policy, Profile
from meta_supervisor.research.demo import DEMO_AS_OF
from meta_supervisor.research.simulate import FleetSpec, simulate_fleet
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.signals.selection import RuleSelection
from meta_supervisor.state import explanations
from meta_supervisor.state.explanations import ExplanationsError
from meta_supervisor.state.files import (
    GENESIS,
    append_history,
    entry_hash,
    read_history,
    verify_history,
)

SPEC = FleetSpec(n_agents=6, days=12, interval_hours=(6, 24), horizons=(24,))
HOSTILE = [
    "agent-0",
    "Agent-0",  # differs only by case
    "agent-0\x00",  # differs only by a trailing NUL
    "q\"uo\\te's",
    "ünï\u200bcødé 🚀",
    "x" * 2000,
]


def _frames(seed: int, policy: Policy, names: list[str] | None = None):
    fleet = simulate_fleet(SPEC, seed)
    as_of = fleet.ledger.records["matured_at"].max()
    stats, conf, tails = cycle_frames(fleet.ledger, as_of, policy)
    if names is not None:
        mapping = dict(zip(sorted(stats["agent"].to_list()), names, strict=True))

        def rename(frame):
            if frame is None or "agent" not in frame.columns:
                return None
            return frame.with_columns(
                pl.col("agent").replace_strict(mapping, return_dtype=pl.String)
            )

        stats, conf, tails = rename(stats), rename(conf), rename(tails)
    return stats, conf, tails, as_of


def _read_back(tmp_path: Path, *decisions) -> list[dict]:
    """Append ``decisions`` to a fresh history; what a reader of each entry gets."""
    path = tmp_path / "history.jsonl"
    for decision in decisions:
        append_history(path, decision)
    ok, message = verify_history(path)
    assert ok, message
    return [e.decision for e in read_history(path)]


# ----------------------------------------------------------------- 1. read back as decided


@pytest.mark.parametrize("profile", list(Profile))
def test_hostile_names_overrides_previous_and_nan_strength_read_back_as_decided(tmp_path, profile):
    """Agent names that differ only by case or a trailing NUL, quotes, unicode and 2,000
    characters; an override active at as_of, one expiring exactly at as_of (not active) and one
    active by a microsecond; two on one agent (the binding one by order); previous weights; a
    learned strength whose ρ̄, se, z and a rule's t are NaN: the reader's decision is the
    decided one, byte for byte."""
    policy = Policy(profile=profile)
    stats, conf, tails, as_of = _frames(4, policy, HOSTILE)
    persistence = Persistence(
        0.4,
        math.nan,
        math.nan,
        math.nan,
        3,
        selection=RuleSelection("equal_weight", {"equal_weight": 0.0, "tilt": math.nan}, 2),
    )
    overrides = (
        Override(HOSTILE[2], "cap", 'r\u00e9ason "q"', as_of + timedelta(days=1), cap=0.05),
        Override(HOSTILE[2], "cap", "second on the agent", as_of + timedelta(days=2), cap=0.01),
        Override(HOSTILE[1], "exclude", "expires now", as_of),
        Override(HOSTILE[5], "exclude", "by a microsecond", as_of + timedelta(microseconds=1)),
        Override("not-in-fleet", "exclude", "absent", as_of + timedelta(days=1)),
    )
    first = allocate_frames(stats, conf, tails, as_of=as_of, policy=policy, persistence=persistence)
    second = allocate_frames(
        stats,
        conf,
        tails,
        as_of=as_of,
        policy=policy,
        previous={**first.weights, HOSTILE[3]: -0.0, "gone": 0.5},
        overrides=overrides,
        previous_hash="f" * 64,
        persistence=persistence,
    )
    assert first.recipe is not None and second.recipe is not None
    assert [o.reason for o in second.recipe.overrides] == [
        'r\u00e9ason "q"',
        "second on the agent",
        "by a microsecond",
        "absent",
    ]
    got = _read_back(tmp_path, first, second)
    assert [canonical_json(d) for d in got] == [
        canonical_json(first.to_dict()),
        canonical_json(second.to_dict()),
    ]
    assert set(got[1]["agents"]) == set(HOSTILE)


def _odd_values(stats: pl.DataFrame) -> pl.DataFrame:
    """Every float column with a null, a NaN, a -0.0 and an inf in its first rows."""
    odd = [None, math.nan, -0.0, math.inf, -math.inf]
    columns = []
    for series in stats.get_columns():
        values = series.to_list()
        values[: len(odd)] = odd[: len(values)]
        columns.append(
            pl.Series(series.name, values, dtype=pl.Float64)
            if series.dtype == pl.Float64
            else series
        )
    return pl.DataFrame(columns)


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("fleet", ["odd values", "all gated", "empty", "NaN strength"])
def test_odd_fleets_read_back_as_decided(tmp_path, profile, fleet):
    policy = Policy(profile=profile)
    stats, conf, tails, as_of = _frames(6, policy)
    persistence = None
    if fleet == "NaN strength":  # every field of the learned strength NaN
        persistence = Persistence(math.nan, math.nan, math.nan, math.nan, 0)
    elif fleet == "odd values":
        stats = _odd_values(stats)
    elif fleet == "all gated":
        stats = stats.with_columns(pl.lit(1, dtype=stats["n_records"].dtype).alias("n_records"))
    elif fleet == "empty":
        stats, conf, tails = stats.head(0), conf.head(0), tails.head(0)
    try:
        decision = allocate_frames(
            stats, conf, tails, as_of=as_of, policy=policy, persistence=persistence
        )
    except ValueError as err:  # a fleet the allocation refuses is never recorded
        pytest.fail(f"{fleet}: {err}")
    if fleet == "all gated":
        assert decision.portfolio["n_gated"] == decision.portfolio["n_agents"] > 0
    if fleet == "empty":
        assert decision.portfolio["n_agents"] == 0
    (got,) = _read_back(tmp_path, decision)
    assert canonical_json(got) == canonical_json(decision.to_dict())


# ------------------------------------------------------------ 2. bytes independent of layout


def test_equal_frames_give_equal_bytes_however_sliced_chunked_or_null_filled():
    """A frame cut from a larger one (offset buffers), in chunks, or whose null slots hold
    other values underneath (dates, booleans, strings, floats) is written as the frame built
    in one piece."""
    whole = pl.DataFrame(
        {
            "agent": ["a", None, "c", "d"],
            "x": [1.0, None, -0.0, math.inf],
            "ok": [True, None, False, True],
            "at": pl.Series([1, None, 3, 4], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "n": pl.Series([1, None, 3, 4], dtype=pl.UInt32),
        }
    )
    bigger = pl.concat([whole.head(1), whole, whole.head(2)], rechunk=True).slice(1, 4)
    chunked = pl.concat([whole.slice(0, 1), whole.slice(1, 3)], rechunk=False)
    dirty = pl.DataFrame(
        {
            "agent": ["a", "zzz", "c", "d"],
            "x": [1.0, 7.0, -0.0, math.inf],
            "ok": [True, True, False, True],
            "at": pl.Series([1, 99, 3, 4], dtype=pl.Int64).cast(pl.Datetime("us", "UTC")),
            "n": pl.Series([1, 9, 3, 4], dtype=pl.UInt32),
        }
    ).with_columns(pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise(pl.all()).name.keep())
    assert chunked.n_chunks() == 2
    policy = Policy()

    def data(frame):
        return Recipe(frame, None, None, _T, policy, None, (), None, None).to_bytes()

    assert {data(f) for f in (whole, bigger, chunked, dirty)} == {data(whole)}


_T = DEMO_AS_OF


# ------------------------------------------------------ 3. and 4. untrusted files are refused


@pytest.fixture(scope="module")
def genuine(tmp_path_factory) -> Path:
    """A history of two evidence decisions, inputs kept; the second with previous weights, an
    override and a learned strength."""
    state = tmp_path_factory.mktemp("genuine")
    policy = Policy(profile=Profile.EVIDENCE)
    stats, conf, tails, as_of = _frames(3, policy)
    first = allocate_frames(stats, conf, tails, as_of=as_of, policy=policy)
    second = allocate_frames(
        stats,
        conf,
        tails,
        as_of=as_of,
        policy=policy,
        previous={"agent-01": 0.3},
        overrides=[Override("agent-02", "cap", "ops", as_of + timedelta(hours=1), cap=0.1)],
        persistence=Persistence(0.4, 0.1, 0.05, 2.0, 3),
    )
    append_history(state / "history.jsonl", first)
    append_history(state / "history.jsonl", second)
    return state


def _copy(genuine: Path, tmp_path: Path) -> Path:
    for p in genuine.rglob("*"):
        if p.is_file():
            target = tmp_path / p.relative_to(genuine)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(p.read_bytes())
    return tmp_path


def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _header_edit(edit: Callable[[dict], None]) -> Callable[[bytes, bytes], bytes]:
    def make(data: bytes, _other: bytes) -> bytes:
        members = _members(data)
        header = json.loads(members["recipe.json"])
        edit(header)
        return _zip({**members, "recipe.json": json.dumps(header).encode()})

    return make


def _member_edit(name: str, edit: Callable[[bytes], bytes]) -> Callable[[bytes, bytes], bytes]:
    def make(data: bytes, _other: bytes) -> bytes:
        members = _members(data)
        return _zip({**members, name: edit(members[name])})

    return make


def _huge_claim(data: bytes, _other: bytes) -> bytes:
    """The first member's central directory entry claims 2 GiB (stored and uncompressed)."""
    out = bytearray(data)
    at = data.find(b"PK\x01\x02")
    out[at + 20 : at + 28] = (2**31).to_bytes(4, "little") * 2
    return bytes(out)


def _bomb(data: bytes, _other: bytes) -> bytes:
    """recipe.json deflated with 40 MB of trailing blanks (still valid JSON): ~40 KB."""
    members = _members(data)
    members["recipe.json"] += b" " * 40_000_000
    return _zip(members, zipfile.ZIP_DEFLATED)


def _set(*keys: str, value: object) -> Callable[[dict], None]:
    def edit(header: dict) -> None:
        target = header
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


def _column(header: dict, frame: str, name: str) -> int:
    return [c[0] for c in header["columns"][frame]].index(name)


def _retype(header: dict) -> None:
    """stats' Float64 column ``pnl_mean_bps`` read as Int64 (the same 8 bytes)."""
    i = _column(header, "stats", "pnl_mean_bps")
    header["columns"]["stats"][i][1] = {"kind": "number", "dtype": "Int64", "numpy": "<i8"}


def _drop_agent_column(header: dict) -> None:
    header["columns"]["stats"][_column(header, "stats", "agent")][0] = "who"


def _rename_agents(values: bytes) -> bytes:
    names = json.loads(values)
    return json.dumps([n[::-1] for n in names]).encode()


ATTACKS: dict[str, Callable[[bytes, bytes], bytes]] = {
    "swapped with the other entry's": lambda data, other: other,
    "truncated": lambda data, _: data[: len(data) // 2],
    "one byte flipped": lambda data, _: data[:200] + bytes([data[200] ^ 1]) + data[201:],
    "a member claiming 2 GiB": _huge_claim,
    "a zip bomb": _bomb,
    "deeply nested JSON": _member_edit("recipe.json", lambda _: b"[" * 200_000 + b"]" * 200_000),
    "another format": _header_edit(_set("format", value="meta-supervisor/recipe/2")),
    "n_lags infinite": _header_edit(
        _set(
            "persistence",
            value={
                "strength": 0.5,
                "mean_rho": 0.1,
                "se": 0.1,
                "z": 1.0,
                "n_lags": math.inf,
                "selection": None,
            },
        )
    ),
    "a previous weight of 10**400": _header_edit(_set("previous", value={"agent-1": 10**400})),
    "a column of another type": _header_edit(_retype),
    "a column one row short": _member_edit("stats.3.values", lambda v: v[:-8]),
    "an agent list not the recorded one": _member_edit("stats.0.values", _rename_agents),
    "stats without its agent column": _header_edit(_drop_agent_column),
    "another as_of": _header_edit(_set("as_of", value="2020-01-01T00:00:00Z")),
    "a mean PnL one ulp off": _member_edit(
        "stats.4.values", lambda v: (np.frombuffer(v, "<f8") * (1 + 2**-52)).tobytes()
    ),
    "the override's reason edited": _header_edit(_set("overrides", 0, "reason", value="other")),
    "the override expiring at as_of": _header_edit(
        lambda h: _set("overrides", 0, "expires_at", value=h["as_of"])(h)
    ),
    "another learned strength": _header_edit(_set("persistence", "strength", value=0.41)),
    "no previous weights": _header_edit(_set("previous", value=None)),
    "another max_weight": _header_edit(_set("policy", "max_weight", value=0.11)),
}


def _rehash(state: Path, index: int, data: bytes) -> None:
    """Put ``data`` in entry ``index``'s inputs file and re-hash the history by hand: its SHA,
    every chain hash after it; nothing a hash can see is left out of place."""
    path = state / "history.jsonl"
    entries = read_history(path)
    (state / entries[index].record["explanations"]["file"]).write_bytes(data)
    prev, lines = GENESIS, []
    for i, entry in enumerate(entries):
        record = dict(entry.record)
        if i == index:
            ref = {**record["explanations"], "sha256": hashlib.sha256(data).hexdigest()}
            record["explanations"] = ref
        digest = entry_hash(entry.seq, prev, record)
        body = {"seq": entry.seq, "prev_hash": prev, "hash": digest, "decision": record}
        lines.append(canonical_json(body) + "\n")
        prev = digest
    path.write_text("".join(lines), encoding="utf-8")


def _assert_refused(state: Path, index: int) -> None:
    entry = read_history(state / "history.jsonl")[index]
    name = entry.record["explanations"]["file"]
    with pytest.raises(ExplanationsError, match=name.replace(".", r"\.")):
        entry.decision  # noqa: B018 - the read under attack
    ok, message = verify_history(state / "history.jsonl")
    assert not ok and name in message, message
    assert name in (explanations.problem(state, entry.record) or "")


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hostile_inputs_file_with_the_history_rehashed_is_refused_by_name(
    genuine, tmp_path, attack
):
    """Whatever the file holds, the reader gets an ExplanationsError naming it (no
    RecursionError, OverflowError, EOFError or the allocation's own error escapes), verify
    names it, and the other entry still reads back."""
    state = _copy(genuine, tmp_path)
    files = [e.record["explanations"]["file"] for e in read_history(state / "history.jsonl")]
    data, other = ((state / f).read_bytes() for f in reversed(files))
    _rehash(state, 1, ATTACKS[attack](data, other))
    _assert_refused(state, 1)
    first = read_history(state / "history.jsonl")[0]
    assert first.decision["agents"]


@pytest.mark.parametrize(
    "attack", ["missing", "edited", "truncated", "swapped"], ids=lambda a: f"{a}, not rehashed"
)
def test_a_missing_or_edited_inputs_file_is_refused_by_name(genuine, tmp_path, attack):
    state = _copy(genuine, tmp_path)
    entries = read_history(state / "history.jsonl")
    path, other = (state / e.record["explanations"]["file"] for e in reversed(entries))
    data = path.read_bytes()
    if attack == "missing":
        path.unlink()
    elif attack == "edited":
        path.write_bytes(data.replace(b"evidence", b"evidencf", 1))
    elif attack == "truncated":
        path.write_bytes(data[:-1])
    else:
        path.write_bytes(other.read_bytes())
    _assert_refused(state, 1)


def test_a_zip_bomb_is_refused_before_it_is_expanded(genuine):
    """Refused with at most a few MB allocated (the bomb expands to 40 MB)."""
    files = sorted((genuine / "explanations").glob("*.inputs"))
    bomb = _bomb(files[0].read_bytes(), b"")
    assert len(bomb) < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(RecipeError, match="not stored"):
            Recipe.from_bytes(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8_000_000


# ------------------------------------------------------------------ 5. an interrupted cycle


def test_a_stale_inputs_file_for_the_next_entry_is_replaced_by_the_next_cycle(tmp_path):
    """A kill between the inputs file and the history line leaves ``<seq+1>.inputs`` that no
    entry names (here: garbage). The next cycle writes the same bytes as an uninterrupted one."""
    policy = Policy(profile=Profile.SEED)
    stats, conf, tails, as_of = _frames(2, policy)
    decision = allocate_frames(stats, conf, tails, as_of=as_of, policy=policy)
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    append_history(clean / "history.jsonl", decision)
    (killed / "explanations").mkdir(parents=True)
    (killed / "explanations" / "00000001.inputs").write_bytes(b"half a zip")
    ok, message = verify_history(killed / "history.jsonl")
    assert ok and "no entry names yet" in message, message
    explanations.remove_uncommitted(killed, 0)
    append_history(killed / "history.jsonl", decision)
    for name in ("history.jsonl", "explanations/00000001.inputs"):
        assert (killed / name).read_bytes() == (clean / name).read_bytes()


# ----------------------------------------------- 6. columns a recipe cannot keep: JSON kept


@pytest.mark.parametrize(
    "extra",
    [
        pl.lit([1, 2]).alias("tags"),
        pl.struct(a=pl.lit(1), b=pl.lit("x")).alias("meta"),
        pl.lit("x").cast(pl.Categorical).alias("kind"),
        pl.lit(None).alias("nothing"),
    ],
    ids=["list", "struct", "categorical", "null"],
)
def test_a_column_a_recipe_cannot_keep_falls_back_to_the_explanations_file(tmp_path, extra):
    stats, conf, tails, as_of = _frames(1, Policy())
    decision = allocate_frames(stats.with_columns(extra), conf, tails, as_of=as_of)
    assert decision.recipe is None
    (got,) = _read_back(tmp_path, decision)
    assert canonical_json(got) == canonical_json(decision.to_dict())
    (entry,) = read_history(tmp_path / "history.jsonl")
    assert entry.record["explanations"]["file"].endswith(".json")


def test_each_attack_changes_the_file_and_the_genuine_files_read_back(genuine):
    """Sanity of the attacks: each gives other bytes than the genuine file (so every refusal
    above is the attack's), and the genuine history verifies and reads back."""
    files = sorted((genuine / "explanations").glob("*.inputs"))
    data, other = files[1].read_bytes(), files[0].read_bytes()
    for name, attack in ATTACKS.items():
        assert attack(data, other) != data, name
    assert verify_history(genuine / "history.jsonl")[0]
    second = read_history(genuine / "history.jsonl")[1].decision
    assert second["agents"]["agent-02"]["override"]["reason"] == "ops"


@pytest.mark.parametrize("profile", [Profile.SEED, Profile.EVIDENCE])
def test_a_warm_and_a_rebuilt_engine_record_the_same_inputs_files(tmp_path, profile):
    """The store's cycle with its engine kept and with it lost before every cycle (frames
    summed and laid out another way): the same history, the same inputs files, the same
    explanations read back (select's case is tests/cycle/test_engine.py's)."""
    inputs = make_inputs(tmp_path)
    ingest([inputs.records, inputs.telemetry], inputs.ledger)
    warm, lost = (replace(inputs, state_dir=tmp_path / name) for name in ("warm", "lost"))
    policy = Policy(profile=profile)
    for as_of in [DEMO_AS_OF - timedelta(hours=12 * k) for k in (2, 1, 0)]:
        run_cycle(warm, as_of, policy)
        if lost.engine.exists():
            lost.engine.unlink()
            meta_path(lost.engine).unlink()
        _, ledger = run_cycle(lost, as_of, policy)
        assert ledger.engine is not None and ledger.engine.mode == "rebuilt"
    assert lost.history.read_bytes() == warm.history.read_bytes()
    names = sorted(p.name for p in (warm.state_dir / "explanations").iterdir())
    assert names == ["00000001.inputs", "00000002.inputs", "00000003.inputs"]
    for name in names:
        assert (lost.state_dir / "explanations" / name).read_bytes() == (
            warm.state_dir / "explanations" / name
        ).read_bytes()
    assert [e.decision for e in read_history(lost.history)] == [
        e.decision for e in read_history(warm.history)
    ]


def _reorder_stats(data: bytes, _other: bytes) -> bytes:
    """The stats frame's columns in reverse order (members renumbered to match)."""
    members = _members(data)
    header = json.loads(members["recipe.json"])
    columns = header["columns"]["stats"]
    n = len(columns)
    header["columns"]["stats"] = columns[::-1]
    for i in range(n):
        for part in ("nulls", "values"):
            members[f"stats.{i}.{part}"] = _members(data)[f"stats.{n - 1 - i}.{part}"]
    header["overrides"].append(
        {
            "agent": "agent-03",
            "action": "exclude",
            "reason": "expired",
            "expires_at": header["as_of"],
            "cap": None,
            "created_by": "x",
        }
    )
    return _zip({**members, "recipe.json": json.dumps(header).encode()})


def test_an_edit_that_changes_nothing_decided_reads_back_the_same_explanations(genuine, tmp_path):
    """Columns reordered and an override expired at as_of added: the same decision, so the
    same explanations (the reader never shows others)."""
    state = _copy(genuine, tmp_path)
    before = read_history(state / "history.jsonl")[1].decision
    data = state / "explanations" / "00000002.inputs"
    _rehash(state, 1, _reorder_stats(data.read_bytes(), b""))
    after = read_history(state / "history.jsonl")[1].decision
    assert canonical_json(after) == canonical_json(before)


# ------------------------------------------------- readers: what is decided again, and when


def test_the_services_view_decides_each_entry_again_once_across_commits(tmp_path, monkeypatch):
    """The API's history view read every entry afresh after each commit, so an agent's points
    (the dashboard asks for 500 entries) took every decision again from its inputs file after
    each cycle (~70 ms each at 1,000 agents: half a minute). Entries already read keep their
    decision; only the new one is decided."""
    from meta_supervisor.service.reader import StateView

    calls = []
    real = explanations.replay
    monkeypatch.setattr(explanations, "replay", lambda r: calls.append(r.as_of) or real(r))
    policy = Policy(profile=Profile.SEED)
    stats, conf, tails, as_of = _frames(5, policy)
    path = tmp_path / "history.jsonl"
    view = StateView(path)
    for k in range(3):
        decision = allocate_frames(
            stats, conf, tails, as_of=as_of + timedelta(hours=k), policy=policy
        )
        append_history(path, decision)
        assert view.current().entry.decision["as_of"] == decision.as_of
        points = [e.decision["agents"]["agent-00"]["weight"] for e in view.entries()]
        assert len(points) == k + 1
    assert len(calls) == 3
    # a history cut back keeps what it still holds; another entry under a kept seq is read
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]))
    assert [e.seq for e in view.entries()] == [1, 2] and len(calls) == 3
    other = tmp_path / "other" / "history.jsonl"
    for k in (7, 8):
        at = as_of + timedelta(hours=k)
        append_history(other, allocate_frames(stats, conf, tails, as_of=at, policy=policy))
    (tmp_path / "explanations" / "00000002.inputs").write_bytes(
        (other.parent / "explanations" / "00000002.inputs").read_bytes()
    )
    path.write_bytes(b"".join(lines[:1]) + other.read_bytes().splitlines(keepends=True)[1])
    (second,) = view.entries()[1:]
    assert second.decision["as_of"] == iso(as_of + timedelta(hours=8)) and len(calls) == 4


def test_history_of_an_agent_decides_again_only_the_entries_it_shows(tmp_path, monkeypatch):
    """``history --agent`` looked for the agent from the oldest entry on, each one decided
    again from its inputs file: an agent that joined lately cost a replay of every entry before
    it. The shown entries are looked at first (they are read for the rows anyway)."""
    from typer.testing import CliRunner

    from meta_supervisor.cli.main import app

    policy = Policy(profile=Profile.SEED)
    stats, conf, tails, as_of = _frames(5, policy)
    for k in range(3):
        rows = stats if k == 2 else stats.filter(pl.col("agent") != "agent-05")
        append_history(
            tmp_path / "history.jsonl",
            allocate_frames(rows, conf, tails, as_of=as_of + timedelta(hours=k), policy=policy),
        )
    calls = []
    real = explanations.replay
    monkeypatch.setattr(explanations, "replay", lambda r: calls.append(r.as_of) or real(r))
    args = ["history", "--agent", "agent-05", "--last", "1", "--state-dir", str(tmp_path), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["entries"]
    assert row["agent"] is not None and calls == [as_of + timedelta(hours=2)]
    unknown = CliRunner().invoke(app, [*args[:2], "nobody", *args[3:]])
    assert unknown.exit_code != 0 and "nobody" in unknown.output


def test_weights_over_time_decide_nothing_again_and_list_every_agent(tmp_path, monkeypatch):
    """Plain ``history`` and ``notebook.weights`` list every agent of each decision, those at
    zero included: they decided the shown entries again from their inputs files for that (20
    replays, ~1.5 s at 1,000 agents). The names come from the inputs file, the weights from the
    record: the same numbers the explanations give, and no replay (an agent unknown to every
    entry still costs none but the latest decision's, for the suggestion)."""
    from typer.testing import CliRunner

    from meta_supervisor import notebook
    from meta_supervisor.cli.main import app

    policy = Policy(profile=Profile.SEED)
    stats, conf, tails, as_of = _frames(5, policy)
    for k in range(3):
        rows = stats if k == 2 else stats.filter(pl.col("agent") != "agent-05")
        append_history(
            tmp_path / "history.jsonl",
            allocate_frames(rows, conf, tails, as_of=as_of + timedelta(hours=k), policy=policy),
        )
    want = [
        {n: e["weight"] for n, e in sorted(entry.decision["agents"].items())}
        for entry in read_history(tmp_path / "history.jsonl")
    ]
    calls = []
    real = explanations.replay
    monkeypatch.setattr(explanations, "replay", lambda r: calls.append(r.as_of) or real(r))
    result = CliRunner().invoke(app, ["history", "--state-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    assert [row["weights"] for row in json.loads(result.stdout)["entries"]] == want
    frame = notebook.weights(state_dir=tmp_path)
    assert frame.filter(pl.col("seq") == 3)["agent"].to_list() == list(want[2])
    assert frame.filter(pl.col("seq") == 3)["weight"].to_list() == list(want[2].values())
    assert calls == []


RETYPES = {
    "n_records as Object": ("n_records", {"kind": "number", "dtype": "Object", "numpy": "<i8"}),
    "n_records as Float64": ("n_records", {"kind": "number", "dtype": "Float64", "numpy": "<i8"}),
    "n_records as Int32": ("n_records", {"kind": "number", "dtype": "Int32", "numpy": "<i8"}),
    "pnl_mean as Float32": ("pnl_mean_bps", {"kind": "number", "dtype": "Float32", "numpy": "<f8"}),
    "time as Int64": ("last_matured_at", {"kind": "number", "dtype": "Int64", "numpy": "<i8"}),
    "time in Tokyo": (
        "last_matured_at",
        {"kind": "datetime", "unit": "us", "zone": "Asia/Tokyo", "numpy": "<i8"},
    ),
    "time naive": ("last_matured_at", {"kind": "datetime", "unit": "us", "zone": None}),
    "strategy as numbers": ("strategy", {"kind": "number", "dtype": "Int64", "numpy": "<i8"}),
}


@pytest.mark.parametrize("retype", sorted(RETYPES))
def test_a_column_read_as_another_type_is_refused_or_explains_the_same(genuine, tmp_path, retype):
    """A column's type changed in the file (history re-hashed): ``verify`` and the reader agree,
    and what the reader shows is the genuine explanations or nothing (a value the allocation
    reads as before, an instant in another zone, gives the same decision: the same
    explanations)."""
    state = _copy(genuine, tmp_path)
    before = canonical_json(read_history(state / "history.jsonl")[1].decision)
    column, spec = RETYPES[retype]

    def edit(header: dict) -> None:
        header["columns"]["stats"][_column(header, "stats", column)][1] = spec

    path = state / "explanations" / "00000002.inputs"
    _rehash(state, 1, _header_edit(edit)(path.read_bytes(), b""))
    ok, _ = verify_history(state / "history.jsonl")
    if ok:
        assert canonical_json(read_history(state / "history.jsonl")[1].decision) == before
    else:
        _assert_refused(state, 1)
