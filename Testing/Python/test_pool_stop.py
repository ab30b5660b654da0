"""The local worker pool stops at once when interrupted, whichever thread of the process the kernel gave the
Ctrl-C to, and kills its workers; a worker never sees the Ctrl-C."""

from __future__ import annotations

import signal
import threading
import time
from contextlib import closing

import pytest

from CTCounterfactualLib.jobs.executors import ExecutorSpec, run_tasks

SLEEP_S = 60.0  # each task: far longer than a stop may take
pytestmark = pytest.mark.usefixtures("python_ctrl_c")


class SleepFactory:
    """A worker factory (picklable) whose task sleeps for the given seconds and returns the worker's SIGINT state."""

    def __call__(self):
        return _sleep


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return str(signal.getsignal(signal.SIGINT))


def _interrupt_from_another_thread(after_s: float) -> threading.Thread:
    """A thread that, after ``after_s``, takes a SIGINT itself: as when the kernel hands a process-directed Ctrl-C
    to some thread other than the main one (it may pick any thread that does not block the signal)."""

    def run():
        time.sleep(after_s)
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_ctrl_c_taken_by_another_thread_stops_the_pool_at_once():
    spec = ExecutorSpec(workers=2)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), closing(run_tasks(SleepFactory(), [SLEEP_S] * 4, spec)) as results:
        _interrupt_from_another_thread(3.0)
        next(results)
    stopped = time.monotonic() - started
    assert stopped < SLEEP_S / 2, f"the pool waited for its tasks ({stopped:.1f} s)"


def test_workers_ignore_ctrl_c_and_the_pool_still_finishes():
    results = dict(run_tasks(SleepFactory(), [0.1, 0.1], ExecutorSpec(workers=2)))
    assert sorted(results) == [0, 1]
    assert set(results.values()) == {str(signal.SIG_IGN)}  # the parent stops them; they print no traceback
