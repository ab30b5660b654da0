"""The panel's .ui file loaded by real Qt (PySide6's QUiLoader, offscreen); the module's own use of it is
executed in test_slicer_module.py."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6 import QtCore, QtWidgets  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

MODULE_DIR = Path(__file__).resolve().parents[2] / "CTCounterfactual"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "CTCounterfactual.ui"
# Slicer/CTK classes are not in PySide6: load them as their plain Qt base (catches XML and name errors)
QT_BASE = {
    "ctkCollapsibleButton": "QGroupBox",
    "ctkRangeWidget": "QWidget",
    "ctkSliderWidget": "QDoubleSpinBox",
    "qMRMLNodeComboBox": "QComboBox",
    "qMRMLWidget": "QWidget",
}
SLICER_ONLY_PROPERTIES = {"collapsed", "nodeTypes", "showChildNodeTypes", "addEnabled", "removeEnabled", "noneEnabled"}


def _plain_qt_ui() -> bytes:
    root = ET.parse(UI_FILE).getroot()
    for w in root.iter("widget"):
        w.set("class", QT_BASE.get(w.get("class"), w.get("class")))
        for prop in list(w.findall("property")):
            if prop.get("name") in SLICER_ONLY_PROPERTIES or (
                w.get("class") == "QWidget" and prop.get("name") in ("decimals", "singleStep", "minimum", "maximum")
            ):
                w.remove(prop)
    for tag in ("customwidgets", "connections"):
        for el in root.findall(tag):
            root.remove(el)
    return ET.tostring(root)


@pytest.fixture(scope="module")
def panel():
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    buffer = QtCore.QBuffer()
    buffer.setData(QtCore.QByteArray(_plain_qt_ui()))
    buffer.open(QtCore.QIODevice.ReadOnly)
    loader = QUiLoader()
    widget = loader.load(buffer)
    assert widget is not None, loader.errorString()
    yield widget
    widget.deleteLater()
    app.processEvents()


def test_the_ui_loads_in_real_qt(panel):
    """Real Qt reads the file (XML and class errors show here); the panel's main widgets are in it."""
    for name in ("applyButton", "inputVolumeSelector", "targetSelector", "progressBar", "logText", "sliceRangeWidget"):
        assert panel.findChild(QtCore.QObject, name) is not None, name


def test_apply_button_text(panel):
    assert panel.findChild(QtCore.QObject, "applyButton").text() == "Generate counterfactual"
