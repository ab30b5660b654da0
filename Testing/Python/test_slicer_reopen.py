"""A scene with results opened later: into an open panel (results box, Show results, plot clicks), and into a scene
whose node IDs clash with the bundle's (clicks still centre on the result's own input)."""

from __future__ import annotations

import shutil
import sys

import pytest
from slicer_harness import qt_standin as qt
from slicer_module_stand import NAME, SKIP, load_volume, result_plot_widget, run_timer_until_idle, start_slicer

pytestmark = SKIP


@pytest.fixture()
def bundle(slicer_app, small_ct, swept_run, tmp_path):
    """An MRB of a scene with a finished run (made in one Slicer, which is then closed)."""
    node = load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    run = slicer_app.home / "tmp" / "run"
    shutil.copytree(swept_run, run / "out")
    from CTCounterfactualScene.engine_process import EngineProcess

    job = slicer_app.modules[NAME].EngineJob(
        EngineProcess([sys.executable, "-c", "pass"]), str(run), str(run / "out"), node, "explain"
    )
    widget.watchJob(job, "")
    run_timer_until_idle(widget, limit_s=60)
    mrb = tmp_path / "case.mrb"
    qt.QFileDialog.ANSWERS.append(str(mrb))
    widget.ui.exportSceneButton.click()
    results = widget.ui.resultsLabel.text
    slicer_app.close()
    return mrb, results


def _click_first_chunk(session) -> tuple[float, float]:
    """Click the first point of the per-chunk plot; (where the input view is now, where that chunk's centre is)."""
    from CTCounterfactualScene.result_layout import INPUT_VIEW, slice_node
    from CTCounterfactualScene.volume_nodes import slice_center_ras

    chart = next(
        session.scene.GetNthNodeByClass(i, "vtkMRMLPlotChartNode")
        for i in range(session.scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode"))
        if session.scene.GetNthNodeByClass(i, "vtkMRMLPlotChartNode").GetName().startswith("chest CF")
    )
    series = chart.GetNthPlotSeriesNode(0)
    centre = series.GetTableNode().GetTable().GetColumnByName("chunk_center").GetValue(0)
    result_plot_widget(session).plotView().click_points([series.GetID()], [[0]])
    chest = next(
        session.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
        for i in range(session.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))
        if session.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode").GetName() == "chest"
    )
    where = slice_node(session.scene, INPUT_VIEW).GetSliceToRAS().GetElement(2, 3)
    return where, slice_center_ras(chest, centre)[2]


def test_an_mrb_opened_while_the_panel_is_open_shows_its_result(slicer_app, bundle, tmp_path):
    mrb, results = bundle
    second = start_slicer(slicer_app.version, tmp_path / "second")
    try:
        widget = second.open_panel(NAME)
        assert not widget.ui.resultsCollapsibleButton.visible
        second.load_scene(mrb)
        second.app.processEvents()
        assert widget.ui.resultsCollapsibleButton.visible and widget.ui.resultsLabel.text == results
        where, centre = _click_first_chunk(second)
        assert where == pytest.approx(centre, abs=1e-3)
        from CTCounterfactualScene.result_layout import LAYOUT_ID

        second.app.layoutManager().setLayout(1)  # the user looks elsewhere, then comes back
        widget.ui.showResultsButton.click()
        assert second.app.layoutManager().layout == LAYOUT_ID
    finally:
        second.close()


def test_a_result_imported_among_clashing_ids_follows_its_own_input(slicer_app, bundle, small_ct, tmp_path):
    import SimpleITK as sitk

    mrb, _ = bundle
    other = tmp_path / "other.nrrd"
    image = sitk.ReadImage(str(small_ct))
    image.SetOrigin([o + 100.0 for o in image.GetOrigin()])  # elsewhere in space
    sitk.WriteImage(image, str(other))
    second = start_slicer(slicer_app.version, tmp_path / "second")
    try:
        load_volume(second, other, "other")  # takes the IDs the bundle's nodes had
        second.load_scene(mrb)  # imported: clashing IDs are renumbered
        widget = second.open_panel(NAME)
        second.app.processEvents()
        assert widget.ui.resultsCollapsibleButton.visible
        where, centre = _click_first_chunk(second)
        assert where == pytest.approx(centre, abs=1e-3)
    finally:
        second.close()
