"""The stand-ins for PythonQt, CTK and qMRML are no kinder than the real ones (each behaviour quoted in place)."""

from __future__ import annotations

import pytest
from mrml_scene import add_input, new_scene
from slicer_harness import ctk_standin, mrml_widgets
from slicer_harness import qt_standin as qt


def test_connect_needs_the_exact_signature_and_a_refused_one_never_fires():
    button = qt.QPushButton()
    fired = []
    assert button.connect("clicked( bool )", lambda checked: fired.append("bool"))  # normalized: the same signal
    assert not button.connect("clicked(int)", lambda i: fired.append("int"))  # PythonQt only warns
    assert qt.REFUSED_CONNECTIONS and "clicked(int)" in qt.REFUSED_CONNECTIONS[-1]
    button.click()
    assert fired == ["bool"]
    qt.REFUSED_CONNECTIONS.clear()


def test_no_new_attributes_on_a_wrapped_object_but_dynamic_properties_work():
    label = qt.QLabel()
    label.text = "x"
    with pytest.raises(AttributeError, match="creating new attributes"):
        label.textt = "typo"
    label.setProperty("SlicerParameterName", "chunkSize")  # a dynamic property, as QObject::setProperty makes it
    assert label.SlicerParameterName == "chunkSize" and label.property("SlicerParameterName") == "chunkSize"
    assert label.property("noSuchProperty") is None


def test_only_classes_that_exist():
    with pytest.raises(AttributeError):
        ctk_standin.ctkNoSuchWidget  # noqa: B018
    with pytest.raises(AttributeError):
        mrml_widgets.qMRMLNoSuchWidget  # noqa: B018


def test_progress_bar_takes_c_ints_only():
    bar = qt.QProgressBar()
    bar.setRange(0, 1000)
    bar.value = 500
    assert bar.value == 500
    with pytest.raises(TypeError):
        bar.setRange(0, 3 * 2**30)  # a slot argument beyond INT_MAX matches no overload
    bar.maximum = 3 * 2**30  # a property wraps to a negative int
    assert bar.maximum < 0


def test_node_combobox_selects_none_for_a_node_it_does_not_list(small_ct):
    scene = new_scene()
    ct, _ = add_input(scene, small_ct)
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    combo = mrml_widgets.qMRMLNodeComboBox()
    combo.nodeTypes = ["vtkMRMLScalarVolumeNode"]
    combo.showChildNodeTypes = False
    combo.noneEnabled = True
    combo.setMRMLScene(scene)
    combo.setCurrentNode(ct)
    assert combo.currentNode() is ct
    combo.setCurrentNode(labels)
    assert combo.currentNode() is None
