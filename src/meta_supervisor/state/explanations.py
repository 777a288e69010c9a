"""Explanations kept once: one file per committed cycle, named and hashed by its history entry.

A decision's per-agent explanations (``decision.agents``) are most of its bytes (about 2 KB an
agent). They are written once, to ``explanations/<seq>.json`` in the state directory (``seq``
the history entry's, 8 digits), as compact canonical JSON (:func:`canonical_json` of the
``{agent: explanation}`` map). The history entry and ``decision.json`` hold the decision
without ``agents`` and, in their place, a reference::

    "explanations": {"file": "explanations/00000042.json", "sha256": "<hex>", "agents": 1000}

that is the *record* of the decision; the chain hash covers it, so it covers the file's SHA-256
and any edit to the file is seen (:func:`load`, ``verify``). Reading an entry gives back the
decision as it was before explanations moved out (:func:`resolve`): the record without the
reference, with ``agents`` read from the file. Entries written before (``agents`` inline, no
reference) are their own record and resolve to themselves.

Commit order (:func:`meta_supervisor.cycle.run.commit`): the file is written atomically
(temp, fsync, rename, directory fsync), then the history line (the commit point). A kill
between the two leaves a file for ``seq`` = last entry + 1 that no entry names; the next cycle
removes it or replaces it (:func:`remove_uncommitted`), ``verify`` ignores it.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from meta_supervisor.allocate.core import replay
from meta_supervisor.allocate.decision import Decision, canonical_json
from meta_supervisor.allocate.recipe import Recipe, RecipeError
from meta_supervisor.errors import ProblemFound
from meta_supervisor.state.atomic import atomic_write_bytes, fsync_path, remove_stale_temps

__all__ = [
    "DIRECTORY",
    "INPUTS",
    "REF_KEY",
    "ExplanationsError",
    "agent_weights",
    "check",
    "file_name",
    "load",
    "problem",
    "record_of",
    "remove_uncommitted",
    "replayed",
    "resolve",
    "write",
    "write_inputs",
]

DIRECTORY = "explanations"
REF_KEY = "explanations"
_FILE = re.compile(r"^explanations/([0-9]{8,12})\.(json|inputs)$")
#: The suffix of a file holding a decision's inputs (explanations built on demand).
INPUTS = ".inputs"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ExplanationsError(ProblemFound, ValueError):
    """A decision's explanations file is missing, edited, or named wrongly in its record."""

    hint = "run 'meta-supervisor verify'"


def file_name(seq: int, suffix: str = ".json") -> str:
    """The reference's ``file`` for history entry ``seq`` (relative to the state directory):
    its explanations (``.json``) or its inputs (``.inputs``)."""
    return f"{DIRECTORY}/{seq:08d}{suffix}"


def encode(agents: dict[str, Any]) -> bytes:
    """The file's bytes: compact canonical JSON of the ``{agent: explanation}`` map."""
    return canonical_json(agents).encode()


def write(state_dir: Path, seq: int, agents: dict[str, Any]) -> dict[str, Any]:
    """Write ``agents`` as entry ``seq``'s explanations file (atomically, fsync'd); return the
    reference its record carries. Fault hook point: ``before_rename:<8 digits>.json``."""
    return _write(state_dir, file_name(seq), encode(agents), len(agents))


def write_inputs(state_dir: Path, seq: int, decision: Decision) -> dict[str, Any]:
    """Write the inputs ``decision`` was taken from (its :attr:`~Decision.recipe`) as entry
    ``seq``'s file, in place of its explanations (built from them when read, :func:`load`);
    return the reference. Fault hook point: ``before_rename:<8 digits>.inputs``."""
    data = decision.recipe.to_bytes()
    agents = int(decision.portfolio["n_agents"])
    return _write(state_dir, file_name(seq, INPUTS), data, agents)


def _write(state_dir: Path, name: str, data: bytes, agents: int) -> dict[str, Any]:
    directory = Path(state_dir) / DIRECTORY
    if not directory.is_dir():
        directory.mkdir(parents=True)
        fsync_path(directory.parent)  # the new directory itself, before anything names it
    atomic_write_bytes(Path(state_dir) / name, data)
    return {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "agents": agents}


def record_of(decision: Decision, ref: dict[str, Any]) -> dict[str, Any]:
    """The record of ``decision`` (what the history and ``decision.json`` hold): its JSON form
    (:meth:`Decision.to_dict`) without ``agents``, with the reference ``ref`` instead. The
    explanations are not serialised here (only :func:`write` does, once)."""
    plain = {name: getattr(decision, name) for name in Decision.FIELDS if name != "agents"}
    record: dict[str, Any] = orjson.loads(canonical_json(plain))
    record[REF_KEY] = ref
    return record


def _ref(record: dict[str, Any]) -> dict[str, Any] | None:
    """The record's reference, or ``None`` for a decision with its explanations inline.
    Raises :class:`ExplanationsError` when it is malformed (a name outside ``explanations/``
    is never opened)."""
    ref = record.get(REF_KEY)
    if ref is None:
        return None
    if (
        not isinstance(ref, dict)
        or not isinstance(ref.get("file"), str)
        or not _FILE.match(ref["file"])
        or not isinstance(ref.get("sha256"), str)
        or not _HEX64.match(ref["sha256"])
    ):
        raise ExplanationsError(f"the decision of {record.get('as_of')} names no valid file")
    return ref


def _checked_bytes(state_dir: Path, record: dict[str, Any], ref: dict[str, Any]) -> bytes:
    """The bytes of ``ref``'s file, held against its SHA-256 (:class:`ExplanationsError`)."""
    path = Path(state_dir) / ref["file"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ExplanationsError(
            f"{path}: missing (the explanations of the decision of {record.get('as_of')})"
        ) from None
    if hashlib.sha256(data).hexdigest() != ref["sha256"]:
        raise ExplanationsError(
            f"{path}: content does not match the SHA-256 its history entry records (edited)"
        )
    return data


def check(state_dir: Path, record: dict[str, Any]) -> str | None:
    """What is wrong with ``record``'s explanations file, by its SHA-256 alone (``None``:
    nothing, or inline): what a cycle checks of the entries it builds on, without parsing."""
    try:
        ref = _ref(record)
        if ref is not None:
            _checked_bytes(state_dir, record, ref)
    except ExplanationsError as err:
        return str(err)
    return None


def load(state_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The ``{agent: explanation}`` map of ``record``: inline, or read from its file and held
    against the SHA-256 the record names. Raises :class:`ExplanationsError` naming the file
    when it is missing, edited or not a map."""
    ref = _ref(record)
    if ref is None:
        agents = record.get("agents", {})
        return agents if isinstance(agents, dict) else {}
    data = _checked_bytes(state_dir, record, ref)
    path = Path(state_dir) / ref["file"]
    if ref["file"].endswith(INPUTS):
        decision = replayed(path, record, data)
        try:
            built = canonical_json(decision.agents)
        except Exception as err:  # as in replayed: built from the file, never shown half-made
            raise ExplanationsError(
                f"{path}: not a decision's inputs (explaining: {type(err).__name__}: {err})"
            ) from None
        return orjson.loads(built)
    agents = orjson.loads(data)
    if not isinstance(agents, dict):
        raise ExplanationsError(f"{path}: not a map of explanations")
    return agents


def replayed(path: Path, record: dict[str, Any], data: bytes) -> Decision:
    """The decision taken again from the inputs ``data`` (the file ``path``) of ``record``,
    held against it: the same weights, cash and inputs fingerprint (else
    :class:`ExplanationsError`: inputs that do not give the recorded decision never explain
    it). Its explanations are built when read."""
    try:
        recipe = Recipe.from_bytes(data)
    except RecipeError as err:
        raise ExplanationsError(f"{path}: {err}") from None
    try:
        # read as written, yet not what a decision was taken from (a frame without its agent
        # column, a quality that is not finite): the decision was taken once, so these are not
        # its inputs
        decision = replay(recipe)
        plain = orjson.loads(canonical_json({k: getattr(decision, k) for k in _CHECKED}))
    except Exception as err:  # anything the file makes the allocation raise
        raise ExplanationsError(
            f"{path}: not a decision's inputs (deciding again: {type(err).__name__}: {err})"
        ) from None
    recorded = {k: record.get(k) for k in _CHECKED}
    # a superseding copy names the file of the decision it restores, its provenance saying so
    provenance = recorded["provenance"] if isinstance(recorded["provenance"], dict) else {}
    recorded["provenance"] = {k: provenance.get(k) for k in plain["provenance"]}
    if plain != recorded:
        differs = ", ".join(k for k in _CHECKED if plain[k] != recorded[k])
        raise ExplanationsError(
            f"{path}: its inputs do not give the decision of {record.get('as_of')} "
            f"(different {differs})"
        )
    return decision


#: What a decision taken again from its inputs must match of its record (the provenance holds
#: the inputs' fingerprint and the previous decision's hash; a record's other provenance keys,
#: such as ``supersedes``, are not the decision's).
_CHECKED = ("as_of", "weights", "cash", "gross", "portfolio", "provenance", "policy")


def agent_weights(state_dir: Path, record: dict[str, Any]) -> dict[str, float]:
    """Every agent the decision explains, in name order, with its weight (0 for an agent the
    weights leave out, as its explanation says): from the names in its inputs file and the
    record's weights, without deciding again or building an explanation; from the
    explanations themselves for the other kinds of entry (:class:`ExplanationsError` as
    :func:`load`)."""
    ref = _ref(record)
    if ref is None or not ref["file"].endswith(INPUTS):
        return {n: float(e["weight"]) for n, e in sorted(load(state_dir, record).items())}
    path = Path(state_dir) / ref["file"]
    try:
        names = Recipe.from_bytes(_checked_bytes(state_dir, record, ref)).stats["agent"]
    except (RecipeError, pl.exceptions.PolarsError) as err:
        raise ExplanationsError(f"{path}: not a decision's inputs ({err})") from None
    weights = record.get("weights", {})
    named = {str(n): float(weights.get(n, 0.0)) for n in sorted(names.to_list())}
    if not set(weights) <= set(named):
        raise ExplanationsError(f"{path}: its agents do not hold the decision's weights")
    return named


def problem(state_dir: Path, record: dict[str, Any]) -> str | None:
    """What is wrong with ``record``'s explanations file (``None``: nothing, or inline). An
    inputs file is held against its hash and must give the recorded decision
    (:func:`replayed`); its explanations are not built (what ``verify`` pays per entry)."""
    try:
        ref = _ref(record)
        if ref is not None and ref["file"].endswith(INPUTS):
            replayed(Path(state_dir) / ref["file"], record, _checked_bytes(state_dir, record, ref))
        else:
            load(state_dir, record)
    except ExplanationsError as err:
        return str(err)
    except ValueError as err:  # not JSON although the hash matches: written so, or a collision
        return f"{record.get(REF_KEY, {}).get('file')}: not JSON: {err}"
    return None


def resolve(state_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """The decision as a plain dict, as :meth:`Decision.to_dict` gives it: ``record`` itself
    when its explanations are inline, else the record without the reference and with
    ``agents`` read from the file (:func:`load`)."""
    if REF_KEY not in record:
        return record
    agents = load(state_dir, record)
    merged = {k: v for k, v in record.items() if k != REF_KEY}
    merged["agents"] = agents
    return dict(sorted(merged.items()))


def remove_uncommitted(state_dir: Path, last_seq: int) -> None:
    """Remove the explanations file a kill before the history append left for entry
    ``last_seq + 1`` (no entry names it) and temps of dead writers under ``explanations/``.
    Called under the state lock."""
    directory = Path(state_dir) / DIRECTORY
    if not directory.is_dir():
        return
    remove_stale_temps(directory)
    for suffix in (".json", INPUTS):
        with contextlib.suppress(FileNotFoundError):
            (Path(state_dir) / file_name(last_seq + 1, suffix)).unlink()
