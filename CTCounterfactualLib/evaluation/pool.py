"""Runs the volumes on a process pool (or in this process for one worker), in cohort order."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.evaluation.cohort import CohortItem
from CTCounterfactualLib.evaluation.settings import EvalSettings
from CTCounterfactualLib.evaluation.stop import kill_workers, workers_ignore_sigint
from CTCounterfactualLib.evaluation.volume_task import init_worker, run_task

Task = tuple[CohortItem, EvalSettings, bool]  # item, its settings, keep figure slices
Report = Callable[[int, int, str], None]


def default_workers(n_volumes: int) -> int:
    return max(1, min(os.cpu_count() or 1, n_volumes))


def _check(result: dict) -> dict:
    if "error" in result:
        raise CTCFError(f"volume {result['name']} failed: {result['error']}")
    return result


def run_tasks(tasks: list[Task], workers: int, report: Report) -> list[dict]:
    """One result dict per task, in task order; the first failure stops the run with its one-line error."""
    results: list[dict | None] = [None] * len(tasks)
    if workers <= 1:
        init_worker()
        for i, task in enumerate(tasks):
            results[i] = _check(run_task(*task))
            report(i + 1, len(tasks), f"{task[0].name} done")
        return results
    # spawn: workers start clean (no copied torch thread pools or half-held locks from this process)
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker)
    try:
        with workers_ignore_sigint():  # the workers start on the first submit
            pending = {pool.submit(run_task, *task): i for i, task in enumerate(tasks)}
        done_count = 0
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                try:
                    result = fut.result()
                except BrokenProcessPool as e:  # a worker died (killed, out of memory) or could not load the models
                    raise CTCFError(f"volume {tasks[i][0].name} failed: a worker process died ({e})") from None
                results[i] = _check(result)
                done_count += 1
                report(done_count, len(tasks), f"{tasks[i][0].name} done")
    except BaseException:  # Ctrl-C, SIGTERM or a failed volume: stop now, not after the running volumes
        kill_workers(pool)
        raise
    pool.shutdown(wait=True)
    return results
