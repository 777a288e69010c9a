"""Run one benchmark case once, in this (fresh) process, and print its result as JSON.

``python -m benchmarks.child CASE N_RECORDS [OPTIONS_JSON]``; the parent reads the last line.
"""

from __future__ import annotations

import json
import sys

from benchmarks.cases import CASES
from benchmarks.data import LedgerSpec


def main(argv: list[str]) -> None:
    """Entry point: ``argv = [case, n_records, options_json?]``."""
    case, n_records = argv[0], int(argv[1])
    options = json.loads(argv[2]) if len(argv) > 2 else {}
    result = CASES[case](LedgerSpec(n_records=n_records), options)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
