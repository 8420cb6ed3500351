"""The ``boxloop`` command's entry point: Ctrl-C however early (while the command's modules
load) ends with one line and exit code 130, not a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as run

        run()
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
