"""``meta-supervisor serve``: the scheduler, the HTTP API, metrics, alerts and the dashboard.

Needs the ``serve`` extra (``pip install 'meta-supervisor[serve]'``). Guide: docs/SERVICE.md.
Exit codes: 0 stopped (Ctrl-C or SIGTERM); 2 bad settings (the flag, variable or key named).
"""

from __future__ import annotations

import logging
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from meta_supervisor.config import Paths

__all__ = ["serve"]


def _paths(root: Path | None, state_dir: Path | None, config: Path | None) -> Paths:
    base = Paths.from_env()
    if root is not None:
        base = replace(Paths.under(root), policy=base.policy)
    return replace(base, state_dir=state_dir or base.state_dir, policy=config or base.policy)


def serve(
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Base of the default layout, e.g. the demo's output directory "
            "(default: META_SUPERVISOR_ROOT, else the working directory).",
        ),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="State directory (default: ROOT layout).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Policy TOML ([policy] for cycles, [service] for these settings; default: "
            "META_SUPERVISOR_POLICY).",
        ),
    ] = None,
    host: Annotated[
        str | None, typer.Option("--host", help="Address to bind (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="TCP port (default 8750; 0: any free port).")
    ] = None,
    tokens: Annotated[
        Path | None,
        typer.Option("--tokens", help="Tokens file (JSON, hashed; META_SUPERVISOR_TOKENS)."),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option("--every", help="Run a cycle every PERIOD, aligned to the clock: 15m, 1h."),
    ] = None,
    cron: Annotated[
        str | None, typer.Option("--cron", help="Run a cycle on a cron expression (UTC).")
    ] = None,
    read_open: Annotated[
        bool | None,
        typer.Option(
            "--read-open/--read-closed", help="Serve read endpoints without a token (default no)."
        ),
    ] = None,
    max_body: Annotated[
        int | None, typer.Option("--max-body", help="Largest upload in bytes (default 16 MiB).")
    ] = None,
    max_age: Annotated[
        str | None,
        typer.Option("--max-age", help="/readyz fails past this decision age (default 2 periods)."),
    ] = None,
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="Slack-compatible webhook URL for alerts.")
    ] = None,
) -> None:
    """Run the service: scheduled cycles, the HTTP API, /metrics and the dashboard at /.

    Reads and writes the same state as the other commands ('allocate' from a shell and the
    scheduler share the state lock). Prints the address it serves on, then logs to stderr.

    Examples:

      meta-supervisor serve --root demo-out --read-open

      meta-supervisor serve --every 1h --tokens /etc/meta-supervisor/tokens.json
    """
    try:
        import uvicorn

        from meta_supervisor.service import SettingsError, create_app, resolve
        from meta_supervisor.service.tokens import TokenError
    except ImportError as err:
        typer.echo(
            f"error: serve needs the 'serve' extra ({err.name} is missing): "
            "pip install 'meta-supervisor[serve]'",
            err=True,
        )
        raise typer.Exit(2) from None
    paths = _paths(root, state_dir, config)
    try:
        settings = resolve(
            paths,
            policy_file=paths.policy,
            host=host,
            port=port,
            tokens=tokens,
            every=every,
            cron=cron,
            read_open=read_open,
            max_body_bytes=max_body,
            max_age=max_age,
            webhook_url=webhook,
        )
        app = create_app(settings)
    except (SettingsError, TokenError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as err:
        typer.echo(f"error: cannot bind {settings.host}:{settings.port}: {err}", err=True)
        raise typer.Exit(2) from None
    bound = sock.getsockname()[1]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    schedule = settings.schedule.describe() if settings.schedule else "no schedule"
    where = "[" + settings.host + "]" if ":" in settings.host else settings.host
    sys.stdout.write(
        f"meta-supervisor serving {paths.state_dir} on http://{where}:{bound}/ ({schedule}; "
        f"reads {'open' if settings.read_open else 'need a token'})\n"
    )
    sys.stdout.flush()
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    )
    server.run(sockets=[sock])
