"""The module's results-to-scene logic on a real vtkMRMLScene (PyPI slicer-core), from a real engine run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
from CTCounterfactualScene import result_layout as layout
from CTCounterfactualScene.chunk_plot import read_chunk_rows
from CTCounterfactualScene.results_to_scene import jump_to_chunk, load_results
from CTCounterfactualScene.volume_nodes import ijk_to_ras, slice_center_ras
from mrml_scene import add_input, new_scene, voxels
from vtk.util.numpy_support import vtk_to_numpy


@pytest.fixture()
def scene_with_input(small_ct):
    scene = new_scene()
    node, study = add_input(scene, small_ct)
    return scene, node, study


def test_result_nodes_geometry_and_values(scene_with_input, swept_run):
    scene, node, _ = scene_with_input
    r = load_results(scene, node, swept_run)
    for role in ("counterfactual", "reconstruction", "heatmap", "difference"):
        vol = scene.GetNodeByID(getattr(r, role))
        assert vol.IsA("vtkMRMLScalarVolumeNode")
        assert vol.GetImageData().GetDimensions() == node.GetImageData().GetDimensions()
        np.testing.assert_allclose(ijk_to_ras(vol), ijk_to_ras(node), atol=1e-4)
        expected = sitk.GetArrayFromImage(sitk.ReadImage(str(swept_run / f"{role}.nrrd")))
        np.testing.assert_array_equal(voxels(vol), expected)
        assert vol.GetName().startswith("chest CF effusion")
    assert voxels(scene.GetNodeByID(r.counterfactual)).shape == voxels(node).shape


def test_heatmap_display(scene_with_input, swept_run):
    scene, node, _ = scene_with_input
    r = load_results(scene, node, swept_run)
    heat = scene.GetNodeByID(r.heatmap)
    display = heat.GetDisplayNode()
    assert display.GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-Heat"
    assert display.GetApplyThreshold()
    hi = heat.GetImageData().GetScalarRange()[1]
    assert display.GetLowerThreshold() == pytest.approx(0.1 * hi)
    cf_display = scene.GetNodeByID(r.counterfactual).GetDisplayNode()
    assert cf_display.GetColorNodeID() == "vtkMRMLColorTableNodeGrey"


def test_table_equals_chunks_csv_and_plot_wiring(scene_with_input, swept_run):
    scene, node, _ = scene_with_input
    r = load_results(scene, node, swept_run)
    rows = read_chunk_rows(swept_run / "chunks.csv")
    table = scene.GetNodeByID(r.table).GetTable()
    assert table.GetNumberOfRows() == len(rows) == 4  # slices 4:20 in chunks of 4
    for column in ("chunk_start", "chunk_end", "prediction_before", "prediction_min", "lambda", "prediction_cf"):
        got = vtk_to_numpy(table.GetColumnByName(column))
        np.testing.assert_allclose(got, [float(x[column]) for x in rows], rtol=1e-7, err_msg=column)
    reasons = table.GetColumnByName("stop_reason")
    assert [reasons.GetValue(i) for i in range(len(rows))] == [x["stop_reason"] for x in rows]
    chart = scene.GetNodeByID(r.chart)
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    ys = []
    for i in range(2):
        s = chart.GetNthPlotSeriesNode(i)
        assert s.GetTableNodeID() == r.table and s.GetXColumnName() == "chunk_center"
        ys.append(s.GetYColumnName())
    assert ys == ["prediction_min", "prediction_before"]
    plot_view = next(
        scene.GetNthNodeByClass(i, "vtkMRMLPlotViewNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode"))
        if scene.GetNthNodeByClass(i, "vtkMRMLPlotViewNode").GetLayoutName() == layout.PLOT_VIEW
    )
    assert plot_view.GetPlotChartNodeID() == r.chart


def test_subject_hierarchy_under_the_input_study(scene_with_input, swept_run):
    scene, node, study = scene_with_input
    r = load_results(scene, node, swept_run)
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetItemParent(r.folder_item) == study
    for node_id in (r.counterfactual, r.reconstruction, r.heatmap, r.difference, r.table, r.chart, r.sequence):
        assert sh.GetItemParent(sh.GetItemByDataNode(scene.GetNodeByID(node_id))) == r.folder_item


def test_sweep_sequence_frames(scene_with_input, swept_run):
    scene, node, _ = scene_with_input
    r = load_results(scene, node, swept_run)
    rows = list(open(swept_run / "sweep" / "sweep.csv", encoding="utf-8"))[1:]
    seq = scene.GetNodeByID(r.sequence)
    assert seq.GetNumberOfDataNodes() == len(rows) == 4
    assert seq.GetIndexName() == "lambda"
    first = seq.GetNthDataNode(0)
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(swept_run / "sweep" / "frame_00.nrrd")))
    np.testing.assert_array_equal(voxels(first), expected)
    browser = scene.GetNodeByID(r.browser)
    assert browser.GetMasterSequenceNode().GetID() == r.sequence
    summary = json.loads((swept_run / "summary.json").read_text(encoding="utf-8"))
    a = summary["output_chunk"]["start"]
    np.testing.assert_allclose(ijk_to_ras(first)[:3, 3], ijk_to_ras(node)[:3, :] @ [0, 0, a, 1], atol=1e-4)


def test_linked_layout_and_jump(scene_with_input, swept_run):
    scene, node, _ = scene_with_input
    r = load_results(scene, node, swept_run)
    lay = layout.layout_node(scene)
    assert lay.GetViewArrangement() == layout.LAYOUT_ID
    assert lay.IsLayoutDescription(layout.LAYOUT_ID)
    left = layout.composite_node(scene, layout.INPUT_VIEW)
    right = layout.composite_node(scene, layout.RESULT_VIEW)
    assert left.GetBackgroundVolumeID() == node.GetID()
    assert right.GetBackgroundVolumeID() == r.counterfactual
    assert right.GetForegroundVolumeID() == r.heatmap
    assert right.GetForegroundOpacity() == pytest.approx(0.5)
    assert left.GetLinkedControl() and right.GetLinkedControl()
    groups = {layout.slice_node(scene, v).GetViewGroup() for v in (layout.INPUT_VIEW, layout.RESULT_VIEW)}
    assert groups == {layout.VIEW_GROUP}
    assert layout.slice_node(scene, "Red").GetViewGroup() != layout.VIEW_GROUP  # Red/Yellow/Green stay apart
    # the views start on the output chunk, and a plot click moves both to another chunk
    summary = r.summary["output_chunk"]
    sn = layout.slice_node(scene, layout.RESULT_VIEW)
    centre = slice_center_ras(node, (summary["start"] + summary["end"] - 1) / 2)
    assert sn.GetSliceOffset() == pytest.approx(centre[2], abs=1e-3)
    ras = jump_to_chunk(scene, scene.GetNodeByID(r.chart), 0)
    assert ras == pytest.approx(slice_center_ras(node, 5.5))  # chunk 4-7
    for view in (layout.INPUT_VIEW, layout.RESULT_VIEW):
        assert layout.slice_node(scene, view).GetSliceOffset() == pytest.approx(ras[2], abs=1e-3)
    with pytest.raises(IndexError):
        jump_to_chunk(scene, scene.GetNodeByID(r.table), 99)


def test_second_run_adds_a_second_result_set(scene_with_input, swept_run):
    scene, node, study = scene_with_input
    first = load_results(scene, node, swept_run)
    before = {role: np.array(voxels(scene.GetNodeByID(getattr(first, role)))) for role in ("counterfactual", "heatmap")}
    second = load_results(scene, node, swept_run)
    assert second.folder_item != first.folder_item
    ids_first = {first.counterfactual, first.heatmap, first.table, first.chart, first.sequence}
    ids_second = {second.counterfactual, second.heatmap, second.table, second.chart, second.sequence}
    assert not ids_first & ids_second
    for role, arr in before.items():
        np.testing.assert_array_equal(voxels(scene.GetNodeByID(getattr(first, role))), arr)
    names = [scene.GetNodeByID(i).GetName() for i in (first.counterfactual, second.counterfactual)]
    assert names[0] != names[1]
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert sh.GetItemParent(second.folder_item) == study
