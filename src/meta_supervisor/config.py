"""Where things live. Defaults are the original system's paths, relative to the working directory.

=============================== ========================================= ==========================
setting (environment variable)  default                                   what
=============================== ========================================= ==========================
``META_SUPERVISOR_RECORDS``     ``alpha/reconciled.jsonl``                reconciled records
``META_SUPERVISOR_TELEMETRY``   ``telemetry/events.jsonl``                telemetry events
``META_SUPERVISOR_STATE_DIR``   ``meta_supervisor/state``                 allocation.json, history
``META_SUPERVISOR_POLICY``      (none: built-in defaults)                 policy TOML file
``META_SUPERVISOR_LEDGER``      ``meta_supervisor/ledger``                the embedded store
``META_SUPERVISOR_ROOT``        ``.`` (the working directory)             base of relative defaults
=============================== ========================================= ==========================

Relative defaults are resolved under ``META_SUPERVISOR_ROOT`` when it is set (e.g. the demo's
``demo-out``); explicit ``META_SUPERVISOR_*`` paths are taken as given.

``configure(...)`` sets them from Python for the seed's adapters (``compute_weights`` & co).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

__all__ = ["Paths", "configure", "current_paths", "reset"]


@dataclass(frozen=True)
class Paths:
    """Input files and the state directory."""

    records: Path = Path("alpha/reconciled.jsonl")
    telemetry: Path = Path("telemetry/events.jsonl")
    state_dir: Path = Path("meta_supervisor/state")
    policy: Path | None = None
    ledger: Path | None = Path("meta_supervisor/ledger")
    """The embedded store; ``None`` means "no store: read the raw files" (e.g. ``--records``)."""

    @property
    def allocation(self) -> Path:
        """The seed's plain ``{agent: weight}`` map."""
        return self.state_dir / "allocation.json"

    @property
    def decision(self) -> Path:
        """The latest full decision, with explanations."""
        return self.state_dir / "decision.json"

    @property
    def history(self) -> Path:
        """Append-only, hash-chained decisions."""
        return self.state_dir / "history.jsonl"

    @property
    def confidence(self) -> Path:
        """The seed's ``{agent: multiplier}`` map."""
        return self.state_dir / "confidence_multipliers.json"

    @property
    def overrides(self) -> Path:
        """Operator exclusions and caps."""
        return self.state_dir / "overrides.json"

    @property
    def engine(self) -> Path:
        """The incremental statistics of the last cycle on the store (see :mod:`.engine`)."""
        return self.state_dir / "engine.state"

    @property
    def persistence(self) -> Path:
        """The day sums and the learned value (the select profile's rule, the evidence
        profile's tilt strength; :mod:`.cycle.learned`)."""
        return self.state_dir / "persistence.state"

    @property
    def lock(self) -> Path:
        """Held while a cycle writes state."""
        return self.state_dir / ".lock"

    @classmethod
    def under(cls, root: str | Path) -> Paths:
        """The default layout under ``root`` (the original system's relative paths)."""
        root = Path(root)
        return cls(
            records=root / cls.records,
            telemetry=root / cls.telemetry,
            state_dir=root / cls.state_dir,
            ledger=root / "meta_supervisor" / "ledger",
        )

    @classmethod
    def from_env(cls) -> Paths:
        """Defaults (under ``META_SUPERVISOR_ROOT``) overridden by ``META_SUPERVISOR_*``."""
        env = os.environ
        base = cls.under(env.get("META_SUPERVISOR_ROOT", "."))
        policy = env.get("META_SUPERVISOR_POLICY")
        return cls(
            records=Path(env.get("META_SUPERVISOR_RECORDS", base.records)),
            telemetry=Path(env.get("META_SUPERVISOR_TELEMETRY", base.telemetry)),
            state_dir=Path(env.get("META_SUPERVISOR_STATE_DIR", base.state_dir)),
            policy=Path(policy) if policy else None,
            ledger=Path(env.get("META_SUPERVISOR_LEDGER", str(base.ledger))),
        )


_configured: Paths | None = None


def configure(**changes: str | Path | None) -> Paths:
    """Move the files the seed adapters read and write, e.g. ``configure(state_dir="/srv/ms")``."""
    global _configured
    base = current_paths()
    values: dict[str, Any] = {k: (Path(v) if v is not None else None) for k, v in changes.items()}
    _configured = replace(base, **values)
    return _configured


def reset() -> None:
    """Forget :func:`configure` (back to the environment and the defaults)."""
    global _configured
    _configured = None


def current_paths() -> Paths:
    """What :func:`configure` set, else the environment, else the defaults."""
    return _configured if _configured is not None else Paths.from_env()
