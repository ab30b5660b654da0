"""One torch thread for the tests' own work and for the ``ctcf`` subprocesses they start.

On a shared 2-core machine, OpenMP threads that wait on a busy core spin and make these tiny jobs tens of
times slower (several subprocesses run at once). Results do not depend on the thread count.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch in this process on one thread inside the block; the previous count restored after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
