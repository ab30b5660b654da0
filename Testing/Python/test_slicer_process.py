"""The module's engine process: command builder, JSON progress, completion, failure, cancel of the whole tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
from CTCounterfactualScene.engine_process import (
    EngineProcess,
    ExplainRequest,
    engine_environment,
    explain_command,
    group_process_states,
    parse_line,
    popen_options,
    stop_command,
)
from CTCounterfactualScene.volume_nodes import write_volume_file
from mrml_scene import add_input, new_scene, voxels

from CTCounterfactualLib import cli

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _request(ct, out, models, **kw) -> ExplainRequest:
    ae, clf = models
    return ExplainRequest(str(ct), str(out), str(ae), str(clf), "effusion", **kw)


def test_command_parses_with_the_engine_cli(tiny_model_files, tmp_path):
    req = _request(
        "ct.nrrd",
        tmp_path / "out",
        tiny_model_files,
        slices=(3, 17),
        chunk_size=5,
        mode="joint",
        device="cpu",
        batch_size=2,
        search={"max_steps": 300, "lambda_sweep_steps": 4, "heatmap_method": "max"},
    )
    cmd = explain_command(req, python="PythonSlicer")
    assert cmd[:4] == ["PythonSlicer", "-m", "CTCounterfactualLib.cli", "explain"]
    args = cli.build_parser().parse_args(cmd[3:])
    assert (args.input, args.out, args.target) == ("ct.nrrd", str(tmp_path / "out"), "effusion")
    assert (args.slices, args.chunk_size, args.mode, args.device, args.batch_size) == ((3, 17), 5, "joint", "cpu", 2)
    assert (args.max_steps, args.lambda_sweep_steps, args.heatmap_method) == (300, 4, "max")
    assert args.progress == "json" and args.sweep


def test_environment_makes_the_engine_importable(tmp_path):
    env = engine_environment({"PYTHONPATH": "/elsewhere"}, engine_parent=tmp_path, scene_parent=tmp_path / "m")
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), str(tmp_path / "m"), "/elsewhere"]
    installed = engine_environment({}, engine_parent=tmp_path, scene_parent=tmp_path)  # one folder: listed once
    assert installed["PYTHONPATH"] == str(tmp_path)


def test_parse_line():
    assert parse_line('{"stage": "search", "done": 1, "total": 4, "message": "m"}')["done"] == 1
    assert parse_line("Traceback (most recent call last):") is None
    assert parse_line('{"stage": "search"}') is None


def test_output_that_is_not_utf8_is_read_on(tmp_path):
    """A byte that is not UTF-8 (a library printing in the system's code page) does not stop the reader: the progress
    after it still arrives, and the engine never blocks on a full pipe."""
    code = (
        "import sys, json\n"
        "sys.stdout.buffer.write(b'caf\\xe9 \\xff\\n'); sys.stdout.flush()\n"
        "sys.stderr.buffer.write(b'warn \\xe9\\n'); sys.stderr.flush()\n"
        "for i in range(3):\n"
        "    print(json.dumps({'stage': 'search', 'done': i, 'total': 3, 'message': 'x' * 5000}), flush=True)\n"
    )
    proc = EngineProcess([sys.executable, "-c", code])
    assert proc.wait(timeout=60) == "done"
    assert proc.last == {"stage": "search", "done": 2, "total": 3, "message": "x" * 5000}
    assert any("\ufffd" in line for line in proc.log) and any(line.startswith("warn") for line in proc.log)


def test_windows_start_and_stop(monkeypatch):
    """On Windows the engine starts without a console window (as launchConsoleProcess) and is stopped with /F."""

    class STARTUPINFO:  # Windows' subprocess.STARTUPINFO, not present on other systems
        def __init__(self) -> None:
            self.dwFlags, self.wShowWindow = 0, 1

    for name, value in (("STARTUPINFO", STARTUPINFO), ("STARTF_USESHOWWINDOW", 1), ("SW_HIDE", 0)):
        monkeypatch.setattr(subprocess, name, value, raising=False)
    monkeypatch.setattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200, raising=False)
    options = popen_options(windows=True)
    assert options["startupinfo"].dwFlags & 1 and options["startupinfo"].wShowWindow == 0
    assert options["creationflags"] == 0x200
    assert stop_command(1234) == ["taskkill", "/F", "/T", "/PID", "1234"]
    assert popen_options(windows=False) == {"start_new_session": True}


def test_run_to_completion_from_a_scene_volume(small_ct, tiny_model_files, tmp_path):
    scene = new_scene()
    node, _ = add_input(scene, small_ct)
    before = voxels(node).copy()
    input_path = tmp_path / "input.nrrd"
    write_volume_file(scene, node, input_path)
    assert node.GetStorageNode().GetFileName() == str(small_ct)  # the node's own file is untouched
    req = _request(input_path, tmp_path / "out", tiny_model_files, slices=(4, 12), chunk_size=4)
    req.search = {"max_steps": 200, "lambda_sweep_steps": 3}
    proc = EngineProcess(explain_command(req), env=engine_environment({**os.environ, **ONE_THREAD}))
    events = []
    deadline = time.monotonic() + 240
    while proc.state == "running" and time.monotonic() < deadline:
        events += proc.poll()
        time.sleep(0.05)
    assert proc.state == "done", proc.log
    stages = [e["stage"] for e in events]
    assert "search" in stages and stages[-1] == "done"
    assert events[-1]["out"] == str(tmp_path / "out")
    assert (tmp_path / "out" / "summary.json").is_file() and (tmp_path / "out" / "sweep" / "sweep.csv").is_file()
    np.testing.assert_array_equal(voxels(node), before)


def test_failure_reports_the_engine_reason(small_ct, tiny_model_files, tmp_path):
    req = _request(small_ct, tmp_path / "out", tiny_model_files, slices=(0, 999))
    proc = EngineProcess(explain_command(req), env=engine_environment({**os.environ, **ONE_THREAD}))
    assert proc.wait(timeout=120) == "failed"
    assert "slice" in proc.error and "999" in proc.error
    assert not (tmp_path / "out").exists()


LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"  # like PythonSlicer: python as a child


def test_cancel_kills_the_whole_tree_and_writes_nothing(long_ct, tiny_model_files, tmp_path):
    req = _request(long_ct, tmp_path / "out", tiny_model_files, chunk_size=4, batch_size=1)
    cmd = [sys.executable, "-c", LAUNCHER, *explain_command(req)]
    proc = EngineProcess(cmd, env=engine_environment({**os.environ, **ONE_THREAD}))
    deadline = time.monotonic() + 120
    while not (proc.last and proc.last["stage"] == "search") and time.monotonic() < deadline:
        proc.poll()
        time.sleep(0.05)
    assert proc.last and proc.last["stage"] == "search", proc.log
    proc.cancel()
    assert proc.state == "cancelled"
    # no live process of the group is left, the engine child included (Linux CI: read from /proc)
    assert all(state == "Z" for state in group_process_states(proc.process.pid))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging folder either
