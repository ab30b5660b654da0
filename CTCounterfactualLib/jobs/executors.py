"""Where the volumes of a batch run: a local process pool or Ray actors, each worker loading the models once.

Both executors take a *worker factory*: a picklable callable that, called once inside a worker, loads what
the worker needs (the models) and returns the function that runs one task. ``run_tasks`` yields
``(task index, result)`` as tasks finish. Task functions return their failures as results, so an
exception reaching here means a worker was lost: the local pool then stops the run (what finished is kept),
while Ray restarts the actor and retries its task (``max_restarts``/``max_task_retries``).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.jobs.stop import WAIT_SLICE_S, ignore_sigint_in_worker, kill_workers, sigint_held
from CTCounterfactualLib.params import DEFAULT_EXECUTOR, EXECUTORS

DEFAULT_RETRIES = 2  # Ray: restarts of a lost worker and retries of the task it was running

Task = Any
TaskFunction = Callable[[Task], Any]
WorkerFactory = Callable[[], TaskFunction]


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run: ``kind`` local or ray; ``workers`` None = as many as the CPUs (or GPUs) allow."""

    kind: str = DEFAULT_EXECUTOR
    workers: int | None = None
    ray_address: str | None = None  # None: start a local Ray for the run; 'auto' or HOST:PORT: join a cluster
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise CTCFError(f"unknown executor {self.kind!r}; use one of {', '.join(EXECUTORS)}")
        if self.workers is not None and self.workers < 1:
            raise CTCFError(f"--workers must be at least 1 (got {self.workers})")
        if self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise CTCFError("--cpus-per-worker must be above 0 and --gpus-per-worker at least 0")
        if self.kind == "local" and (self.ray_address or self.gpus_per_worker):
            raise CTCFError("--ray-address and --gpus-per-worker need --executor ray")

    def threads(self) -> int:
        """torch threads per worker: its CPU share, at least one."""
        return max(1, int(self.cpus_per_worker))


def run_tasks(factory: WorkerFactory, tasks: list[Task], spec: ExecutorSpec) -> Iterator[tuple[int, Any]]:
    """Run every task on ``spec``'s executor; yields (index into ``tasks``, result) in finishing order.

    Close the generator (``contextlib.closing``) when stopping early: that stops the workers.
    """
    if tasks:
        yield from (_run_ray if spec.kind == "ray" else _run_local)(factory, tasks, spec)


# ---- local: a process pool ----------------------------------------------------------------------------

_WORKER: TaskFunction | None = None


def _init_local(factory: WorkerFactory) -> None:
    global _WORKER
    ignore_sigint_in_worker()
    _WORKER = factory()


def _run_in_worker(index: int, task: Task) -> tuple[int, Any]:
    assert _WORKER is not None, "worker not initialised"
    return index, _WORKER(task)


def local_workers(spec: ExecutorSpec, n_tasks: int) -> int:
    cpus = os.cpu_count() or 1
    wanted = spec.workers if spec.workers is not None else max(1, int(cpus // spec.cpus_per_worker))
    return max(1, min(wanted, n_tasks))


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def _thread_env(threads: int):
    """Thread-pool sizes for worker processes started inside the block (as Ray sets them for its workers): the
    native libraries read them once at start-up, before any code of ours could call ``torch.set_num_threads``."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run_local(factory: WorkerFactory, tasks: list[Task], spec: ExecutorSpec) -> Iterator[tuple[int, Any]]:
    workers = local_workers(spec, len(tasks))
    if workers == 1:  # in this process: no start-up cost, and Ctrl-C needs no pool to unwind
        run = factory()
        for i, task in enumerate(tasks):
            yield i, run(task)
        return
    # spawn: workers start clean (no copied torch thread pools or half-held locks from this process)
    ctx = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_local, initargs=(factory,))
    try:
        # the workers start during the submits and inherit both: thread counts, and SIGINT held until they ignore
        # it (a Ctrl-C reaches the whole process group; this process stops them instead, without their tracebacks)
        with _thread_env(spec.threads()), sigint_held():
            pending = {pool.submit(_run_in_worker, i, task) for i, task in enumerate(tasks)}
        while pending:
            finished, pending = wait(pending, timeout=WAIT_SLICE_S, return_when=FIRST_COMPLETED)
            for fut in finished:
                try:
                    yield fut.result()
                except BrokenProcessPool as e:  # killed, out of memory, or the models did not load
                    raise CTCFError(
                        f"a worker process died ({e}); the volumes finished so far are kept - run the same "
                        "command again to go on, or use --executor ray, which retries lost workers"
                    ) from None
    except BaseException:  # Ctrl-C, SIGTERM or the caller stopped: stop the volumes in flight too, now
        kill_workers(pool)  # (and nothing left to wait for after it)
        raise
    else:
        pool.shutdown(wait=True, cancel_futures=True)


# ---- ray: one long-lived actor per slot ----------------------------------------------------------------


class _RayWorker:
    """A Ray actor: loads the models once (the factory), then runs tasks."""

    def __init__(self, factory: WorkerFactory) -> None:
        self.run_task = factory()

    def run(self, index: int, task: Task) -> tuple[int, Any]:
        return index, self.run_task(task)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise CTCFError(
            "--executor ray needs the ray package: pip install 'ctcounterfactual[ray]' (or pip install ray)"
        ) from None
    return ray


def _start_ray(ray, spec: ExecutorSpec, n_tasks: int) -> bool:
    """Join the cluster at ``spec.ray_address`` or start a local Ray sized for the run; True if started here."""
    if ray.is_initialized():  # the caller's session (a notebook, the tests): use it as it is
        return False
    if spec.ray_address:
        try:
            ray.init(address=spec.ray_address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CTCFError(f"cannot join the Ray cluster at {spec.ray_address}: {first}") from None
        return True
    workers = local_workers(spec, n_tasks)
    ray.init(**local_ray_options(max(1, int(round(workers * spec.cpus_per_worker)))))
    return True


def local_ray_options(num_cpus: int) -> dict:
    """``ray.init`` keywords for a local Ray of ``num_cpus`` CPUs: no dashboard, quiet, this engine on its path."""
    # the package's folder on the workers' path, so they import this very engine (not another install of it)
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return {
        "num_cpus": num_cpus,
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": "ERROR",
        "runtime_env": {"env_vars": {"PYTHONPATH": path}},
    }


def ray_workers(ray, spec: ExecutorSpec, n_tasks: int) -> int:
    """``spec.workers``, else as many as the cluster's CPUs (or GPUs, with --gpus-per-worker) hold."""
    if spec.workers is not None:
        return max(1, min(spec.workers, n_tasks))
    res = ray.cluster_resources()
    fits = int(res.get("CPU", 1) // spec.cpus_per_worker)
    if spec.gpus_per_worker:
        gpus = res.get("GPU", 0)
        if gpus < spec.gpus_per_worker:
            raise CTCFError(f"--gpus-per-worker {spec.gpus_per_worker:g} but the Ray cluster has {gpus:g} GPU(s)")
        fits = min(fits, int(gpus // spec.gpus_per_worker))
    return max(1, min(fits, n_tasks))


def _run_ray(factory: WorkerFactory, tasks: list[Task], spec: ExecutorSpec) -> Iterator[tuple[int, Any]]:
    ray = _import_ray()
    from ray.util import ActorPool

    started = _start_ray(ray, spec, len(tasks))
    actors = []
    try:
        actor_class = ray.remote(_RayWorker).options(
            num_cpus=spec.cpus_per_worker,
            num_gpus=spec.gpus_per_worker,
            max_restarts=spec.retries,
            max_task_retries=spec.retries,
        )
        actors = [actor_class.remote(factory) for _ in range(ray_workers(ray, spec, len(tasks)))]
        pool = ActorPool(actors)
        try:
            yield from pool.map_unordered(lambda actor, item: actor.run.remote(*item), list(enumerate(tasks)))
        except ray.exceptions.RayError as e:  # retries used up, or the cluster went away
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CTCFError(
                f"a Ray worker was lost {spec.retries + 1} times ({first}); the volumes finished so far are kept - "
                "run the same command again to go on"
            ) from None
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
