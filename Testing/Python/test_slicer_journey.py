"""A user's whole session with the module, for Slicer 5.10.0 and 5.12.3, with the real engine process.

Load a CT, open the panel, Generate and Cancel mid-run, Generate to the end (QTimer polling), look at the
results, click the per-chunk plot, Export scene, close the scene, then a new Slicer opens the MRB.
"""

from __future__ import annotations

import os
import time

import numpy as np
from mrml_scene import voxels
from slicer_harness import qt_standin as qt
from slicer_module_stand import (
    NAME,
    SKIP,
    load_volume,
    result_plot_widget,
    run_timer_until_idle,
    scalar_volume_names,
    start_slicer,
)

pytestmark = SKIP
ROLE = "CTCounterfactual.Role"


def _role_nodes(scene) -> dict:
    cls = "vtkMRMLScalarVolumeNode"
    nodes = [scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls))]
    return {n.GetAttribute(ROLE): n for n in nodes if n.GetAttribute(ROLE)}


def _axial_position(scene, layout_name: str) -> float:
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        if node.GetLayoutName() == layout_name:
            return node.GetSliceToRAS().GetElement(2, 3)
    raise AssertionError(f"no slice view {layout_name}")


def _cancel_mid_run(s, widget) -> None:
    before = scalar_volume_names(s.scene)
    widget.ui.applyButton.click()
    job = widget.job
    assert job is not None and widget.ui.applyButton.text == "Cancel" and widget.timer.isActive()
    while job.process.last is None:  # the engine has started and reports progress
        assert job.process.state == "running", widget.ui.logText.plainText
        widget.timer.fire()
        time.sleep(0.2)
    assert widget.ui.statusLabel.text.startswith(job.process.last["stage"]) and "elapsed" in widget.ui.statusLabel.text
    widget.ui.applyButton.click()  # Cancel
    run_timer_until_idle(widget)
    assert job.process.state == "cancelled" and job.process.stopped
    assert s.modules[NAME].warmEngine().alive  # the engine stopped the run, not itself: the next run finds it warm
    assert not widget.timer.isActive() and not os.path.exists(job.workdir)
    assert scalar_volume_names(s.scene) == before  # the scene was not changed
    assert "Cancelled" in widget.ui.statusLabel.text and widget.ui.applyButton.text == "Generate counterfactual"


def test_generate_cancel_results_plot_export_and_reopen(slicer_app, small_ct, tmp_path):
    s = slicer_app
    node = load_volume(s, small_ct, "chest")
    widget = s.open_panel(NAME)
    ui = widget.ui
    assert (ui.autoencoderSelector.currentData, ui.classifierSelector.currentData) == ("demo-vqgan", "demo-effusion")
    assert ui.targetSelector.currentText == "pleural effusion"
    ui.chunkSizeSpinBox.value = 7
    ui.maxStepsSpinBox.value = 200  # Advanced: a shorter search and sweep keep the test quick
    ui.sweepStepsSpinBox.value = 3
    # the 7 slices around the one the Red view shows: one chunk, so one search
    from CTCounterfactualScene.volume_nodes import slice_center_ras

    s.scene.GetNodeByID("vtkMRMLSliceNodeRed").JumpSliceByCentering(*slice_center_ras(node, 12))
    ui.sliceChoiceSelector.activate(ui.sliceChoiceSelector.findText("Around current slice"))
    ui.aroundSlicesSpinBox.value = 3

    _cancel_mid_run(s, widget)

    ui.applyButton.click()
    assert run_timer_until_idle(widget) > 1
    assert ui.statusLabel.text.startswith("Done"), ui.statusLabel.text + ui.logText.plainText
    results = _role_nodes(s.scene)
    assert set(results) == {"counterfactual", "reconstruction", "heatmap", "difference"}
    cf = results["counterfactual"]
    assert cf.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
    from CTCounterfactualScene.result_layout import LAYOUT_ID, RESULT_VIEW, composite_node

    layout_manager = s.app.layoutManager()
    assert layout_manager.layout == LAYOUT_ID
    assert ui.resultsCollapsibleButton.visible and "lambda" in ui.resultsLabel.text
    # the user looks elsewhere, then comes back with Show results; the heatmap controls act on the views
    layout_manager.setLayout(1)
    ui.showResultsButton.click()
    assert layout_manager.layout == LAYOUT_ID
    ui.heatmapOpacitySlider.value = 0.8
    assert composite_node(s.scene, RESULT_VIEW).GetForegroundOpacity() == 0.8
    heat = results["heatmap"].GetDisplayNode()
    hidden_before = heat.GetLowerThreshold()
    ui.heatmapThresholdSlider.value = 50
    assert heat.GetLowerThreshold() > hidden_before

    # a click on the first point of the per-chunk plot centres the linked views on that chunk
    chart = s.scene.GetFirstNodeByClass("vtkMRMLPlotChartNode")
    series = chart.GetNthPlotSeriesNode(0)
    centre = series.GetTableNode().GetTable().GetColumnByName("chunk_center").GetValue(0)
    plot = result_plot_widget(s)
    plot.plotView().click_points([series.GetID()], [[0]])
    assert _axial_position(s.scene, "CTCFInput") == np.float64(slice_center_ras(node, centre)[2])

    mrb = tmp_path / "exports" / "case.mrb"
    qt.QFileDialog.ANSWERS.append(str(mrb))
    ui.exportSceneButton.click()
    assert mrb.is_file() and "exported" in ui.statusLabel.text
    cf_voxels = voxels(cf).copy()

    s.close_scene()
    assert widget._parameterNode is not None and widget._parameterNode.inputVolume is None
    s.unload(widget)
    s.close()

    second = start_slicer(s.version, tmp_path / "second-session")
    try:
        second.load_scene(mrb)
        reopened = second.open_panel(NAME)
        layout = second.app.layout_logic.GetLayoutNode()
        assert second.app.layoutManager().layout == LAYOUT_ID and layout.IsLayoutDescription(LAYOUT_ID)
        np.testing.assert_array_equal(voxels(_role_nodes(second.scene)["counterfactual"]), cf_voxels)
        p = reopened._parameterNode
        assert p.inputVolume is not None and p.inputVolume.GetName() == "chest"
        assert (p.chunkSize, p.target) == (7, "pleural effusion")
        assert (p.sliceChoice, p.aroundSlices) == ("Around current slice", 3)
        assert reopened.ui.applyButton.enabled
    finally:
        second.close()
