"""``meta-supervisor policy show | validate``: the policy, rendered and checked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from meta_supervisor.cli.common import (
    POLICY_VALIDATE_SCHEMA,
    Config,
    JsonOut,
    Root,
    console,
    emit_json,
    fail,
    load_policy_for,
    paths_for,
)
from meta_supervisor.policy.model import PolicyError, load_policy
from meta_supervisor.policy.toml import policy_fields, render_toml
from meta_supervisor.views.terminal import (
    policy_table,
)

policy_app = typer.Typer(help="Show, render and validate the policy (TOML).", no_args_is_help=True)


@policy_app.command("show")
def policy_show(
    config: Config = None,
    root: Root = None,
    toml: Annotated[
        bool,
        typer.Option("--toml", metavar="", help="Print a complete, commented policy file instead."),
    ] = False,
    json_out: JsonOut = False,
) -> None:
    """Every policy field: value, default, allowed range and description.

    Examples:

      meta-supervisor policy show

      meta-supervisor policy show --toml > policy.toml

      meta-supervisor policy show --config policy.toml --json
    """
    policy = load_policy_for(config, paths_for(None, root=root))
    if toml:
        sys.stdout.write(render_toml(policy))
    elif json_out:
        emit_json(
            {
                "schema": "meta-supervisor/policy/1",
                "fingerprint": policy.fingerprint(),
                "fields": policy_fields(policy),
            }
        )
    else:
        console.print(policy_table(policy))
        console.print(f"fingerprint {policy.fingerprint()}", highlight=False)


@policy_app.command("validate")
def policy_validate(
    file: Annotated[Path, typer.Argument(help="Policy TOML file to check.")],
    json_out: JsonOut = False,
) -> None:
    """Check a policy file; exit 2 naming the file and key at fault (with a did-you-mean).

    Examples:

      meta-supervisor policy validate policy.toml
    """
    try:
        policy = load_policy(file)
    except PolicyError as err:
        if json_out:
            emit_json(
                {
                    "schema": POLICY_VALIDATE_SCHEMA,
                    "ok": False,
                    "path": str(file),
                    "errors": str(err).splitlines(),
                }
            )
        raise fail(str(err)) from None
    changed = [f["name"] for f in policy_fields(policy) if f["value"] != f["default"]]
    if json_out:
        emit_json(
            {
                "schema": POLICY_VALIDATE_SCHEMA,
                "ok": True,
                "path": str(file),
                "changed": changed,
                "fingerprint": policy.fingerprint(),
            }
        )
        return
    console.print(
        f"[green]ok[/]: {file}: valid; {len(changed)} keys differ from the defaults"
        f"{': ' + ', '.join(changed) if changed else ''}; fingerprint {policy.fingerprint()}",
        highlight=False,
    )
