"""The panel's Download: a separate process that downloads catalog models with JSON progress."""

from __future__ import annotations

import os
import sys
import time

from CTCounterfactualScene.download_job import PER_MILLE, download_command, download_progress
from CTCounterfactualScene.engine_process import EngineProcess, engine_environment
from CTCounterfactualScene.model_choices import model_choices

pytest_plugins = ["http_fixture", "served_catalog"]


def _env() -> dict[str, str]:
    return engine_environment(dict(os.environ))  # carries $CTCF_CATALOG / $CTCF_CACHE_DIR set by `served`


def test_download_job_reports_progress_and_changes_the_state(served):
    before = {c.name: c.state for c in model_choices("autoencoder")}
    assert before["tiny-vqgan"] == "not downloaded"
    proc = EngineProcess(download_command(["tiny-vqgan"], sys.executable), env=_env())
    events = []
    deadline = time.monotonic() + 120
    while proc.state == "running" and time.monotonic() < deadline:  # as the panel's QTimer does
        events += proc.poll()
        time.sleep(0.05)
    assert proc.state == "done", proc.log
    ckpt = next(name for name in served.data if name.endswith(".ckpt"))
    assert served.cached("tiny-vqgan", ckpt).read_bytes() == served.data[ckpt]
    steps = [(e["done"], e["total"]) for e in events if e["stage"] == "download" and e["message"].startswith(ckpt)]
    assert steps and steps[-1] == (PER_MILLE, PER_MILLE) and steps == sorted(steps)
    size_mib = f"of {len(served.data[ckpt]) / 2**20:.1f} MiB"
    assert all(e["message"].endswith(size_mib) for e in events if e["message"].startswith(ckpt + ":"))
    assert events[-1]["stage"] == "done"
    after = {c.name: c for c in model_choices("autoencoder")}
    assert after["tiny-vqgan"].state == "downloaded" and after["tiny-vqgan"].usable


def test_download_job_failure_is_one_line(served):
    proc = EngineProcess(download_command(["offline"], sys.executable), env=_env())
    assert proc.wait(timeout=120) == "failed"
    assert "yourself" in proc.error or "download" in proc.error
    assert "\n" not in proc.error


def test_a_file_over_2_gib_fits_the_progress_bar():
    """Qt's progress bar holds C ints: a 3 GiB download is reported in per mille, and in MiB without a size."""
    assert download_progress("merlin.pt", 3 * 2**30 // 2, 3 * 2**30) == (
        500,
        PER_MILLE,
        "merlin.pt: 1536.0 MiB of 3072.0 MiB",
    )
    assert download_progress("merlin.pt", 3 * 2**30, None) == (3072, 0, "merlin.pt: 3072.0 MiB")
