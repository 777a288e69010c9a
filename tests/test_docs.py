"""The docs hold: every command in README.md and docs/CLI.md runs, in order, as written.

Commands are read from the ``bash`` code blocks (a trailing ``\\`` continues a line; ``#``
starts a comment). ``meta-supervisor ...`` and ``./dev cli ...`` run as ``python -m
meta_supervisor ...`` and ``./dev demo`` as ``python -m meta_supervisor demo``, in a fresh
working directory, one after another (later commands read what earlier ones wrote, as a reader
following the page would). Each must exit 0 without a traceback; ``> FILE`` must leave a
non-empty file. Commands that install packages, run this suite or take minutes are listed in
:data:`NOT_RUN` with the reason, so a new command in the docs must be run here or classified.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = (ROOT / "README.md", ROOT / "docs" / "CLI.md")

#: Commands the docs show that this test does not run, by prefix, with the reason.
NOT_RUN = {
    "./dev test": "runs this suite",
    "./dev bench": "the benchmarks take minutes (benchmarks/README.md)",
    "./dev serve": "starts a long-running server (tested in tests/service)",
    ".venv/bin/pip install": "installs packages from the network",
    ".venv/bin/python docs/backtest_table.py": "needs a sweep's output (test_tables.py)",
    "meta-supervisor sweep": "a grid of backtests on Ray (minutes; tests/research/test_sweep.py)",
    "./dev cli serve": "starts a long-running server (tested in tests/service)",
    "meta-supervisor serve": "starts a long-running server (tested in tests/service)",
    "meta-supervisor supersede": "only for a wrong decision (tests/cycle/test_supersede.py)",
}


def bash_commands(text: str) -> list[str]:
    """The commands of every ``bash`` fenced block of a Markdown text, in order."""
    commands: list[str] = []
    language: str | None = None
    pending = ""
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language not in ("bash", "sh"):
            continue
        code = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if code.endswith("\\"):
            pending += code[:-1].strip() + " "
            continue
        command = (pending + code.strip()).strip()
        pending = ""
        if command:
            commands.append(command)
    return commands


def _documented() -> list[tuple[str, str]]:
    return [(doc.name, c) for doc in DOCS for c in bash_commands(doc.read_text(encoding="utf-8"))]


def _argv(command: str) -> tuple[list[str], str | None]:
    """``python -m meta_supervisor`` argv for a documented command, and its ``> FILE``."""
    out = None
    if ">" in command:
        command, out = (part.strip() for part in command.rsplit(">", 1))
    words = shlex.split(command)
    if words[:2] == ["./dev", "cli"]:
        words = words[2:]
    elif words[:2] == ["./dev", "demo"]:
        words = ["demo", *words[2:]]
    elif words[0] == "meta-supervisor":
        words = words[1:]
    else:
        raise AssertionError(f"not a meta-supervisor command: {command!r}")
    return [sys.executable, "-m", "meta_supervisor", *words], out


def test_the_reader_finds_commands_in_fences_only():
    text = "run `meta-supervisor x` inline\n```bash\na \\\n  b  # c\n# d\n```\n```\nno\n```\n"
    assert bash_commands(text) == ["a b"]


def test_every_documented_command_is_run_or_classified():
    unknown = [
        (doc, c)
        for doc, c in _documented()
        if not c.startswith(("meta-supervisor", "./dev cli", "./dev demo"))
        and not c.startswith(tuple(NOT_RUN))
    ]
    assert not unknown, f"commands in the docs this test neither runs nor classifies: {unknown}"


@pytest.mark.slow
def test_every_documented_command_runs_as_written(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("META_SUPERVISOR")}
    env["COLUMNS"] = "120"
    ran = 0
    for doc, command in _documented():
        if command.startswith(tuple(NOT_RUN)):
            continue
        argv, out = _argv(command)
        done = subprocess.run(
            argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        where = f"{doc}: {command}"
        assert done.returncode == 0, f"{where}\nexit {done.returncode}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr, f"{where}\n{done.stderr[-2000:]}"
        if out is not None:
            (tmp_path / out).write_text(done.stdout, encoding="utf-8")
            assert done.stdout.strip(), f"{where}: wrote an empty {out}"
        ran += 1
    assert ran >= 15  # the walkthrough itself, not just a couple of lines
