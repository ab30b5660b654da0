"""The ``--executor`` options of ``ctcf batch`` and ``ctcf evaluate``: a local process pool or Ray."""

from __future__ import annotations

import argparse

from CTCounterfactualLib.jobs.executors import ExecutorSpec
from CTCounterfactualLib.params import DEFAULT_EXECUTOR, EXECUTORS


def add_executor_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the volumes run")
    g.add_argument(
        "--executor",
        choices=EXECUTORS,
        default=DEFAULT_EXECUTOR,
        help="local: a process pool on this machine (default); ray: Ray actors, on a local Ray or a cluster",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        help="workers, each loading the models once (default: as many as the CPUs, or Ray's GPUs, allow)",
    )
    g.add_argument(
        "--ray-address",
        help="join this Ray cluster: 'auto' (the one `ray start` made on this node) or HOST:PORT "
        "(default: start a local Ray for the run)",
    )
    g.add_argument("--cpus-per-worker", type=float, default=1.0, help="CPUs (torch threads) per worker (default 1)")
    g.add_argument(
        "--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray worker (default 0; 1 = one worker per GPU)"
    )


def executor_spec(args: argparse.Namespace) -> ExecutorSpec:
    return ExecutorSpec(
        kind=args.executor,
        workers=args.workers,
        ray_address=args.ray_address,
        cpus_per_worker=args.cpus_per_worker,
        gpus_per_worker=args.gpus_per_worker,
    )
