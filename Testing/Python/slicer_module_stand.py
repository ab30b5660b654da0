"""Fixtures and user actions for the tests that run the Slicer module on Slicer's real Python layer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from slicer_harness.session import SlicerSession, slicer_python_dir

MODULE_FILE = Path(__file__).resolve().parents[2] / "CTCounterfactual" / "CTCounterfactual.py"
NAME = "CTCounterfactual"
# CI sets CTCF_REQUIRE_SLICER_PYTHON=1 (.ci/run): there a missing layer fails these tests instead of skipping them
SKIP = pytest.mark.skipif(
    slicer_python_dir() is None and not os.environ.get("CTCF_REQUIRE_SLICER_PYTHON"),
    reason="Slicer's Python layer (../shared/slicer-python) is absent; CI has it",
)


def start_slicer(version: str, home: Path, testing: bool = False) -> SlicerSession:
    """Slicer starting with the extension installed: the module is loaded, startup completes (``testing``:
    ``Slicer --testing``, as ctest runs the module's self-test)."""
    session = SlicerSession(version, home, testing)
    try:
        session.load_module(MODULE_FILE)
        session.startup_completed()
    except BaseException:
        session.close()
        raise
    return session


def installed_torch(monkeypatch, version: str | None) -> None:
    """What the installed packages' metadata says about torch: ``version``, or (None) not installed."""
    import importlib.metadata

    real = importlib.metadata.version

    def version_of(name: str) -> str:
        if name != "torch":
            return real(name)
        if version is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return version

    monkeypatch.setattr(importlib.metadata, "version", version_of)


def load_volume(session: SlicerSession, path: Path, name: str):
    """File / Add data of a CT: ``slicer.util.loadVolume``."""
    return session.slicer.util.loadVolume(str(path), {"name": name})


def run_timer_until_idle(widget, limit_s: float = 240.0) -> int:
    """Let the panel's QTimer tick (every 0.2 s, as set) until no job is left; returns the ticks."""
    ticks, deadline = 0, time.monotonic() + limit_s
    while widget.job is not None:
        if time.monotonic() > deadline:
            raise AssertionError(f"the job did not end within {limit_s} s; log: {widget.ui.logText.plainText}")
        widget.timer.fire()
        ticks += 1
        time.sleep(0.2)
    return ticks


def scalar_volume_names(scene) -> list[str]:
    cls = "vtkMRMLScalarVolumeNode"
    return sorted(scene.GetNthNodeByClass(i, cls).GetName() for i in range(scene.GetNumberOfNodesByClass(cls)))


def result_plot_widget(session: SlicerSession):
    """The layout's plot widget that shows the per-chunk plot (the view named PLOT_VIEW)."""
    from CTCounterfactualScene.result_layout import PLOT_VIEW

    manager = session.app.layoutManager()
    return next(
        manager.plotWidget(i)
        for i in range(manager.plotViewCount)
        if manager.plotWidget(i).mrmlPlotViewNode().GetLayoutName() == PLOT_VIEW
    )
