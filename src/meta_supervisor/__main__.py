"""``python -m meta_supervisor``: the same command line as ``meta-supervisor``."""

from meta_supervisor.cli.main import app

if __name__ == "__main__":
    app(prog_name="meta-supervisor")
