"""The Slicer module executed on Slicer's real Python layer (5.10.0 and 5.12.3): panel, inputs, dependencies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from slicer_harness import ctk_standin
from slicer_harness import qt_standin as qt
from slicer_module_stand import NAME, SKIP, load_volume

pytestmark = SKIP
MODULE_ROOT = Path(__file__).resolve().parents[2]


def _depth(node) -> int:
    return node.GetImageData().GetDimensions()[2]


def test_panel_opens_and_binds_the_parameter_node(slicer_app, small_ct):
    node = load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    p = widget._parameterNode
    assert p.inputVolume is node and widget.ui.inputVolumeSelector.currentNode() is node
    assert (p.sliceRange.minimum, p.sliceRange.maximum) == (0, _depth(node) - 1)
    assert widget.ui.sliceRangeWidget.maximum == _depth(node) - 1
    assert widget.ui.applyButton.enabled
    # a value typed in the panel lands in the parameter node (the scene), and back
    widget.ui.chunkSizeSpinBox.value = 4
    assert p.chunkSize == 4
    p.mode = "joint"
    assert widget.ui.modeSelector.currentText == "joint"


def test_the_default_input_is_a_plain_scalar_volume(slicer_app, small_ct):
    """A label map loaded first is no input (the selector lists plain scalar volumes only, and would reset to None)."""
    labels = slicer_app.slicer.util.loadVolume(str(small_ct), {"name": "labels", "labelmap": True})
    assert labels.IsA("vtkMRMLLabelMapVolumeNode")
    node = load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    assert widget._parameterNode.inputVolume is node and widget.ui.inputVolumeSelector.currentNode() is node


def test_choosing_a_ct_with_another_slice_count(slicer_app, small_ct, tmp_path):
    import SimpleITK as sitk

    first = load_volume(slicer_app, small_ct, "chest")
    image = sitk.ReadImage(str(small_ct))[:, :, :10]
    sitk.WriteImage(image, str(tmp_path / "short.nrrd"))
    widget = slicer_app.open_panel(NAME)
    second = load_volume(slicer_app, tmp_path / "short.nrrd", "short")
    widget.ui.inputVolumeSelector.setCurrentNode(second)  # the user picks the other CT
    p = widget._parameterNode
    assert p.inputVolume is second and widget.ui.inputVolumeSelector.currentNode() is second
    assert (p.sliceRange.minimum, p.sliceRange.maximum) == (0, 9)
    assert widget.logic.request(p, "in.nrrd", "out").slices is None  # all slices of the new CT
    widget.ui.inputVolumeSelector.setCurrentNode(first)
    assert (p.sliceRange.minimum, p.sliceRange.maximum) == (0, _depth(first) - 1)


class BrokenTorch:
    """``import torch`` failing as a damaged install fails on Windows (OSError from a DLL), and every attempt noted."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            self.attempts.append(name)
            raise OSError("[WinError 126] The specified module could not be found (c10.dll)")
        return None


@pytest.fixture(params=["absent", "broken"])
def no_torch(request, monkeypatch, tmp_path):
    """A Slicer where torch is not installed (ImportError) or its import raises OSError; an empty model cache."""
    import sys

    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("CTCF_CACHE_DIR", str(tmp_path / "cache"))
    broken = BrokenTorch()
    if request.param == "absent":
        monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    else:
        monkeypatch.setattr(sys, "meta_path", [broken, *sys.meta_path])
    return broken


def test_panel_opens_and_lists_the_models_without_importing_torch(slicer_app, small_ct, no_torch):
    load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    assert widget.choices["demo-vqgan"].usable and widget.choices["demo-effusion"].usable
    assert widget.choices["ct-vqgan"].state == "not downloaded"  # the engine's own cache listing
    assert widget.ui.applyButton.enabled and not widget.ui.downloadModelButton.enabled
    # Generate checks the installed torch from its metadata: nothing is imported into Slicer, nothing is asked
    assert widget.logic.ensureDependencies()
    assert no_torch.attempts == [] and not ctk_standin.ctkMessageBox.SHOWN


@pytest.mark.parametrize("answer", ["Ok", "Cancel"])
def test_missing_python_packages_are_offered_and_no_is_respected(slicer_app, monkeypatch, answer):
    """5.12 has slicer.packaging.pip_ensure, 5.10 only slicer.util.pip_install; "No" never raises."""
    module = slicer_app.modules[NAME]
    logic = module.CTCounterfactualLogic()
    monkeypatch.setattr(module, "REQUIREMENTS", _requirements(slicer_app, "ctcf-not-a-real-package-xyz"))
    installed = []
    monkeypatch.setattr(slicer_app.slicer.util, "pip_install", lambda req, *a, **k: installed.append(req))
    if hasattr(slicer_app.slicer, "packaging") or slicer_app.version >= "5.12":
        import slicer.packaging

        monkeypatch.setattr(slicer.packaging, "pip_install", lambda req, *a, **k: installed.append(req))
    ctk_standin.ctkMessageBox.ANSWERS.append(getattr(qt.QMessageBox, answer))
    assert logic.ensureDependencies() is (answer == "Ok")
    assert bool(installed) is (answer == "Ok")
    assert "ctcf-not-a-real-package-xyz" in ctk_standin.ctkMessageBox.SHOWN[-1]


def _record_installs(slicer_app, monkeypatch, installed: list, error: Exception | None = None) -> None:
    """pip, as Slicer's Python layer calls it (5.12: slicer.packaging.pip_install; 5.10: slicer.util.pip_install)."""

    def pip_install(req, *args, **kwargs):
        installed.append(req)
        if error is not None:
            raise error

    monkeypatch.setattr(slicer_app.slicer.util, "pip_install", pip_install)
    if slicer_app.version >= "5.12":
        import slicer.packaging

        monkeypatch.setattr(slicer.packaging, "pip_install", pip_install)


@pytest.mark.parametrize("testing", [False, True])
def test_no_question_when_asked_not_to_and_the_self_test_installs(tmp_path, monkeypatch, testing):
    """ensureDependencies(ask=False) installs without a dialog, also under ``Slicer --testing`` (the self-test), where
    5.12's pip_ensure would otherwise skip the install."""
    from slicer_module_stand import start_slicer

    for version in ("5.10.0", "5.12.3"):
        session = start_slicer(version, tmp_path / version, testing=testing)
        try:
            module = session.modules[NAME]
            monkeypatch.setattr(module, "REQUIREMENTS", _requirements(session, "ctcf-not-a-real-package-xyz"))
            installed = []
            _record_installs(session, monkeypatch, installed)
            assert module.CTCounterfactualLogic().ensureDependencies(ask=False)
            assert installed and "ctcf-not-a-real-package-xyz" in str(installed[-1]), version
            assert not ctk_standin.ctkMessageBox.SHOWN, version
        finally:
            session.close()


def test_a_failing_install_is_one_message(slicer_app, monkeypatch):
    import subprocess

    module = slicer_app.modules[NAME]
    monkeypatch.setattr(module, "REQUIREMENTS", _requirements(slicer_app, "ctcf-not-a-real-package-xyz"))
    failure = subprocess.CalledProcessError(1, ["python", "-m", "pip", "install"], "no network")
    _record_installs(slicer_app, monkeypatch, [], failure)
    assert module.CTCounterfactualLogic().ensureDependencies(ask=False) is False
    assert "Could not install" in ctk_standin.ctkMessageBox.SHOWN[-1]


@pytest.mark.parametrize("version", [None, "2.0.1"])
def test_missing_or_too_old_torch_is_installed_with_the_minimum_version(slicer_app, monkeypatch, version):
    import PyTorchUtils
    from CTCounterfactualScene.dependencies import TORCH_REQUIREMENT
    from slicer_module_stand import installed_torch

    installed_torch(monkeypatch, version)
    calls = []
    monkeypatch.setattr(PyTorchUtils.PyTorchUtilsLogic, "installTorch", lambda self, **kw: calls.append(kw) or "torch")
    ctk_standin.ctkMessageBox.ANSWERS.append(qt.QMessageBox.Ok)
    assert slicer_app.modules[NAME].CTCounterfactualLogic().ensureDependencies()
    assert calls and calls[0]["torchVersionRequirement"] == str(TORCH_REQUIREMENT.specifier)
    assert (version or "not installed") in ctk_standin.ctkMessageBox.SHOWN[-1]


def test_a_failing_torch_install_is_one_message(slicer_app, monkeypatch):
    import subprocess

    import PyTorchUtils
    from slicer_module_stand import installed_torch

    installed_torch(monkeypatch, None)

    def fails(self, **kw):
        raise subprocess.CalledProcessError(1, ["light-the-torch", "install", "torch"])

    monkeypatch.setattr(PyTorchUtils.PyTorchUtilsLogic, "installTorch", fails)
    assert slicer_app.modules[NAME].CTCounterfactualLogic().ensureDependencies(ask=False) is False
    assert "Could not install" in ctk_standin.ctkMessageBox.SHOWN[-1]


def test_the_torch_requirement_is_the_engines():
    import tomllib
    from CTCounterfactualScene.dependencies import TORCH_REQUIREMENT
    from packaging.requirements import Requirement

    project = tomllib.loads((MODULE_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    engine = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "torch")
    assert engine == TORCH_REQUIREMENT


def _requirements(session, name: str):
    path = session.home / "requirements.txt"
    path.write_text(f"{name}\n", encoding="utf-8")
    return path


def test_defaults_are_the_engines_and_every_option_is_bound(slicer_app):
    from CTCounterfactualLib.params import HEATMAP_METHODS, SearchParams

    widget = slicer_app.open_panel(NAME)
    p, d = widget._parameterNode, SearchParams()
    bound = {w.property("SlicerParameterName"): w for w in widget.parent.findChildren(qt.QWidget)}
    bound.pop(None, None)
    # the lists that depend on the catalog and the chosen classifier are filled by the module itself
    assert set(p.allParameters) - set(bound) == {"autoencoder", "classifier", "target"}
    engine = {
        "predDiff": d.pred_diff,
        "predFloor": d.pred_floor,
        "stepSize": d.step_size,
        "maxSteps": d.max_steps,
        "maxPixelDiffPct": d.max_pixel_diff_pct,
        "lambdaSweepSteps": d.lambda_sweep_steps,
    }
    for name, value in engine.items():
        assert getattr(p, name) == pytest.approx(value) and bound[name].value == pytest.approx(value), name
    methods = bound["heatmapMethod"]
    assert p.heatmapMethod == d.heatmap_method == methods.currentText
    assert tuple(methods.itemText(i) for i in range(methods.count)) == HEATMAP_METHODS


def test_module_metadata_says_which_slicer(slicer_app):
    parent = slicer_app.slicer.modules.ctcounterfactual
    assert parent.title == "CT Counterfactual" and parent.categories == ["Explainability"]
    assert "Slicer 5.10 or newer" in parent.helpText and "not for clinical" in parent.helpText
    assert parent.icon is not None and os.path.isfile(parent.icon.path)


def test_plain_words_advanced_options_and_the_research_line(slicer_app):
    widget = slicer_app.open_panel(NAME)
    ui = widget.ui
    assert ui.disclaimerLabel.text == "Research software, not for clinical use." and ui.disclaimerLabel.visible
    labels = (ui.autoencoderSelectorLabel.text, ui.targetSelectorLabel.text)
    assert labels == ("Image model (VQ-GAN):", "Finding / output:")
    advanced = ui.advancedCollapsibleButton
    assert advanced.collapsed
    for name in ("deviceSelector", "heatmapMethodSelector", "predDiffSpinBox", "stepSizeSpinBox"):
        widget_ = getattr(ui, name)
        assert widget_ in advanced.findChildren(qt.QWidget) and widget_.toolTip, name
    assert not ui.resultsCollapsibleButton.visible  # no run yet


def test_last_choices_are_offered_in_a_new_scene(slicer_app, small_ct):
    widget = slicer_app.open_panel(NAME)
    widget.ui.modeSelector.activate(widget.ui.modeSelector.findText("joint"))
    widget.ui.chunkSizeSpinBox.value = 4
    widget.ui.classifierSelector.activate(widget.ui.classifierSelector.findData("demo-lungsize"))
    assert widget._parameterNode.classifier == "demo-lungsize"
    slicer_app.close_scene()
    p = widget._parameterNode
    assert (p.mode, p.chunkSize, p.classifier) == ("joint", 4, "demo-lungsize")
    assert widget.ui.modeSelector.currentText == "joint" and widget.ui.classifierSelector.currentData == "demo-lungsize"


def test_around_the_slice_of_the_view_the_user_looks_at(slicer_app, small_ct, swept_run):
    """After a run the result layout shows no Red view: "Around current slice" follows its first slice view."""
    import shutil
    import sys

    from CTCounterfactualScene.engine_process import EngineProcess
    from CTCounterfactualScene.result_layout import INPUT_VIEW, LAYOUT_ID, slice_node
    from CTCounterfactualScene.volume_nodes import slice_center_ras
    from slicer_module_stand import run_timer_until_idle

    node = load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    run = slicer_app.home / "tmp" / "run"
    shutil.copytree(swept_run, run / "out")
    job = slicer_app.modules[NAME].EngineJob(
        EngineProcess([sys.executable, "-c", "pass"]), str(run), str(run / "out"), node, "explain"
    )
    widget.watchJob(job, "")
    run_timer_until_idle(widget, limit_s=60)
    assert slicer_app.app.layoutManager().layout == LAYOUT_ID
    slicer_app.scene.GetNodeByID("vtkMRMLSliceNodeRed").JumpSliceByCentering(*slice_center_ras(node, 2))
    slice_node(slicer_app.scene, INPUT_VIEW).JumpSliceByCentering(*slice_center_ras(node, 17))  # where the user is
    ui = widget.ui
    ui.sliceChoiceSelector.activate(ui.sliceChoiceSelector.findText("Around current slice"))
    ui.aroundSlicesSpinBox.value = 2
    assert widget.logic.request(widget._parameterNode, "in.nrrd", "out").slices == (15, 20)


def test_slices_all_around_the_red_view_or_a_custom_range(slicer_app, small_ct):
    from CTCounterfactualScene.volume_nodes import slice_center_ras

    node = load_volume(slicer_app, small_ct, "chest")
    widget = slicer_app.open_panel(NAME)
    ui, p = widget.ui, widget._parameterNode
    assert ui.sliceChoiceSelector.currentText == "All slices" and not ui.sliceRangeWidget.enabled
    assert widget.logic.request(p, "in.nrrd", "out").slices is None
    red = slicer_app.scene.GetNodeByID("vtkMRMLSliceNodeRed")
    red.JumpSliceByCentering(*slice_center_ras(node, 12))
    ui.sliceChoiceSelector.activate(ui.sliceChoiceSelector.findText("Around current slice"))
    assert ui.aroundSlicesSpinBox.enabled and not ui.sliceRangeWidget.enabled
    ui.aroundSlicesSpinBox.value = 3
    assert widget.logic.request(p, "in.nrrd", "out").slices == (9, 16)
    ui.sliceChoiceSelector.activate(ui.sliceChoiceSelector.findText("Custom range"))
    assert ui.sliceRangeWidget.enabled
    ui.sliceRangeWidget.setValues(4, 19)
    assert widget.logic.request(p, "in.nrrd", "out").slices == (4, 20)
    ui.sliceRangeWidget.setValues(-5, 500)  # the widget keeps the range inside the CT
    assert widget.logic.request(p, "in.nrrd", "out").slices is None


def test_the_panel_shows_the_chosen_models_details(slicer_app):
    from CTCounterfactualLib.store.catalog import read_catalog

    widget = slicer_app.open_panel(NAME)
    catalog = read_catalog()
    details = widget.ui.modelDetailsLabel.text
    for name in ("demo-vqgan", "demo-effusion"):
        assert catalog[name].notes in details and catalog[name].license in details, name
    assert "MiB" in details
    widget.ui.classifierSelector.activate(widget.ui.classifierSelector.findData("merlin-phecodes"))
    details = widget.ui.modelDetailsLabel.text
    merlin = catalog["merlin-phecodes"]
    assert merlin.citation in details and merlin.license in details and "not downloaded" in details
    assert catalog["demo-effusion"].notes not in details


def test_open_and_clear_the_model_cache(slicer_app, monkeypatch, tmp_path):
    from CTCounterfactualLib.store.catalog import read_catalog

    cache = tmp_path / "cache"
    monkeypatch.setenv("CTCF_CACHE_DIR", str(cache))
    widget = slicer_app.open_panel(NAME)
    widget.ui.openModelCacheButton.click()
    assert qt.QDesktopServices.OPENED == [cache.as_uri()] and cache.is_dir()
    widget.ui.clearModelCacheButton.click()  # nothing downloaded: nothing to ask
    assert "no downloaded models" in widget.ui.statusLabel.text and not ctk_standin.ctkMessageBox.SHOWN
    entry = read_catalog()["ct-vqgan"]
    for f in entry.files:
        (cache / entry.name).mkdir(exist_ok=True)
        (cache / entry.name / f.name).write_bytes(b"x" * 2**20)
    ctk_standin.ctkMessageBox.ANSWERS.append(qt.QMessageBox.Cancel)
    widget.ui.clearModelCacheButton.click()
    assert f"({len(entry.files):.1f} MiB)" in ctk_standin.ctkMessageBox.SHOWN[-1]
    assert (cache / entry.name).is_dir()  # "Cancel": nothing deleted
    ctk_standin.ctkMessageBox.ANSWERS.append(qt.QMessageBox.Ok)
    widget.ui.clearModelCacheButton.click()
    assert not (cache / entry.name).exists() and "cleared" in widget.ui.statusLabel.text
    assert widget.choices["ct-vqgan"].state == "not downloaded"
