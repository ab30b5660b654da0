"""Stopping a worker pool at once on Ctrl-C or SIGTERM: workers never see SIGINT, the parent kills them.

The local executor (``jobs/executors.py``, used by ``ctcf batch`` and ``ctcf evaluate``) starts its worker
processes inside ``sigint_held()`` and runs ``ignore_sigint_in_worker`` first in each worker: a Ctrl-C in the
terminal reaches the whole process group, and the workers then print no ``KeyboardInterrupt`` traceback.
The parent waits for results in short slices (``WAIT_SLICE_S``) and calls ``kill_workers(pool)`` when
interrupted, instead of waiting for the running volumes.
"""

from __future__ import annotations

import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager

# The kernel may hand a process-directed SIGINT to any thread that does not block it (the pool's own threads,
# torch's); Python then runs the handler in the main thread only at its next bytecode, and a main thread asleep
# in a lock wait sleeps on until a volume finishes (measured: > 60 s). Waking every slice bounds that delay.
WAIT_SLICE_S = 0.25


@contextmanager
def sigint_held():
    """Block SIGINT in this thread while worker processes start: they inherit the block (kept across exec) until
    ``ignore_sigint_in_worker`` runs, and a Ctrl-C that arrives meanwhile is delivered here when the block ends
    (not lost, as it would be with SIGINT ignored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a pending Ctrl-C is raised here


def ignore_sigint_in_worker() -> None:
    """In a worker, before anything else: ignore Ctrl-C (the parent stops the pool) and drop one already pending."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's worker processes now (SIGKILL), drop the queued tasks and reap the workers."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)
