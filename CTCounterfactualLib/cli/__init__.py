"""The ``ctcf`` entry point: loads the command line (``cli/app.py``, which imports torch) with Ctrl-C deferred.

Loading torch takes a second or more; a Ctrl-C in that time must end like one at any later moment (one line,
exit 130), not with a Python traceback or a C++ ``terminate`` from inside torch's import. Nothing has been
written yet then, so it ends the process on the spot. A SIGINT that the caller ignores (a script's background
job, ``nohup``-style launchers) stays ignored, as Python itself and every Unix tool leave it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence

INTERRUPTED = "ctcf: interrupted; no outputs were written"
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ctcf`` with ``argv`` (default: the command line); returns the exit code."""
    defer = (
        threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    )
    previous = signal.signal(signal.SIGINT, _interrupted_while_loading) if defer else None
    try:
        from CTCounterfactualLib.cli.app import main as run
    finally:
        if defer:
            signal.signal(signal.SIGINT, previous)
    return run(argv)


def _interrupted_while_loading(signum, frame) -> None:
    print(INTERRUPTED, file=sys.stderr, flush=True)
    os._exit(EXIT_INTERRUPTED)


def build_parser():
    """The ``ctcf`` argument parser (see ``cli/app.py``)."""
    from CTCounterfactualLib.cli.app import build_parser as build

    return build()
