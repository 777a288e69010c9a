"""The ``meta-supervisor`` command line (Typer + rich): one module per command group.

Nothing else in the package imports the CLI; it is the only importer of
:mod:`meta_supervisor.research`.
"""

from meta_supervisor.cli.main import app

__all__ = ["app"]
