"""The Slicer module's Generate on the demo CT, twice (another chunk size the second time): a new engine process per
run (``ctcf explain``, how the module ran before) against its warm engine (``ctcf serve``, started by the first
run and kept), side by side.

The runs go through the module's own code (``ExplainRequest``, ``explain_arguments``, ``EngineProcess``,
``EngineServer`` from ``CTCounterfactual/CTCounterfactualScene``) with the panel's defaults (scan, the reference
search, the lambda sweep kept), on the bundled demo chest CT with its simulated effusion, written as the module
writes its input. Order: new process A, new process B, warm A (its engine starting), warm B, so a load that drifts
weighs on both. Printed: wall time of each run from the click to the last answer (engine start-up included where
there is one), the engine's own stage timings (summary.json), and what the warm engine reused.

    .venv/bin/python bench/bench_warm_engine.py                  # chunk 8, then chunk 10
    .venv/bin/python bench/bench_warm_engine.py --chunks 4 6      # other chunk sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "CTCounterfactual")]

from CTCounterfactualScene.engine_process import (  # noqa: E402
    EngineProcess,
    ExplainRequest,
    engine_environment,
    explain_arguments,
    explain_command,
    serve_command,
)
from CTCounterfactualScene.engine_server import EngineServer  # noqa: E402

from CTCounterfactualLib.data.volume_io import write_volume  # noqa: E402
from CTCounterfactualLib.jobs.demo import make_demo_input  # noqa: E402
from CTCounterfactualLib.protocol import SUMMARY_JSON  # noqa: E402


def _request(ct: Path, out: Path, chunk: int) -> ExplainRequest:
    return ExplainRequest(str(ct), str(out), "demo-vqgan", "demo-effusion", "pleural effusion", chunk_size=chunk)


def _wait(run, limit_s: float = 3600) -> None:
    deadline = time.monotonic() + limit_s
    while run.state == "running" or (hasattr(run, "stopped") and not run.stopped):
        if time.monotonic() > deadline:
            raise RuntimeError("a run took longer than the limit")
        run.poll()
        time.sleep(0.05)
    if run.state != "done":
        raise RuntimeError(f"the run failed: {run.error}; {run.log[-3:]}")


def _stages(out: Path) -> str:
    timings = json.loads((out / SUMMARY_JSON).read_text(encoding="utf-8"))["timings_s"]
    return ", ".join(f"{k} {v:.1f}" for k, v in timings.items() if v >= 0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs=2, default=(8, 10), help="chunk size of run A and of run B")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    demo = make_demo_input()
    ct = work / "input.nrrd"
    write_volume(demo.hu, demo.geometry, ct, compress=False)  # what the module writes for the engine
    env = engine_environment(dict(os.environ), REPO, REPO / "CTCounterfactual")
    rows = []
    load = os.getloadavg()
    for label, chunk in (("A", args.chunks[0]), ("B", args.chunks[1])):
        out = work / f"cold-{label}"
        t0 = time.perf_counter()
        process = EngineProcess(explain_command(_request(ct, out, chunk)), env=env)
        _wait(process)
        rows.append((f"new process per run, {label} (chunk {chunk})", time.perf_counter() - t0, _stages(out), "-"))
    server = EngineServer(serve_command(), env)
    try:
        for label, chunk in (("A", args.chunks[0]), ("B", args.chunks[1])):
            out = work / f"warm-{label}"
            t0 = time.perf_counter()
            run = server.submit(explain_arguments(_request(ct, out, chunk)))
            _wait(run)
            reused = ", ".join(run.reused) or "nothing (engine started)"
            rows.append((f"warm engine, {label} (chunk {chunk})", time.perf_counter() - t0, _stages(out), reused))
    finally:
        server.stop()
    print(f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}")
    print(
        f"- load average before: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}; after: "
        + " / ".join(f"{v:.2f}" for v in os.getloadavg())
    )
    print(
        f"- demo CT {demo.hu.shape[0]} x {demo.hu.shape[1]} x {demo.hu.shape[2]}, demo-vqgan + demo-effusion, scan,"
        " the panel's defaults (sweep kept)\n"
    )
    print("| run | wall time (s) | engine stages (s) | reused |")
    print("|---|---|---|---|")
    for name, seconds, stages, reused in rows:
        print(f"| {name} | {seconds:.1f} | {stages} | {reused} |")


if __name__ == "__main__":
    main()
