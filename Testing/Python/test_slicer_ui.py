"""The panel's .ui file loaded by real Qt (PySide6's QUiLoader, offscreen); the module's own use of it is
executed in test_slicer_module.py."""

from __future__ import annotations

import pytest
from plain_qt_panel import load_panel
from PySide6 import QtCore, QtWidgets


@pytest.fixture(scope="module")
def panel():
    widget = load_panel()
    yield widget
    widget.deleteLater()
    QtWidgets.QApplication.instance().processEvents()


def test_the_ui_loads_in_real_qt(panel):
    """Real Qt reads the file (XML and class errors show here); the panel's main widgets are in it."""
    for name in ("applyButton", "inputVolumeSelector", "targetSelector", "progressBar", "logText", "sliceRangeWidget"):
        assert panel.findChild(QtCore.QObject, name) is not None, name


def test_apply_button_text(panel):
    assert panel.findChild(QtCore.QObject, "applyButton").text() == "Generate counterfactual"
