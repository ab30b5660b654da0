"""Results survive every way of saving: File / Save with the dialog's own proposals, Export scene then File / Save
to a new folder; each reopens in a new Slicer with every result volume's voxels equal."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
from mrml_scene import voxels
from slicer_harness import qt_standin as qt
from slicer_module_stand import NAME, SKIP, load_volume, run_timer_until_idle, start_slicer

pytestmark = SKIP
ROLE = "CTCounterfactual.Role"


def _volumes(scene) -> list:
    cls = "vtkMRMLScalarVolumeNode"
    return [scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls))]


@pytest.fixture()
def results(slicer_app, small_ct, swept_run):
    """The panel after a finished run: its outputs loaded from the run's folder, which is then deleted."""
    node = load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    run = slicer_app.home / "tmp" / "CTCounterfactual-run"
    shutil.copytree(swept_run, run / "out")
    module = slicer_app.modules[NAME]
    from CTCounterfactualScene.engine_process import EngineProcess

    job = module.EngineJob(EngineProcess([sys.executable, "-c", "pass"]), str(run), str(run / "out"), node, "explain")
    widget.watchJob(job, "Starting the engine...")
    run_timer_until_idle(widget, limit_s=60)
    assert not run.exists() and widget.ui.statusLabel.text.startswith("Done"), widget.ui.statusLabel.text
    saved = {n.GetName(): voxels(n).copy() for n in _volumes(slicer_app.scene)}
    assert {n.GetAttribute(ROLE) for n in _volumes(slicer_app.scene)} >= {"counterfactual", "heatmap"}
    return widget, run, saved


def _reopen_and_compare(slicer_app, mrml, saved: dict, tmp_path) -> None:
    slicer_app.close()
    again = start_slicer(slicer_app.version, tmp_path / "again")
    try:
        again.load_scene(mrml)
        reloaded = {n.GetName(): n for n in _volumes(again.scene)}
        assert set(saved) <= set(reloaded)
        for name, array in saved.items():
            assert reloaded[name].GetImageData() is not None, f"{name} was not saved"
            np.testing.assert_array_equal(voxels(reloaded[name]), array, err_msg=name)
    finally:
        again.close()


def test_save_with_the_dialogs_proposals_writes_nothing_into_the_run_folder(slicer_app, results, tmp_path):
    widget, run, saved = results
    for node in _volumes(slicer_app.scene):
        if node.GetAttribute(ROLE):
            storage = node.GetStorageNode()
            assert storage is None or not storage.GetFileName(), "a result still names a file in the run folder"
            assert node.GetModifiedSinceRead(), "a result is not marked for saving"
    mrml = slicer_app.save_scene()  # File / Save, every proposal as it is
    assert not run.exists(), "File / Save wrote into the deleted run folder"
    _reopen_and_compare(slicer_app, mrml, saved, tmp_path)


def test_export_then_save_to_a_new_folder_keeps_every_result(slicer_app, results, tmp_path):
    widget, run, saved = results
    mrb = tmp_path / "exports" / "case.mrb"
    qt.QFileDialog.ANSWERS.append(str(mrb))
    widget.ui.exportSceneButton.click()
    assert mrb.is_file() and "exported" in widget.ui.statusLabel.text
    for node in _volumes(slicer_app.scene):
        assert node.GetModifiedSinceRead() or not node.GetAttribute(ROLE), node.GetName()
    mrml = slicer_app.save_scene(tmp_path / "saved")  # File / Save, the folder button set to a new folder
    assert not run.exists()
    _reopen_and_compare(slicer_app, mrml, saved, tmp_path)
