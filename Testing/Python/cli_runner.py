"""Running ``ctcf`` in the test process."""

from __future__ import annotations

import signal

from CTCounterfactualLib import cli


def run_main(argv: list) -> int:
    """``cli.main`` in-process; restores the SIGTERM handler it installs."""
    previous = signal.getsignal(signal.SIGTERM)
    try:
        return cli.main([str(a) for a in argv])
    finally:
        signal.signal(signal.SIGTERM, previous)
