"""How the panel handles a run's life: cancel without blocking, scene close, unload, a failing load, timeouts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from slicer_harness import ctk_standin
from slicer_module_stand import NAME, SKIP, installed_torch, load_volume, run_timer_until_idle, scalar_volume_names

pytestmark = SKIP
SLEEPER = "import time\nfor _ in range(1200): time.sleep(0.1)"
# a process that ignores the polite stop (SIGTERM), as an engine stuck in native code would
STUBBORN = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n" + SLEEPER


def _watch(slicer_app, widget, code: str, out_dir=None, input_node=None):
    """A started job running ``code`` in its own process, shown by the panel (as after Generate)."""
    module = slicer_app.modules[NAME]
    from CTCounterfactualScene.engine_process import EngineProcess

    workdir = slicer_app.home / "tmp" / f"job{len(os.listdir(slicer_app.home / 'tmp'))}"
    workdir.mkdir()
    job = module.EngineJob(EngineProcess([sys.executable, "-c", code]), str(workdir), out_dir, input_node, "explain")
    widget.watchJob(job, "Starting the engine...")
    return job


@pytest.fixture()
def panel(slicer_app, small_ct):
    node = load_volume(slicer_app, small_ct, "chest")
    return slicer_app.open_panel(NAME), node


def test_cancel_returns_at_once_and_the_timer_finishes_the_stop(slicer_app, panel):
    widget, _ = panel
    job = _watch(slicer_app, widget, STUBBORN)
    while not job.process.log:  # the process is up and has set its signal handler
        widget.timer.fire()
    job.process.cancel_grace = 0.5
    widget.ui.applyButton.click()  # Cancel
    assert job.process.process.poll() is None  # the click came back while the process still runs
    assert widget.job is job and "Cancelling" in widget.ui.statusLabel.text
    assert not widget.ui.applyButton.enabled  # no second Cancel or Generate meanwhile
    run_timer_until_idle(widget, limit_s=60)
    assert job.process.state == "cancelled" and job.process.process.returncode == -signal.SIGKILL
    assert "Cancelled" in widget.ui.statusLabel.text and not os.path.exists(job.workdir)


def test_closing_the_scene_cancels_the_run(slicer_app, panel):
    widget, _ = panel
    job = _watch(slicer_app, widget, SLEEPER)
    slicer_app.close_scene()
    run_timer_until_idle(widget, limit_s=60)
    assert job.process.state == "cancelled" and job.process.process.poll() is not None
    assert not widget.timer.isActive() and not os.path.exists(job.workdir)


def test_unloading_the_module_stops_the_timer_and_the_run(slicer_app, panel):
    widget, _ = panel
    job = _watch(slicer_app, widget, SLEEPER)
    slicer_app.unload(widget)
    assert not widget.timer.isActive()
    assert job.process.process.wait(timeout=30) is not None and job.process.state == "cancelled"
    assert not os.path.exists(job.workdir)


def test_a_run_that_does_not_fit_is_a_warning(slicer_app, panel):
    """The engine refuses a run that does not fit in memory before any work; the panel says so in a dialog."""
    message = "not enough memory: this run needs about 9.00 GiB even with --batch-size 1"
    line = {"stage": "error", "done": 0, "total": 0, "message": message, "out_of_memory": True}
    widget, node = panel
    before = scalar_volume_names(slicer_app.scene)
    _watch(slicer_app, widget, f"import json, sys\nprint(json.dumps({line!r}))\nsys.exit(3)", input_node=node)
    run_timer_until_idle(widget, limit_s=60)
    assert widget.ui.statusLabel.text.startswith("Failed") and message in ctk_standin.ctkMessageBox.SHOWN[-1]
    assert scalar_volume_names(slicer_app.scene) == before


def test_a_result_that_fails_to_load_leaves_no_partial_nodes(slicer_app, panel, swept_run, tmp_path):
    widget, node = panel
    broken = tmp_path / "broken"
    shutil.copytree(swept_run, broken)
    (broken / "heatmap.nrrd").unlink()  # counterfactual and reconstruction load, the heatmap does not
    before = scalar_volume_names(slicer_app.scene)
    tables = slicer_app.scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    job = _watch(slicer_app, widget, "pass", out_dir=str(broken), input_node=node)
    run_timer_until_idle(widget, limit_s=60)
    assert scalar_volume_names(slicer_app.scene) == before
    assert slicer_app.scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables
    assert widget.ui.statusLabel.text.startswith("Failed") and "heatmap" in widget.ui.statusLabel.text
    assert not widget.ui.logCollapsibleButton.collapsed and not os.path.exists(job.workdir)


def test_process_timeout_stops_the_run_before_removing_its_folder(slicer_app, panel, monkeypatch):
    widget, _ = panel
    module = slicer_app.modules[NAME]
    started = []
    start = module.CTCounterfactualLogic.start
    monkeypatch.setattr(
        module.CTCounterfactualLogic, "start", lambda self, p: started.append(start(self, p)) or started[-1]
    )
    with pytest.raises(subprocess.TimeoutExpired):
        widget.logic.process(widget._parameterNode, timeout=0.5)
    (job,) = started
    assert os.path.dirname(job.workdir) == slicer_app.app.temporaryPath  # Slicer's own temporary folder
    assert job.process.stopped and job.process.state == "cancelled"
    assert not os.path.exists(job.workdir)
    assert module.warmEngine().alive  # the engine stays for the next run


def test_generate_needs_pythonslicer_and_never_runs_slicer_itself(slicer_app, panel, monkeypatch):
    widget, _ = panel
    module = slicer_app.modules[NAME]
    assert module._engine_python() == str(slicer_app.home / "bin" / "PythonSlicer")
    monkeypatch.setenv("PATH", os.defpath)  # Slicer's bin folder is found without PATH
    assert module._engine_python() == str(slicer_app.home / "bin" / "PythonSlicer")
    (slicer_app.home / "bin" / "PythonSlicer").unlink()
    widget.ui.applyButton.click()
    assert widget.job is None
    assert "PythonSlicer" in ctk_standin.ctkMessageBox.SHOWN[-1]


def test_self_test_installs_dependencies_before_importing_the_engine(slicer_app, monkeypatch):
    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)
    installed_torch(monkeypatch, None)
    import PyTorchUtils

    asked = []
    monkeypatch.setattr(PyTorchUtils.PyTorchUtilsLogic, "installTorch", lambda self, *a, **k: asked.append(a))
    with pytest.raises(AssertionError, match="dependencies"):
        slicer_app.slicer.selfTests[NAME]()
    assert asked  # it tried to install PyTorch first, instead of failing on `import torch`


def test_a_click_in_another_plot_is_ignored(slicer_app, panel):
    """The user's own chart in a plot view: clicking its points does nothing here (and raises nothing)."""
    widget, _ = panel
    scene = slicer_app.scene
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "my measurements")
    for name in ("x", "y"):
        column = table.AddColumn()
        column.SetName(name)
    table.GetTable().SetNumberOfRows(2)
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", "my series")
    series.SetAndObserveTableNodeID(table.GetID())
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", "my chart")
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    manager = slicer_app.app.layoutManager()
    manager.setLayout(36)  # Slicer's "Four-up plot" layout: slice views and a plot view
    assert manager.plotViewCount >= 1
    widget.connectPlotClicks()
    manager.plotWidget(0).plotView().click_points([series.GetID()], [[1]])
    manager.plotWidget(0).plotView().click_points(["vtkMRMLPlotSeriesNodeNotThere"], [[0]])
