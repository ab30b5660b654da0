"""The panel's .ui file loaded with PySide6's QUiLoader (offscreen), checked against what the module uses."""

from __future__ import annotations

import ast
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from CTCounterfactualLib.params import SearchParams

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from PySide6 import QtCore, QtWidgets  # noqa: E402
from PySide6.QtUiTools import QUiLoader  # noqa: E402

MODULE_DIR = Path(__file__).resolve().parents[2] / "CTCounterfactual"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "CTCounterfactual.ui"
MODULE_FILE = MODULE_DIR / "CTCounterfactual.py"
# Slicer/CTK classes are not in PySide6: load them as their plain Qt base (catches XML and name errors)
QT_BASE = {
    "ctkCollapsibleButton": "QGroupBox",
    "ctkRangeWidget": "QWidget",
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


def _module_ui_names() -> set[str]:
    return set(re.findall(r"self\.ui\.(\w+)", MODULE_FILE.read_text()))


def _parameter_fields() -> dict[str, object]:
    tree = ast.parse(MODULE_FILE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CTCounterfactualParameterNode")
    fields = {}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign):
            fields[node.target.id] = ast.literal_eval(node.value) if isinstance(node.value, ast.Constant) else None
    return fields


def test_every_widget_the_module_uses_exists(panel):
    names = _module_ui_names()
    assert {"applyButton", "inputVolumeSelector", "targetSelector", "progressBar", "logText"} <= names
    missing = [n for n in sorted(names) if panel.findChild(QtCore.QObject, n) is None]
    assert not missing, f"widgets the module looks up but the .ui lacks: {missing}"


def test_bound_widgets_match_the_parameter_node(panel):
    fields = _parameter_fields()
    bound = {}
    for w in ET.parse(UI_FILE).getroot().iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                bound[prop.find("string").text] = w.get("name")
    assert bound, "no widget is bound to the parameter node"
    assert set(bound) <= set(fields), f"bound to unknown parameters: {set(bound) - set(fields)}"
    # the parameters without a bound widget are exactly the ones the module fills by hand (dynamic lists)
    assert set(fields) - set(bound) == {"autoencoder", "classifier", "target"}


def test_defaults_agree_with_the_engine(panel):
    fields, d = _parameter_fields(), SearchParams()
    engine = {
        "predDiff": d.pred_diff,
        "predFloor": d.pred_floor,
        "stepSize": d.step_size,
        "maxSteps": d.max_steps,
        "maxPixelDiffPct": d.max_pixel_diff_pct,
        "lambdaSweepSteps": d.lambda_sweep_steps,
    }
    for name, value in engine.items():
        assert fields[name] == pytest.approx(value), name
    spin = {
        "predDiff": "predDiffSpinBox",
        "predFloor": "predFloorSpinBox",
        "stepSize": "stepSizeSpinBox",
        "maxSteps": "maxStepsSpinBox",
        "maxPixelDiffPct": "maxPixelDiffSpinBox",
        "lambdaSweepSteps": "sweepStepsSpinBox",
    }
    for name, widget in spin.items():
        assert panel.findChild(QtCore.QObject, widget).value() == pytest.approx(engine[name]), widget
    assert fields["heatmapMethod"] == d.heatmap_method
    modes = panel.findChild(QtCore.QObject, "modeSelector")
    assert [modes.itemText(i) for i in range(modes.count())] == ["scan", "joint"]
    methods = panel.findChild(QtCore.QObject, "heatmapMethodSelector")
    from CTCounterfactualLib.params import HEATMAP_METHODS

    assert tuple(methods.itemText(i) for i in range(methods.count())) == HEATMAP_METHODS


def test_apply_button_text(panel):
    assert panel.findChild(QtCore.QObject, "applyButton").text() == "Generate counterfactual"


# What Slicer's parameterNodeWrapper GUI connectors accept (slicer/parameterNodeWrapper/guiConnection.py): a widget
# class bound to a parameter whose annotation lacks these raises at connectGui, i.e. only inside Slicer.
CONNECTOR_NEEDS = {
    "QComboBox": ("Choice(",),
    "ctkRangeWidget": ("FloatRange", "RangeBounds("),
    "QSpinBox": ("int",),
    "QDoubleSpinBox": ("float",),
    "QCheckBox": ("bool",),
    "qMRMLNodeComboBox": ("vtkMRML",),
}


def _annotations() -> dict[str, str]:
    tree = ast.parse(MODULE_FILE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CTCounterfactualParameterNode")
    return {n.target.id: ast.unparse(n.annotation) for n in cls.body if isinstance(n, ast.AnnAssign)}


def test_bound_parameters_have_what_slicer_connectors_need():
    annotations = _annotations()
    for w in ET.parse(UI_FILE).getroot().iter("widget"):
        for prop in w.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                name = prop.find("string").text
                for needed in CONNECTOR_NEEDS[w.get("class")]:
                    assert needed in annotations[name], f"{w.get('name')} -> {name}: {annotations[name]} lacks {needed}"
