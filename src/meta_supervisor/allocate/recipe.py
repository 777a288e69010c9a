"""A decision's inputs, kept so that its explanations are built on demand (issue #17).

A cycle's per-agent explanations are most of its cost after an append (about 40 ms to build
and 10 ms to write for 1,000 agents, 2 MB of JSON) and are read only when someone asks (the
memo, ``explain``, the API). The decision is a pure function of its inputs
(:func:`meta_supervisor.allocate.core.allocate_frames`), so the cycle keeps those instead, a
few hundred KB, and a reader decides again from them: the same weights, the same provenance
and the same explanations, bit for bit.

A :class:`Recipe` is the arguments of ``allocate_frames``: the three frames (``stats``,
``confidence``, ``tails``, as the cycle passed them), ``as_of``, the policy, the previous
weights and decision hash, the overrides active at ``as_of`` (in the order given: the binding
one per agent is chosen by a stable sort) and the learned strength. :meth:`Recipe.to_bytes` is
an uncompressed zip (no pickle, no timestamps): ``recipe.json`` (stdlib JSON, which keeps NaN
and ±inf) and each frame column by column: its null mask and its values as raw little-endian
numbers (strings as a JSON list), every NaN written as one NaN. Equal frames give equal bytes
however polars laid them out (chunks, validity buffers) and whatever sign a NaN carries, so
one cycle's inputs file is the same bytes whichever path computed its frames (a warm engine or
a rebuilt one); the decision reads no NaN's sign (a NaN input is gated, and the explanations
and the inputs fingerprint write it as null). Columns of another type (a list, a
struct) cannot be kept: :func:`encodable` says so, and the cycle then writes the explanations
themselves. Pure: bytes in, bytes out.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import polars as pl

from meta_supervisor.allocate.decision import iso, parse_iso
from meta_supervisor.allocate.inputs import Override
from meta_supervisor.policy.model import Policy
from meta_supervisor.signals.persistence import Persistence
from meta_supervisor.signals.selection import RuleSelection

__all__ = ["FORMAT", "Recipe", "RecipeError", "encodable"]

#: ``recipe.json``'s ``format``: another one is refused (a reader never guesses).
FORMAT = "meta-supervisor/recipe/1"
_FRAMES = ("stats", "confidence", "tails")


class RecipeError(ValueError):
    """Bytes that are not a recipe this version reads."""


@dataclass(frozen=True)
class Recipe:
    """The arguments of :func:`~meta_supervisor.allocate.core.allocate_frames` for one decision."""

    stats: pl.DataFrame
    confidence: pl.DataFrame | None
    tails: pl.DataFrame | None
    as_of: datetime
    policy: Policy
    previous: Mapping[str, float] | None
    overrides: tuple[Override, ...]
    previous_hash: str | None
    persistence: Persistence | None

    def to_bytes(self) -> bytes:
        """The recipe as an uncompressed zip: ``recipe.json`` and one Arrow IPC stream per
        frame (see the module docstring)."""
        frames = [name for name in _FRAMES if getattr(self, name) is not None]
        header: dict[str, Any] = {
            "format": FORMAT,
            "as_of": iso(self.as_of),
            "policy": self.policy.model_dump(mode="json"),
            "previous": None if self.previous is None else dict(self.previous),
            "previous_hash": self.previous_hash,
            "overrides": [o.to_dict() for o in self.overrides],
            "persistence": _persistence_blob(self.persistence),
            "frames": frames,
        }
        members: dict[str, bytes] = {}
        header["columns"] = {
            name: _encode_frame(getattr(self, name), name, members) for name in frames
        }
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
            for member, data in {"recipe.json": json.dumps(header).encode(), **members}.items():
                archive.writestr(zipfile.ZipInfo(member, date_time=_ZIP_TIME), data)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Recipe:
        """The recipe :meth:`to_bytes` wrote; :class:`RecipeError` for anything else."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                _check_members(archive, len(data))
                header = json.loads(archive.read("recipe.json"))
                if not isinstance(header, dict) or header.get("format") != FORMAT:
                    raise RecipeError("not a decision's inputs (format)")
                frames = {
                    name: _decode_frame(header["columns"][name], name, archive)
                    for name in header["frames"]
                    if name in _FRAMES
                }
            previous = header["previous"]
            return cls(
                stats=frames["stats"],
                confidence=frames.get("confidence"),
                tails=frames.get("tails"),
                as_of=parse_iso(header["as_of"]),
                policy=Policy.model_validate(header["policy"]),
                previous=None if previous is None else {k: float(v) for k, v in previous.items()},
                overrides=tuple(_override(item) for item in header["overrides"]),
                previous_hash=header["previous_hash"],
                persistence=_persistence(header["persistence"]),
            )
        except RecipeError:
            raise
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            IndexError,
            ArithmeticError,  # int(inf), float(10**400)
            RecursionError,  # JSON nested too deep
            EOFError,  # a member shorter than its header says
            zipfile.BadZipFile,
        ) as err:
            raise RecipeError(f"not a decision's inputs ({type(err).__name__}: {err})") from err
        except pl.exceptions.PolarsError as err:
            raise RecipeError(f"not a decision's inputs ({type(err).__name__})") from err


def _check_members(archive: zipfile.ZipFile, size: int) -> None:
    """Refuse an archive whose members are not as :meth:`Recipe.to_bytes` writes them: stored
    (a compressed member could expand to any size: a zip bomb) and no larger, in all, than the
    archive itself (a member claiming a huge size is refused before anything is read)."""
    total = 0
    for info in archive.infolist():
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise RecipeError(f"not a decision's inputs ({info.filename}: not stored as written)")
        total += info.file_size
        if total > size:
            raise RecipeError(f"not a decision's inputs ({info.filename}: larger than the file)")


_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # a fixed member time: the bytes depend on content alone
_NUMBERS = frozenset(
    {
        "Boolean",
        "Float32",
        "Float64",
        "Int8",
        "Int16",
        "Int32",
        "Int64",
        "UInt8",
        "UInt16",
        "UInt32",
        "UInt64",
    }
)


def _spec(dtype: pl.DataType) -> dict[str, Any] | None:
    """How a column of ``dtype`` is kept (``None``: it cannot be)."""
    if dtype == pl.String:
        return {"kind": "string"}
    if isinstance(dtype, pl.Datetime):
        return {"kind": "datetime", "unit": dtype.time_unit, "zone": dtype.time_zone}
    if isinstance(dtype, pl.Duration):
        return {"kind": "duration", "unit": dtype.time_unit}
    if dtype == pl.Date:
        return {"kind": "date"}
    name = type(dtype).__name__ if isinstance(dtype, pl.DataType) else str(dtype)
    return {"kind": "number", "dtype": name} if name in _NUMBERS else None


def encodable(*frames: pl.DataFrame | None) -> bool:
    """Every column of ``frames`` is of a type a recipe keeps (numbers, booleans, strings,
    dates, datetimes, durations)."""
    return all(
        _spec(dtype) is not None for frame in frames if frame is not None for dtype in frame.dtypes
    )


def _encode_frame(frame: pl.DataFrame, name: str, members: dict[str, bytes]) -> list[Any]:
    """``frame``'s columns as ``members`` (``<name>.<i>.nulls``, ``<name>.<i>.values``);
    returns each column's name and spec."""
    columns = []
    for i, series in enumerate(frame.get_columns()):
        spec = _spec(series.dtype)
        if spec is None:
            raise RecipeError(f"{name}.{series.name}: a {series.dtype} column cannot be kept")
        # null_count is kept with the column: no pass over a column without nulls
        has_nulls = series.null_count() > 0
        nulls = series.is_null().to_numpy() if has_nulls else np.zeros(series.len(), bool)
        members[f"{name}.{i}.nulls"] = np.packbits(nulls).tobytes()
        if spec["kind"] == "string":
            values = json.dumps(series.to_list()).encode()
        else:
            plain = series if spec["kind"] == "number" else series.to_physical()
            if has_nulls:
                plain = plain.fill_null(False if plain.dtype == pl.Boolean else 0)
            filled = plain.to_numpy()
            if filled.dtype.kind == "f":  # one NaN: its sign and payload are no input's content
                filled = np.where(np.isnan(filled), np.nan, filled)
            spec["numpy"] = filled.dtype.newbyteorder("<").str
            values = np.ascontiguousarray(filled, dtype=spec["numpy"]).tobytes()
        members[f"{name}.{i}.values"] = values
        columns.append([series.name, spec])
    return columns


def _decode_frame(columns: list[Any], name: str, archive: zipfile.ZipFile) -> pl.DataFrame:
    """The frame :func:`_encode_frame` kept."""
    out = []
    for i, (column, spec) in enumerate(columns):
        data = archive.read(f"{name}.{i}.values")
        if spec["kind"] == "string":
            series = pl.Series(str(column), json.loads(data), dtype=pl.String)
        else:
            values = np.frombuffer(data, dtype=np.dtype(spec["numpy"]))
            if spec["kind"] == "number":
                series = pl.Series(str(column), values, dtype=getattr(pl, spec["dtype"]))
            elif spec["kind"] == "datetime":
                series = pl.Series(str(column), values, dtype=pl.Int64).cast(
                    pl.Datetime(spec["unit"], spec["zone"])
                )
            elif spec["kind"] == "duration":
                series = pl.Series(str(column), values, dtype=pl.Int64).cast(
                    pl.Duration(spec["unit"])
                )
            elif spec["kind"] == "date":
                series = pl.Series(str(column), values, dtype=pl.Int32).cast(pl.Date)
            else:
                raise RecipeError(f"{name}.{column}: unknown column kind {spec['kind']!r}")
        nulls = np.unpackbits(np.frombuffer(archive.read(f"{name}.{i}.nulls"), np.uint8))
        where = np.flatnonzero(nulls[: series.len()])
        if where.size:
            series = series.scatter(where, None)
        out.append(series)
    return pl.DataFrame(out)


def _override(item: dict[str, Any]) -> Override:
    return Override(
        agent=str(item["agent"]),
        action=str(item["action"]),
        reason=str(item["reason"]),
        expires_at=parse_iso(item["expires_at"]),
        cap=None if item["cap"] is None else float(item["cap"]),
        created_by=str(item["created_by"]),
    )


def _persistence_blob(p: Persistence | None) -> dict[str, Any] | None:
    """Every field the allocation reads of ``p``, NaN kept (stdlib JSON writes it)."""
    if p is None:
        return None
    selection = p.selection
    return {
        "strength": p.strength,
        "mean_rho": p.mean_rho,
        "se": p.se,
        "z": p.z,
        "n_lags": p.n_lags,
        "selection": None
        if selection is None
        else {"rule": selection.rule, "t": dict(selection.t), "n_lags": selection.n_lags},
    }


def _persistence(blob: dict[str, Any] | None) -> Persistence | None:
    if blob is None:
        return None
    selection = blob["selection"]
    return Persistence(
        float(blob["strength"]),
        float(blob["mean_rho"]),
        float(blob["se"]),
        float(blob["z"]),
        int(blob["n_lags"]),
        selection=None
        if selection is None
        else RuleSelection(
            str(selection["rule"]),
            {str(k): float(v) for k, v in selection["t"].items()},
            int(selection["n_lags"]),
        ),
    )
