"""Stopping a worker pool at once on Ctrl-C or SIGTERM: workers never see SIGINT, the parent kills them.

The local executor (``jobs/executors.py``, used by ``ctcf batch`` and ``ctcf evaluate``) starts its worker
processes inside ``workers_ignore_sigint()`` (a Ctrl-C in the terminal reaches the whole process group; the
workers then print no ``KeyboardInterrupt`` traceback) and calls ``kill_workers(pool)`` when the parent is
interrupted, instead of waiting for the running volumes.
"""

from __future__ import annotations

import signal
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager


@contextmanager
def workers_ignore_sigint():
    """Processes started inside inherit SIGINT as ignored (kept across exec, so spawned interpreters too)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's worker processes now (SIGKILL), drop the queued tasks and reap the workers."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)
