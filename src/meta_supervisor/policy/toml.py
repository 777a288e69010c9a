"""The policy as a TOML file: the one renderer (``meta-supervisor policy show --toml``), the
field table the views show, and the loader's counterpart (:func:`~meta_supervisor.policy.
model.load_policy` reads what :func:`render_toml` writes, to the same fingerprint)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

from annotated_types import Ge, Gt, Le, Lt

from meta_supervisor.policy.model import Policy

__all__ = ["policy_fields", "render_toml", "shown_value", "toml_value"]

#: Keys that a rendered file leaves commented out unless the policy set them explicitly.
_UNPINNED = frozenset({"profile"})


def _range(metadata: Sequence[Any]) -> str:
    low, high, low_open, high_open = "-inf", "inf", True, True
    for item in metadata:
        if isinstance(item, Ge):
            low, low_open = f"{item.ge:g}", False
        elif isinstance(item, Gt):
            low, low_open = f"{item.gt:g}", True
        elif isinstance(item, Le):
            high, high_open = f"{item.le:g}", False
        elif isinstance(item, Lt):
            high, high_open = f"{item.lt:g}", True
    return f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def policy_fields(policy: Policy | None = None) -> list[dict[str, Any]]:
    """Every policy field: ``name``, ``value``, ``default``, ``range`` and ``description``."""
    policy = policy or Policy()
    fields = []
    for name, info in type(policy).model_fields.items():
        annotation = info.annotation
        if annotation is bool:
            allowed = "true/false"
        elif isinstance(annotation, type) and issubclass(annotation, Enum):
            allowed = "one of " + ", ".join(str(m.value) for m in annotation)
        else:
            allowed = _range(info.metadata)
        fields.append(
            {
                "name": name,
                "value": _plain(getattr(policy, name)),
                "default": _plain(info.default),
                "range": allowed,
                "description": info.description or "",
            }
        )
    return fields


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def shown_value(value: Any) -> str:
    """A policy value as the views show it (``true``/``false`` for booleans, text unquoted)."""
    return toml_value(value).strip('"') if isinstance(value, bool) else str(value)


def render_toml(policy: Policy | None = None) -> str:
    """A complete, loadable policy file: every key with its description, default and range."""
    lines = [
        "# meta-supervisor policy (load with --config FILE; check with 'policy validate FILE').",
        "# Units: PnL in bps, durations in hours, weights as fractions of capital.",
        "[policy]",
    ]
    policy = policy or Policy()
    for f in policy_fields(policy):
        lines.append(
            f"# {f['description']}; default {shown_value(f['default'])}, range {f['range']}"
        )
        line = f"{f['name']} = {toml_value(f['value'])}"
        if f["name"] in _UNPINNED and f["name"] not in policy.model_fields_set:
            # Left to the default, the key stays commented out: the seed's own functions keep
            # the seed profile unless a policy file *chooses* one, so a rendered file must not.
            line = "# " + line
        lines.append(line)
    return "\n".join(lines) + "\n"
