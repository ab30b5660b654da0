"""The ``ctcf`` entry point: loads the command line (``cli/app.py``) and then torch with Ctrl-C deferred.

Loading torch takes a second or more; a Ctrl-C in that time must end like one at any later moment (one line,
exit 130), not with a Python traceback or a C++ ``terminate`` from inside torch's import. Nothing has been
written yet then, so it ends the process on the spot. A SIGINT that the caller ignores (a script's background
job, ``nohup``-style launchers) stays ignored, as Python itself and every Unix tool leave it. torch is loaded
only by the commands that run models (``app.main``), so ``ctcf --help`` and ``ctcf models list`` answer at once.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

INTERRUPTED = "ctcf: interrupted; no outputs were written"
EXIT_INTERRUPTED = 130


@contextmanager
def ctrl_c_ends_loading() -> Iterator[None]:
    """Inside the block (imports, nothing written yet) a Ctrl-C ends the process at once with the one line."""
    defer = (
        threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    )
    previous = signal.signal(signal.SIGINT, _interrupted_while_loading) if defer else None
    try:
        yield
    finally:
        if defer:
            signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ctcf`` with ``argv`` (default: the command line); returns the exit code."""
    with ctrl_c_ends_loading():
        from CTCounterfactualLib.cli.app import main as run
    return run(argv)


def _interrupted_while_loading(signum, frame) -> None:
    print(INTERRUPTED, file=sys.stderr, flush=True)
    os._exit(EXIT_INTERRUPTED)


def build_parser():
    """The ``ctcf`` argument parser (see ``cli/app.py``)."""
    from CTCounterfactualLib.cli.app import build_parser as build

    return build()
