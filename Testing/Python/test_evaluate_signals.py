"""``ctcf evaluate`` stopped by SIGTERM (to the process) or Ctrl-C (SIGINT to the process group) while its
workers are busy: it ends at once with one line, kills its workers and leaves no report or partial folder.

The cohort is large enough that one volume takes far longer than the time allowed for stopping, so a run
that waited for its running volumes (the old behaviour, about 40 s) fails the ``wait`` below.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from one_thread import ONE_THREAD_ENV

REPO = Path(__file__).resolve().parents[2]
STOP_LIMIT_S = 20  # a hang guard far above the couple of seconds a stop takes, far below one volume's run
pytestmark = pytest.mark.usefixtures("python_ctrl_c")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text(encoding="utf-8")
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _busy_workers(proc: subprocess.Popen, n: int) -> list[int]:
    """The pids of the ``n`` spawned workers once each has used CPU time (importing torch, then its volume).

    The pool queues the first volumes for the workers as they start, so from then on a stop that waits for the
    queued and running volumes takes at least a whole volume's run.
    """
    while True:
        workers = [
            c for c in _children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text(encoding="utf-8")
        ]
        if len(workers) == n:
            ticks = [
                int(Path(f"/proc/{w}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[11]) for w in workers
            ]
            if min(ticks) > 100:  # 1 s of CPU each (100 ticks/s): started, their first volumes already queued
                return workers
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)


def _evaluate(out: Path, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "CTCounterfactualLib.cli", "evaluate", "--out", str(out), "--positives", "2"]
    cmd += ["--negatives", "2", "--workers", "2", "--phantom-slices", "48", "--progress", "json"]
    return subprocess.Popen(
        cmd,
        **popen,
        cwd=REPO,
        env=ONE_THREAD_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def _interrupt_while_torch_loads(proc: subprocess.Popen) -> None:
    while "libtorch" not in Path(f"/proc/{proc.pid}/maps").read_text(encoding="utf-8"):  # torch's import has begun
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)


def test_ctrl_c_while_torch_loads_is_one_line(tmp_path):
    """Loading torch takes a second or more at start: a Ctrl-C then gets the same line as later (it gave a
    Python traceback, or a C++ ``terminate`` from inside torch's import, exit -2 / -6)."""
    proc = _evaluate(tmp_path / "report")
    try:
        _interrupt_while_torch_loads(proc)
        _, stderr = proc.communicate(timeout=STOP_LIMIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert (proc.returncode, stderr.splitlines()) == (130, ["ctcf: interrupted; no outputs were written"]), stderr
    assert [p.name for p in tmp_path.iterdir()] == []


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_evaluate_stops_at_once_on_a_signal(tmp_path, how):
    out = tmp_path / "report"
    proc = _evaluate(out)
    try:
        workers = _busy_workers(proc, 2)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: every process of the group gets it
        stdout, stderr = proc.communicate(timeout=STOP_LIMIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == ["ctcf: interrupted; no outputs were written"], stderr
    done = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    assert all(event["done"] == 0 for event in done if event["stage"] == "evaluate"), done  # no volume finished
    assert not any(_alive(w) for w in workers)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no partial folder beside it


def test_a_sigint_its_caller_ignores_stays_ignored_while_torch_loads(tmp_path):
    """Started with SIGINT ignored (a script's background job), ``ctcf`` does not end on one, as any Unix tool:
    the handler that ends a loading ``ctcf`` on Ctrl-C must not replace the ignore."""
    proc = _evaluate(tmp_path / "report", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        _interrupt_while_torch_loads(proc)
        workers = _busy_workers(proc, 2)  # it went on past loading, into the cohort
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert workers
