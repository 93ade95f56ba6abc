"""The console entry point. Ctrl-C while a command's modules still load (the first half
second) is one line and exit 130, as it is once the command runs (:func:`audiodup.cli.main`),
never a traceback."""

from __future__ import annotations

import importlib
import sys


def main() -> None:
    try:
        run = importlib.import_module("audiodup.cli").main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(130) from None
    run()
