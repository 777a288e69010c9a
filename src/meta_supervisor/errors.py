"""Every error the package raises on purpose, each class with the exit code the CLI uses.

The command line has one handler (:mod:`meta_supervisor.cli.main`): it prints the message,
one ``error:`` line per line, and exits with :attr:`MetaSupervisorError.exit_code`:

== ======================================================================================
1  :class:`ProblemFound`: the command ran but found a problem (a state file that does not
   verify or cannot be read, no decision yet, a ledger that cannot be read)
2  :class:`BadInput`: bad usage or input (an option, a file, a policy key, an override)
3  :class:`Busy`: another process holds a lock the command needs; retry or wait
== ======================================================================================

The modules that raise them subclass these (``PolicyError``, ``OverrideError``,
``LockBusy``, ...), so a library caller can catch one family, or all of them.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["BadInput", "Busy", "MetaSupervisorError", "ProblemFound"]


class MetaSupervisorError(Exception):
    """Base of every deliberate error; ``hint`` (when set) says what to do next."""

    exit_code: ClassVar[int] = 2
    hint: ClassVar[str | None] = None


class ProblemFound(MetaSupervisorError):
    """The command ran and found a problem (exit 1)."""

    exit_code: ClassVar[int] = 1


class BadInput(MetaSupervisorError, ValueError):
    """Bad usage or input, naming the file, line, key or option at fault (exit 2)."""

    exit_code: ClassVar[int] = 2


class Busy(MetaSupervisorError, RuntimeError):
    """Another process holds a lock this one needs (exit 3)."""

    exit_code: ClassVar[int] = 3
