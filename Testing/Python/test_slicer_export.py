"""MRB export and reload into a fresh scene, and headless rendering of the linked slice views."""

from __future__ import annotations

import numpy as np
import pytest
from CTCounterfactualScene import result_layout as layout
from CTCounterfactualScene.results_to_scene import load_results
from CTCounterfactualScene.scene_export import export_mrb, load_mrb
from CTCounterfactualScene.slice_render import render_linked_views, render_view
from mrml_scene import add_input, new_scene, voxels
from vtk.util.numpy_support import vtk_to_numpy


def _by_name(scene, cls: str) -> dict:
    return {
        scene.GetNthNodeByClass(i, cls).GetName(): scene.GetNthNodeByClass(i, cls)
        for i in range(scene.GetNumberOfNodesByClass(cls))
    }


@pytest.fixture()
def result_scene(small_ct, swept_run):
    scene = new_scene()
    node, _ = add_input(scene, small_ct)
    return scene, node, load_results(scene, node, swept_run)


def test_mrb_round_trip(result_scene, tmp_path):
    scene, node, r = result_scene
    path = export_mrb(scene, tmp_path / "exports" / "case.mrb")
    assert path.is_file() and not [p for p in path.parent.iterdir() if p != path]  # no staging left behind
    fresh = new_scene()
    load_mrb(fresh, path)
    before, after = _by_name(scene, "vtkMRMLScalarVolumeNode"), _by_name(fresh, "vtkMRMLScalarVolumeNode")
    names = [scene.GetNodeByID(i).GetName() for i in (r.counterfactual, r.reconstruction, r.heatmap, r.difference)]
    for name in [node.GetName(), *names]:
        np.testing.assert_array_equal(voxels(after[name]), voxels(before[name]), err_msg=name)
    heat = after[scene.GetNodeByID(r.heatmap).GetName()]
    assert heat.GetDisplayNode().GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-Heat"
    tables = _by_name(fresh, "vtkMRMLTableNode")
    table = tables[scene.GetNodeByID(r.table).GetName()].GetTable()
    original = scene.GetNodeByID(r.table).GetTable()
    assert table.GetNumberOfRows() == original.GetNumberOfRows()
    for column in ("chunk_center", "prediction_min", "lambda"):
        got = np.asarray([float(table.GetColumnByName(column).GetValue(i)) for i in range(table.GetNumberOfRows())])
        # Slicer's table storage writes CSV with 6 significant digits
        np.testing.assert_allclose(got, vtk_to_numpy(original.GetColumnByName(column)), rtol=5e-6)
    chart = _by_name(fresh, "vtkMRMLPlotChartNode")[scene.GetNodeByID(r.chart).GetName()]
    assert chart.GetNumberOfPlotSeriesNodes() == 2
    assert chart.GetNthPlotSeriesNode(0).GetTableNode().GetName() == scene.GetNodeByID(r.table).GetName()
    sequences = _by_name(fresh, "vtkMRMLSequenceNode")
    seq = sequences[scene.GetNodeByID(r.sequence).GetName()]
    assert seq.GetNumberOfDataNodes() == scene.GetNodeByID(r.sequence).GetNumberOfDataNodes() == 4
    np.testing.assert_array_equal(
        voxels(seq.GetNthDataNode(0)), voxels(scene.GetNodeByID(r.sequence).GetNthDataNode(0))
    )
    assert len(_by_name(fresh, "vtkMRMLSequenceBrowserNode")) == 1
    lay = layout.layout_node(fresh)
    assert lay.GetViewArrangement() == layout.LAYOUT_ID and lay.IsLayoutDescription(layout.LAYOUT_ID)
    assert lay.GetLayoutDescription(layout.LAYOUT_ID) == layout.LAYOUT_XML
    right = layout.composite_node(fresh, layout.RESULT_VIEW)
    assert fresh.GetNodeByID(right.GetBackgroundVolumeID()).GetName() == names[0]
    assert fresh.GetNodeByID(right.GetForegroundVolumeID()).GetName() == names[2]


def test_export_refuses_other_suffixes(result_scene, tmp_path):
    scene, _, _ = result_scene
    with pytest.raises(ValueError, match=r"\.mrb"):
        export_mrb(scene, tmp_path / "case.zip")
    assert not list(tmp_path.iterdir())


def test_linked_views_render_headless(result_scene, tmp_path):
    scene, node, r = result_scene
    left = render_view(scene, layout.INPUT_VIEW)
    right = render_view(scene, layout.RESULT_VIEW)
    assert left.shape == right.shape == (320, 320, 3)
    assert np.all(left[..., 0] == left[..., 2])  # the input view is grey only
    red = right[..., 0].astype(int) - right[..., 2]
    assert red.max() > 60  # the heat overlay is on the CF
    # turning the overlay off leaves a grey image: the colour came from the heatmap layer
    layout.composite_node(scene, layout.RESULT_VIEW).SetForegroundOpacity(0.0)
    plain = render_view(scene, layout.RESULT_VIEW)
    assert np.abs(plain[..., 0].astype(int) - plain[..., 2]).max() <= 1
    png = render_linked_views(scene, tmp_path / "views.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
