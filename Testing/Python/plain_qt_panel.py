"""The panel's .ui built by real Qt (PySide6 QUiLoader), Slicer/CTK classes replaced by their closest Qt widget."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6 import QtCore, QtWidgets  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

UI_FILE = Path(__file__).resolve().parents[2] / "CTCounterfactual" / "Resources" / "UI" / "CTCounterfactual.ui"
QT_BASE = {
    "ctkCollapsibleButton": "QGroupBox",
    "ctkRangeWidget": "QLineEdit",
    "ctkSliderWidget": "QDoubleSpinBox",
    "qMRMLNodeComboBox": "QComboBox",
    "qMRMLWidget": "QWidget",
}
SLICER_ONLY_PROPERTIES = {"collapsed", "nodeTypes", "showChildNodeTypes", "addEnabled", "removeEnabled", "noneEnabled"}
RANGE_PROPERTIES = {"decimals", "singleStep", "minimum", "maximum"}


def plain_qt_ui(path: Path = UI_FILE) -> bytes:
    root = ET.parse(path).getroot()
    for w in root.iter("widget"):
        if w.get("class") == "ctkCollapsibleButton":
            for prop in w.findall("property"):
                if prop.get("name") == "text":
                    prop.set("name", "title")  # the section header
        w.set("class", QT_BASE.get(w.get("class"), w.get("class")))
        spin = w.get("class") in ("QSpinBox", "QDoubleSpinBox", "QSlider", "QProgressBar")
        for prop in list(w.findall("property")):
            if prop.get("name") in SLICER_ONLY_PROPERTIES or (not spin and prop.get("name") in RANGE_PROPERTIES):
                w.remove(prop)
    for tag in ("customwidgets", "connections"):
        for el in root.findall(tag):
            root.remove(el)
    return ET.tostring(root)


def load_panel(path: Path = UI_FILE) -> QtWidgets.QWidget:
    """The panel as real Qt widgets (a QApplication is made if there is none)."""
    QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    buffer = QtCore.QBuffer()
    buffer.setData(QtCore.QByteArray(plain_qt_ui(path)))
    buffer.open(QtCore.QIODevice.ReadOnly)
    loader = QUiLoader()
    widget = loader.load(buffer)
    if widget is None:
        raise RuntimeError(loader.errorString())
    return widget
