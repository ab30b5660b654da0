"""CT Counterfactual: explain a 3D CT classifier with counterfactual volumes (Latent Shift), inside 3D Slicer.

The Widget only wires the panel to the Logic. The Logic writes the input to a temporary NRRD, runs the
engine (``CTCounterfactualLib``, the ``ctcf`` CLI) in a separate PythonSlicer process, and loads its
outputs with ``CTCounterfactualScene`` (tested without the Slicer application on PyPI slicer-core).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from CTCounterfactualScene.engine_process import (
    ENGINE_PARENT,
    EngineProcess,
    ExplainRequest,
    engine_environment,
    explain_arguments,
    serve_command,
)
from CTCounterfactualScene.engine_server import EngineServer, ServedRun
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.parameterNodeWrapper import Choice, Default, FloatRange, RangeBounds, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The engine sits beside this file once installed, and one folder up in the source tree.
if str(ENGINE_PARENT) not in sys.path:
    sys.path.insert(0, str(ENGINE_PARENT))

from CTCounterfactualScene.contract import params  # noqa: E402
from CTCounterfactualScene.dependencies import TORCH_REQUIREMENT, torch_problem  # noqa: E402
from CTCounterfactualScene.download_job import download_command  # noqa: E402
from CTCounterfactualScene.model_choices import LOAD_FROM_FILE, model_choices, targets_of_file  # noqa: E402
from CTCounterfactualScene.panel_text import (  # noqa: E402
    done_text,
    model_details,
    progress_text,
    results_text,
    results_title,
    size_text,
)
from CTCounterfactualScene.result_layout import (  # noqa: E402
    RESULT_VIEW,
    composite_node,
    register_layout,
    restore_layout,
    show_result,
)
from CTCounterfactualScene.results_to_scene import (  # noqa: E402
    ResultNodes,
    input_of,
    is_result_table,
    jump_to_chunk,
    latest_result,
    load_results,
)
from CTCounterfactualScene.sample_data import register_demo_sample  # noqa: E402
from CTCounterfactualScene.scene_export import export_mrb  # noqa: E402
from CTCounterfactualScene.slice_choice import ALL as ALL_SLICES  # noqa: E402
from CTCounterfactualScene.slice_choice import (  # noqa: E402
    AROUND,
    CUSTOM,
    SLICE_CHOICES,
    chosen_slices,
    current_slice,
    first_slice_view,
)
from CTCounterfactualScene.volume_nodes import first_plain_volume, show_as_heatmap, write_volume_file  # noqa: E402

REQUIREMENTS = Path(__file__).resolve().parent / "Resources" / "requirements.txt"
SEARCH_DEFAULTS = params.SearchParams()  # the engine's own defaults (torch-free module)
# the user's last choices, offered again in every new scene (QSettings keys under "CTCounterfactual/")
REMEMBERED = ("autoencoder", "classifier", "target", "mode", "chunkSize")
RECALLED_ATTRIBUTE = "CTCounterfactual.Recalled"  # on a parameter node that got them already
ENGINE_LOG = "CT Counterfactual engine: "  # the engine's output in Slicer's application log starts so


class CTCounterfactual(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("CT Counterfactual")
        self.parent.categories = [_("Explainability")]
        self.parent.dependencies = []
        self.parent.contributors = ["CTCounterfactual developers"]
        self.parent.helpText = _(
            "Explains a 3D CT classifier's prediction with a counterfactual (CF) volume: the CT is encoded slice "
            "by slice with a VQ-GAN, the classifier's gradient shifts the latents of the chosen slices until the "
            "prediction falls, and the result is decoded. <b>scan</b> makes one CF per chunk of slices (the "
            "per-chunk plot shows where the classifier looks); <b>joint</b> moves the whole range at once.<br>"
            "Outputs: CF, reconstruction, heatmap (over the CF, linked views), per-chunk table and plot (click a "
            "point to jump there), and the lambda sweep as a sequence. Compare the CF with the reconstruction, "
            "not with the input. Export scene writes everything to one .mrb file.<br>"
            "The engine runs in its own process, started by the first Generate and kept for the session: the models "
            "stay loaded, and another run on the same CT, models and target (another chunk size, search setting or "
            "range) starts its search at once. Before a run that encodes the CT the status line gives an estimate "
            "of its time and memory; a run that does not fit is refused. Cancel stops the run and leaves the scene "
            "as it was. The model section shows each model's use, licence and citation, and opens or clears the "
            "model cache.<br>"
            "Research software: not for clinical decisions. Requires 3D Slicer 5.10 or newer."
        )
        self.parent.acknowledgementText = _(
            "Method: Cohen, Blankemeier, Chaudhari, 'Explaining 3D Computed Tomography Classifiers with "
            "Counterfactuals'. Example CT data: TotalSegmentator example (CC BY 4.0)."
        )
        slicer.app.connect("startupCompleted()", registerResultLayout)
        slicer.app.connect("startupCompleted()", register_demo_sample)  # Sample Data: the demo chest CT
        slicer.app.connect("aboutToQuit()", stopEngine)  # the engine process ends with Slicer


def registerResultLayout() -> None:
    """At startup: the result layout is known in every scene, and a loaded scene that shows it gets it back."""
    register_layout(slicer.mrmlScene)
    slicer.mrmlScene.AddObserver(slicer.mrmlScene.EndImportEvent, lambda *a: restore_layout(slicer.mrmlScene))


@parameterNodeWrapper
class CTCounterfactualParameterNode:
    """Panel state, saved with the scene. Search defaults are the reference's (``SearchParams``)."""

    inputVolume: vtkMRMLScalarVolumeNode
    autoencoder: str = "demo-vqgan"
    classifier: str = "demo-effusion"
    target: str = ""
    # first and last slice, inclusive; the widget's maximum follows the input (the bound is what the binding needs;
    # the default goes inside the annotation, where Slicer's range connector validates it)
    sliceRange: Annotated[FloatRange, RangeBounds(0, 100000), Default(FloatRange(0, 0))]
    sliceChoice: Annotated[str, Choice(list(SLICE_CHOICES))] = ALL_SLICES
    aroundSlices: Annotated[int, WithinRange(1, 1000)] = 10  # ± this many around the first slice view's slice
    chunkSize: Annotated[int, WithinRange(1, 1000)] = params.DEFAULT_CHUNK_SIZE
    mode: Annotated[str, Choice(list(params.MODES))] = params.DEFAULT_MODE
    device: Annotated[str, Choice(list(params.DEVICES))] = params.DEFAULT_DEVICE
    predDiff: Annotated[float, WithinRange(0, 1)] = SEARCH_DEFAULTS.pred_diff
    predFloor: Annotated[float, WithinRange(0, 1)] = SEARCH_DEFAULTS.pred_floor
    stepSize: Annotated[float, WithinRange(0.01, 100000)] = SEARCH_DEFAULTS.step_size
    maxSteps: Annotated[float, WithinRange(1, 10000000)] = SEARCH_DEFAULTS.max_steps
    maxPixelDiffPct: Annotated[float, WithinRange(0.001, 1)] = SEARCH_DEFAULTS.max_pixel_diff_pct
    lambdaSweepSteps: Annotated[int, WithinRange(2, 100)] = SEARCH_DEFAULTS.lambda_sweep_steps
    heatmapMethod: Annotated[str, Choice(list(params.HEATMAP_METHODS))] = SEARCH_DEFAULTS.heatmap_method
    lambdaScale: Annotated[str, Choice(list(params.LAMBDA_SCALES))] = SEARCH_DEFAULTS.lambda_scale
    outputMap: Annotated[str, Choice(list(params.OUTPUT_MAPS))] = params.DEFAULT_OUTPUT_MAP
    searchResolution: Annotated[str, Choice(list(params.SEARCH_RESOLUTIONS))] = params.DEFAULT_SEARCH_RESOLUTION
    batchSize: Annotated[int, WithinRange(1, 256)] = params.DEFAULT_BATCH_SIZE
    keepSweep: bool = True


class CTCounterfactualWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: selectors bound to the parameter node, Generate/Cancel, progress, log, export."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic: CTCounterfactualLogic | None = None
        self._parameterNode: CTCounterfactualParameterNode | None = None
        self._parameterNodeGuiTag = None
        self.job: EngineJob | None = None
        self.connectedPlotViews: set[str] = set()
        self.choices: dict = {}  # catalog name -> ModelChoice, filled by fillModelSelectors
        self.lastResult: ResultNodes | None = None  # the run the results box describes
        self._updatingGui = False
        self._rangeInputID: str | None = None  # the input whose slice count the slice range was set for
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onTimer)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/CTCounterfactual.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = CTCounterfactualLogic()
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.exportSceneButton.connect("clicked(bool)", self.onExportScene)
        self.ui.downloadModelButton.connect("clicked(bool)", self.onDownload)
        self.ui.openModelCacheButton.connect("clicked(bool)", self.onOpenModelCache)
        self.ui.clearModelCacheButton.connect("clicked(bool)", self.onClearModelCache)
        self.ui.autoencoderSelector.connect("activated(int)", lambda i: self.onModelChosen("autoencoder"))
        self.ui.classifierSelector.connect("activated(int)", lambda i: self.onModelChosen("classifier"))
        self.ui.targetSelector.connect("currentTextChanged(QString)", self.onTargetChanged)
        self.ui.showResultsButton.connect("clicked(bool)", self.onShowResults)
        self.ui.heatmapOpacitySlider.connect("valueChanged(double)", self.onHeatmapDisplay)
        self.ui.heatmapThresholdSlider.connect("valueChanged(double)", self.onHeatmapDisplay)
        self.fillModelSelectors()
        self.initializeParameterNode()
        self.onSceneEndImport()  # a scene with results may have been opened before the module

    def cleanup(self) -> None:
        """The module is unloaded (application exit): stop polling, stop the run and the engine, remove its folder."""
        self.timer.stop()
        self.removeObservers()
        if self.job is not None:
            self.job.cancel()
            self.job.cleanup()
            self.job = None
        stopEngine()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        if self.job is not None and self.job.kind == "explain":  # its input is leaving with the scene
            self.job.discard = True
            self.job.process.request_cancel()
        self.lastResult = None
        self.ui.resultsCollapsibleButton.visible = False
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller=None, event=None) -> None:
        """A scene was opened or imported (an MRB): the results box describes its latest run, unless a run made since
        Slicer started is still in the scene; plot clicks are connected once the layout has made its plot view."""
        current = self.lastResult
        if current is None or slicer.mrmlScene.GetNodeByID(current.counterfactual) is None:
            loaded = latest_result(slicer.mrmlScene)
            if loaded is not None:
                self.showResultsBox(loaded)
        qt.QTimer.singleShot(0, self.connectPlotClicks)  # after the layout manager has built the restored layout

    def showResultsBox(self, result: ResultNodes) -> None:
        """The results box and the heatmap controls act on ``result``."""
        self.lastResult = result
        self.ui.resultsLabel.text = results_text(result.summary)
        self.ui.resultsCollapsibleButton.text = results_title(result.summary)
        self.ui.resultsCollapsibleButton.visible = True
        self.onHeatmapDisplay()

    def initializeParameterNode(self) -> None:
        node = self.logic.getParameterNode()
        if not node.parameterNode.GetAttribute(RECALLED_ATTRIBUTE):  # new in this scene: the last choices
            node.parameterNode.SetAttribute(RECALLED_ATTRIBUTE, "1")
            recallChoices(node)
        self.setParameterNode(node)
        if not self._parameterNode.inputVolume:
            first = first_plain_volume(slicer.mrmlScene)
            if first:
                self._parameterNode.inputVolume = first

    def setParameterNode(self, node: CTCounterfactualParameterNode | None) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateGui)
        self._parameterNode = node
        # a saved scene keeps its range; a different input later resets it to all of that input's slices
        self._rangeInputID = node.inputVolume.GetID() if node and node.inputVolume else None
        if node:
            self._parameterNodeGuiTag = node.connectGui(self.ui)
            self.addObserver(node, vtk.vtkCommand.ModifiedEvent, self.updateGui)
            self.updateGui()

    # --- models and targets (their lists depend on the catalog and the chosen classifier)

    def fillModelSelectors(self) -> None:
        """List the catalog models with their state (re-read after a download; hashing is not free)."""
        self.choices = {}
        for kind, combo in (("autoencoder", self.ui.autoencoderSelector), ("classifier", self.ui.classifierSelector)):
            combo.clear()
            for choice in model_choices(kind):
                combo.addItem(choice.label, choice.name)
                self.choices[choice.name] = choice
            combo.addItem(LOAD_FROM_FILE, "")

    def onModelChosen(self, kind: str) -> None:
        combo = self.ui.autoencoderSelector if kind == "autoencoder" else self.ui.classifierSelector
        value = combo.currentData
        if not value:  # "Load from file..."
            value = qt.QFileDialog.getOpenFileName(
                slicer.util.mainWindow(),
                _("Choose the {kind} weights").format(kind=kind),
                "",
                "Weights (*.pt *.pth *.ckpt)",
            )
            if not value:
                self.updateGui()
                return
        setattr(self._parameterNode, kind, value)

    def targetNames(self) -> list[str]:
        name = self._parameterNode.classifier
        if os.path.isfile(name):
            return targets_of_file(name)
        return self.choices[name].targets if name in self.choices else []

    def onTargetChanged(self, text: str) -> None:
        if self._parameterNode and not self._updatingGui and text and self._parameterNode.target != text:
            self._parameterNode.target = text

    def followInput(self) -> None:
        """The slice range's bound is the input's last slice; a newly chosen input gets all its slices."""
        p = self._parameterNode
        node = p.inputVolume
        if node is None or node.GetImageData() is None:
            self._rangeInputID = None
            return
        last = node.GetImageData().GetDimensions()[2] - 1
        self.ui.sliceRangeWidget.maximum = last
        if node.GetID() != self._rangeInputID:
            self._rangeInputID = node.GetID()
            p.sliceRange = FloatRange(0, last)

    def updateGui(self, caller=None, event=None) -> None:
        if self._parameterNode is None or self._updatingGui:
            return
        rememberChoices(self._parameterNode)
        self._updatingGui = True  # filling the lists emits signals that would write back and re-enter
        try:
            self._updateGui()
        finally:
            self._updatingGui = False

    def _updateGui(self) -> None:
        p = self._parameterNode
        for kind, combo in (("autoencoder", self.ui.autoencoderSelector), ("classifier", self.ui.classifierSelector)):
            value = getattr(p, kind)
            index = combo.findData(value)
            if index < 0 and value:  # a file chosen earlier or saved in the scene
                combo.insertItem(combo.count - 1, os.path.basename(value), value)
                index = combo.findData(value)
            combo.setCurrentIndex(index)
        targets = self.targetNames()
        if [self.ui.targetSelector.itemText(i) for i in range(self.ui.targetSelector.count)] != targets:
            self.ui.targetSelector.clear()
            self.ui.targetSelector.addItems(targets)
        if targets and p.target not in targets:
            p.target = targets[0]
        self.ui.targetSelector.setCurrentText(p.target)
        missing = [n for n in (p.autoencoder, p.classifier) if n in self.choices and not self.choices[n].usable]
        self.ui.downloadModelButton.enabled = bool(missing) and self.job is None
        self.ui.modelStateLabel.text = (
            _("Not downloaded yet: {names}").format(names=", ".join(missing)) if missing else ""
        )
        chosen = [v for v in (p.autoencoder, p.classifier) if v]
        self.ui.modelDetailsLabel.text = "\n\n".join(model_details(self.choices.get(v), v) for v in chosen)
        self.ui.clearModelCacheButton.enabled = self.job is None  # not while a run or download reads the files
        self.followInput()
        self.ui.sliceRangeWidget.enabled = p.sliceChoice == CUSTOM
        self.ui.aroundSlicesSpinBox.enabled = p.sliceChoice == AROUND
        ready = bool(p.inputVolume and p.target and not missing)
        cancelling = self.job is not None and self.job.process.state != "running"
        self.ui.applyButton.enabled = (ready or self.job is not None) and not cancelling
        self.ui.applyButton.text = _("Cancel") if self.job is not None else _("Generate counterfactual")

    # --- running

    def onApplyButton(self) -> None:
        if self.job is not None:  # Cancel: ask the engine to stop; the timer sees it end (the GUI never waits)
            self.job.process.request_cancel()
            self.ui.statusLabel.text = _("Cancelling...")
            self.updateGui()
            return
        if not self.logic.ensureDependencies():
            return
        try:
            job = self.logic.start(self._parameterNode)
        except Exception as e:
            slicer.util.errorDisplay(_("Could not start: {error}").format(error=e))
            return
        self.watchJob(job, _("Starting the engine..."))

    def watchJob(self, job: EngineJob, status: str) -> None:
        """Show a started job (run or download) and poll it on the timer until it ends."""
        self.job = job
        self.ui.logText.clear()
        self.ui.progressBar.visible = True
        self.ui.progressBar.setRange(0, 0)
        self.ui.statusLabel.text = status
        self.timer.start()
        self.updateGui()

    def onTimer(self) -> None:
        job = self.job
        for event in job.process.poll():
            if event["total"]:
                self.ui.progressBar.setRange(0, event["total"])
                self.ui.progressBar.value = event["done"]
            now = time.monotonic()
            if event["stage"] != job.stage:  # each stage once in Slicer's application log, with what it does
                job.stage, job.stage_started = event["stage"], now
                logging.info("%s%s: %s", ENGINE_LOG, event["stage"], event["message"])
            self.ui.statusLabel.text = progress_text(
                event["stage"],
                event["message"],
                event["done"],
                event["total"],
                now - job.started,
                now - job.stage_started,
            )
        for line in job.process.log[job.shown_log :]:
            self.ui.logText.appendPlainText(line)
            logging.info("%s%s", ENGINE_LOG, line)  # also in Slicer's application log
        job.shown_log = len(job.process.log)
        if job.process.state == "running":
            return
        if job.process.state == "cancelled" or job.discard:
            if not job.process.stopped:
                return  # still stopping; poll() kills it after its grace time
            self.finishJob()
            self.ui.statusLabel.text = _("Cancelled; the scene was not changed.")
            logging.info("%s%s", ENGINE_LOG, self.ui.statusLabel.text)
            return
        try:
            if job.kind == "download":
                self.fillModelSelectors()
                done = job.process.state == "done"
                self.ui.statusLabel.text = (
                    _("Downloaded and verified.")
                    if done
                    else _("Download failed: {error}").format(error=job.process.error)
                )
            elif job.process.state == "done":
                try:
                    result = self.logic.finish(job)
                except Exception as e:  # nothing of it stays in the scene (see load_results)
                    self.ui.statusLabel.text = _("Failed to load the results: {error}").format(error=e)
                    self.ui.logText.appendPlainText(str(e))
                    self.ui.logCollapsibleButton.collapsed = False
                    return
                self.ui.statusLabel.text = done_text(time.monotonic() - job.started, result.summary)
                self.showResultsBox(result)
                slicer.app.processEvents()  # let the layout manager create the plot view first
                self.connectPlotClicks()
            else:
                self.ui.statusLabel.text = _("Failed: {error}").format(error=job.process.error)
                self.ui.logCollapsibleButton.collapsed = False
                if (job.process.failure or {}).get("out_of_memory"):  # refused before any work: say so plainly
                    slicer.util.warningDisplay(
                        _("This run does not fit in memory: {error}").format(error=job.process.error)
                    )
        finally:
            self.finishJob()
            logging.info("%s%s", ENGINE_LOG, self.ui.statusLabel.text)

    def finishJob(self) -> None:
        self.timer.stop()
        if self.job is not None:
            self.job.cleanup()
        self.job = None
        self.ui.progressBar.visible = False
        self.updateGui()

    def onDownload(self) -> None:
        if self.job is not None or not self.logic.ensureDependencies():
            return
        p = self._parameterNode
        names = [n for n in (p.autoencoder, p.classifier) if n in self.choices and not self.choices[n].usable]
        if not names:
            return
        self.watchJob(self.logic.download(names), _("Downloading {names}...").format(names=", ".join(names)))

    def onOpenModelCache(self) -> None:
        """Show the model cache folder in the system's file browser (made if it does not exist yet)."""
        folder = model_cache_folder()
        folder.mkdir(parents=True, exist_ok=True)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(folder)))

    def onClearModelCache(self) -> None:
        """Delete the downloaded models after asking; the bundled ones stay."""
        from CTCounterfactualLib.store.cache import cached_files, clear_cache

        folder, files = model_cache_folder(), cached_files()
        if not files:
            self.ui.statusLabel.text = _("The model cache holds no downloaded models ({folder}).").format(folder=folder)
            return
        size = size_text(sum(f.stat().st_size for f in files))
        question = _("Delete the downloaded models ({size}) in {folder}? They can be downloaded again.")
        if not slicer.util.confirmOkCancelDisplay(question.format(size=size, folder=folder)):
            return
        with slicer.util.tryWithErrorDisplay(_("Could not clear the model cache."), waitCursor=True):
            freed = clear_cache()
            self.ui.statusLabel.text = _("Model cache cleared: {size} freed.").format(size=size_text(freed))
        self.fillModelSelectors()
        self.updateGui()

    def onExportScene(self) -> None:
        path = qt.QFileDialog.getSaveFileName(
            slicer.util.mainWindow(), _("Export scene"), "counterfactual.mrb", "Medical Reality Bundle (*.mrb)"
        )
        if path:
            with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
                self.logic.exportScene(path)
                self.ui.statusLabel.text = _("Scene exported to {path}").format(path=path)

    def onShowResults(self) -> None:
        """Bring back the linked views and the plot of the last run (after the user changed the layout), this
        session's or the opened scene's."""
        r = self.lastResult
        if r is None or slicer.mrmlScene.GetNodeByID(r.counterfactual) is None:
            r = latest_result(slicer.mrmlScene)
            if r is None:
                return
            self.showResultsBox(r)
        table = slicer.mrmlScene.GetNodeByID(r.table)
        show_result(
            slicer.mrmlScene,
            input_of(table).GetID() if input_of(table) is not None else None,
            r.counterfactual,
            r.heatmap,
            r.chart,
            self.ui.heatmapOpacitySlider.value,
        )
        slicer.app.processEvents()
        self.connectPlotClicks()

    def onHeatmapDisplay(self) -> None:
        """Opacity of the heatmap over the CF, and the share of its maximum below which it is transparent."""
        r = self.lastResult
        heatmap = slicer.mrmlScene.GetNodeByID(r.heatmap) if r is not None else None
        if heatmap is None:
            return
        composite_node(slicer.mrmlScene, RESULT_VIEW).SetForegroundOpacity(self.ui.heatmapOpacitySlider.value)
        show_as_heatmap(slicer.mrmlScene, heatmap, self.ui.heatmapThresholdSlider.value / 100.0)

    def connectPlotClicks(self) -> None:
        """A click on a point of the per-chunk plot centres the linked views on that chunk.

        Plot views exist only once a layout shows one, so this runs again after every result.
        """
        lm = slicer.app.layoutManager()
        for i in range(lm.plotViewCount):
            widget = lm.plotWidget(i)
            key = widget.mrmlPlotViewNode().GetID() if widget.mrmlPlotViewNode() else str(i)
            if key not in self.connectedPlotViews:
                widget.plotView().connect("dataSelected(vtkStringArray*, vtkCollection*)", self.onPlotSelection)
                self.connectedPlotViews.add(key)

    def onPlotSelection(self, seriesIds, selections) -> None:
        """A click on a point of one of our per-chunk plots; points of other charts are not ours to handle."""
        for i in range(seriesIds.GetNumberOfValues()):
            series = slicer.mrmlScene.GetNodeByID(seriesIds.GetValue(i))
            table = series.GetTableNode() if series is not None and series.IsA("vtkMRMLPlotSeriesNode") else None
            rows = selections.GetItemAsObject(i)
            if not is_result_table(table) or rows is None or not rows.GetNumberOfTuples():
                continue
            jump_to_chunk(slicer.mrmlScene, table, int(rows.GetValue(0)))
            return


class EngineJob:
    """A started engine run: the process, its temporary folder, and where the results go in the scene."""

    def __init__(
        self, process: EngineProcess | ServedRun, workdir: str | None, out_dir: str | None, input_node, kind: str
    ) -> None:
        self.process, self.workdir, self.out_dir, self.input_node = process, workdir, out_dir, input_node
        self.kind = kind  # explain | download
        self.shown_log = 0
        self.discard = False  # the scene it belonged to was closed: never load its results
        self.started = time.monotonic()
        self.stage, self.stage_started = "", self.started  # the progress stage now running, for its time left

    def cancel(self) -> None:
        self.process.cancel()

    def cleanup(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class CTCounterfactualLogic(ScriptedLoadableModuleLogic):
    """Runs the engine for a parameter node and puts its outputs in the scene. Usable without the GUI."""

    def getParameterNode(self) -> CTCounterfactualParameterNode:
        return CTCounterfactualParameterNode(super().getParameterNode())

    def ensureDependencies(self, ask: bool = True) -> bool:
        """torch (at least ``TORCH_REQUIREMENT``) through the PyTorch extension, the engine's small pure-Python needs
        through pip; asks first unless ``ask`` is False. Checked from package metadata: nothing is imported into
        Slicer. Any failure (declined, pip or the PyTorch install failing) is one message and False."""
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(_("Install the PyTorch extension (Extensions Manager) and restart Slicer."))
            return False
        try:
            problem = torch_problem()
            if problem is not None:
                question = _("{problem}. Install PyTorch {requirement} now?").format(
                    problem=problem, requirement=TORCH_REQUIREMENT.specifier
                )
                if ask and not slicer.util.confirmOkCancelDisplay(question):
                    return False
                requirement = str(TORCH_REQUIREMENT.specifier)
                installed = PyTorchUtils.PyTorchUtilsLogic().installTorch(
                    askConfirmation=False, torchVersionRequirement=requirement
                )
                if installed is None:
                    return False
            return self._ensurePackages(ask)
        except Exception as e:  # pip's CalledProcessError, a failed PyTorch install, a broken environment
            slicer.util.errorDisplay(
                _("Could not install what CT Counterfactual needs: {error}").format(
                    error=str(e).strip() or type(e).__name__
                )
            )
            return False

    def _ensurePackages(self, ask: bool) -> bool:
        """The packages in Resources/requirements.txt; False if the user says no."""
        try:
            import slicer.packaging as packaging  # Slicer 5.12 and newer
        except ImportError:
            packaging = None
        if packaging is not None:
            try:
                # skip_in_testing=False: under --testing pip_ensure would otherwise return without installing, and the
                # self-test would run without the engine's packages
                packaging.pip_ensure(
                    packaging.load_requirements(str(REQUIREMENTS)),
                    requester="CTCounterfactual",
                    prompt_install=ask,
                    skip_in_testing=False,
                )
            except RuntimeError:  # the user said no (pip_ensure raises then)
                return False
            return True
        missing = [r for r in REQUIREMENTS.read_text(encoding="utf-8").split() if not _importable(r)]  # Slicer 5.10
        if missing:
            if ask and not slicer.util.confirmOkCancelDisplay(
                _("CT Counterfactual needs {names}. Install now?").format(names=", ".join(missing))
            ):
                return False
            slicer.util.pip_install(" ".join(missing))
        return True

    def request(self, p: CTCounterfactualParameterNode, input_path: str, out_dir: str) -> ExplainRequest:
        depth = p.inputVolume.GetImageData().GetDimensions()[2]
        first, last = int(round(p.sliceRange.minimum)), int(round(p.sliceRange.maximum))
        current = None
        if p.sliceChoice == AROUND:  # the slice of the first slice view on screen (Red in Slicer's own layouts)
            view = first_slice_view(slicer.app.layoutManager().layoutLogic().GetViewNodes()) or "Red"
            current = current_slice(slicer.mrmlScene, p.inputVolume, view)
        slices = chosen_slices(p.sliceChoice, depth, (first, max(first, last)), p.aroundSlices, current)
        return ExplainRequest(
            input_path=input_path,
            out_dir=out_dir,
            autoencoder=p.autoencoder,
            classifier=p.classifier,
            target=p.target,
            slices=slices,
            chunk_size=p.chunkSize,
            mode=p.mode,
            device=p.device,
            batch_size=p.batchSize,
            sweep=p.keepSweep,
            output_map=p.outputMap,
            search_resolution=p.searchResolution,
            search={
                "pred_diff": p.predDiff,
                "pred_floor": p.predFloor,
                "step_size": p.stepSize,
                "max_steps": p.maxSteps,
                "max_pixel_diff_pct": p.maxPixelDiffPct,
                "lambda_sweep_steps": p.lambdaSweepSteps,
                "heatmap_method": p.heatmapMethod,
                "lambda_scale": p.lambdaScale,
            },
        )

    def start(self, p: CTCounterfactualParameterNode) -> EngineJob:
        """Write the input to a temporary NRRD and start the engine; returns at once."""
        if not p.inputVolume:
            raise ValueError(_("choose an input CT volume"))
        workdir = _run_folder()
        input_path = os.path.join(workdir, "input.nrrd")
        out_dir = os.path.join(workdir, "out")
        try:
            write_volume_file(slicer.mrmlScene, p.inputVolume, input_path)
            run = warmEngine().submit(explain_arguments(self.request(p, input_path, out_dir)))
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return EngineJob(run, workdir, out_dir, p.inputVolume, "explain")

    def finish(self, job: EngineJob) -> ResultNodes:
        """Load a finished run's outputs into the scene (main thread only)."""
        return load_results(slicer.mrmlScene, job.input_node, job.out_dir)

    def process(self, p: CTCounterfactualParameterNode, wait: bool = True, timeout: float | None = None):
        """Start a run; with ``wait`` block until it ends and return its result nodes (scripts, tests)."""
        job = self.start(p)
        if not wait:
            return job
        try:
            if job.process.wait(timeout) != "done":
                raise RuntimeError(_("the engine failed: {error}").format(error=job.process.error))
            return self.finish(job)
        except BaseException:
            job.cancel()  # a timeout or an interrupt: the engine stops before its folder goes
            raise
        finally:
            job.cleanup()

    def download(self, names: list[str], wait: bool = False) -> EngineJob:
        """Download catalog models into the cache, verified, in a separate process (poll it like a run)."""
        job = EngineJob(_launch(download_command(names, _engine_python())), None, None, None, "download")
        if wait and job.process.wait() != "done":
            raise RuntimeError(job.process.error)
        return job

    def exportScene(self, path: str) -> None:
        export_mrb(slicer.mrmlScene, path)


def rememberChoices(p: CTCounterfactualParameterNode) -> None:
    settings = qt.QSettings()
    for name in REMEMBERED:
        settings.setValue(f"CTCounterfactual/{name}", getattr(p, name))


def recallChoices(p: CTCounterfactualParameterNode) -> None:
    """Put the user's last choices into a new parameter node (a value that no longer fits is skipped)."""
    settings = qt.QSettings()
    for name in REMEMBERED:
        value = settings.value(f"CTCounterfactual/{name}")
        if value is None or value == "":
            continue
        try:
            setattr(p, name, int(value) if name == "chunkSize" else str(value))
        except (ValueError, TypeError):
            pass  # e.g. a mode this version no longer has


def _engine_python() -> str:
    """Slicer's PythonSlicer: beside the application, else on PATH; never ``sys.executable`` (Slicer itself)."""
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    beside = Path(slicer.app.slicerHome) / "bin" / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found:
        return found
    raise RuntimeError(_("{name} was found neither in {folder} nor on PATH").format(name=name, folder=beside.parent))


def model_cache_folder() -> Path:
    """Where the engine keeps downloaded models: ``$CTCF_CACHE_DIR`` or the platform's cache folder."""
    from CTCounterfactualLib.store.download import cache_dir

    return cache_dir()


def warmEngine() -> EngineServer:
    """The session's engine (``ctcf serve`` in PythonSlicer): started by the first run, kept for the next ones (models
    loaded, the last input's encoding and gradient kept); a crashed one is replaced by the next run."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = EngineServer(serve_command(_engine_python()), engine_environment(slicer.util.startupEnvironment()))
    return _ENGINE


def stopEngine() -> None:
    """End the session's engine process (module unloaded, application quitting)."""
    global _ENGINE
    if _ENGINE is not None:
        _ENGINE.stop()
        _ENGINE = None


_ENGINE: EngineServer | None = None


def _run_folder() -> str:
    """A new folder for one run inside Slicer's own temporary folder (Application settings), which Slicer manages.
    Not ``slicer.util.tempDirectory()``: it names folders by the time to the millisecond and returns the same
    folder to two calls in one millisecond."""
    os.makedirs(slicer.app.temporaryPath, exist_ok=True)
    return tempfile.mkdtemp(prefix="CTCounterfactual-", dir=slicer.app.temporaryPath)


def _launch(command: list[str]) -> EngineProcess:
    """Start ``command`` with Slicer's startup environment, the engine and the scene package importable."""
    return EngineProcess(command, env=engine_environment(slicer.util.startupEnvironment()))


def _importable(requirement: str) -> bool:
    import importlib.util

    return importlib.util.find_spec({"PyYAML": "yaml"}.get(requirement, requirement)) is not None


class CTCounterfactualTest(ScriptedLoadableModuleTest):
    """Inside Slicer: the bundled demo end to end, the result nodes, the prediction drop, the MRB round trip."""

    def setUp(self) -> None:
        slicer.mrmlScene.Clear()

    def runTest(self) -> None:
        self.setUp()
        self.test_demo_end_to_end()

    def test_demo_end_to_end(self) -> None:
        logic = CTCounterfactualLogic()
        self.delayDisplay("Installing the dependencies (PyTorch, PyYAML, ...) if they are missing")
        self.assertTrue(logic.ensureDependencies(ask=False), "the dependencies are not installed")
        from CTCounterfactualLib.data.volume_io import write_volume
        from CTCounterfactualLib.jobs.demo import make_demo_input

        self.delayDisplay("Adding a simulated effusion to the demo chest CT")
        workdir = Path(tempfile.mkdtemp(prefix="CTCounterfactualTest-"))
        demo = make_demo_input()
        write_volume(demo.hu, demo.geometry, workdir / "input.nrrd")
        node = slicer.util.loadVolume(str(workdir / "input.nrrd"))
        p = logic.getParameterNode()
        p.inputVolume = node
        p.autoencoder, p.classifier, p.target = "demo-vqgan", "demo-effusion", "pleural effusion"
        p.sliceChoice = ALL_SLICES
        p.chunkSize = 8
        self.delayDisplay("Running the engine (about a minute on a CPU)")
        result = logic.process(p, wait=True, timeout=900)
        predictions = result.summary["predictions"]
        self.assertLess(predictions["counterfactual"], 0.5)
        self.assertGreater(predictions["input"], 0.5)
        cf = slicer.mrmlScene.GetNodeByID(result.counterfactual)
        self.assertEqual(cf.GetImageData().GetDimensions(), node.GetImageData().GetDimensions())
        self.assertIsNotNone(slicer.mrmlScene.GetNodeByID(result.chart))
        self.assertGreater(slicer.mrmlScene.GetNodeByID(result.sequence).GetNumberOfDataNodes(), 1)
        self.delayDisplay("Exporting and reloading the scene")
        mrb = workdir / "scene.mrb"
        logic.exportScene(str(mrb))
        cf_array, cf_name = slicer.util.arrayFromVolume(cf).copy(), cf.GetName()
        slicer.mrmlScene.Clear()
        slicer.util.loadScene(str(mrb))
        restore_layout(slicer.mrmlScene)
        reloaded = slicer.util.getNode(cf_name)
        self.assertTrue((slicer.util.arrayFromVolume(reloaded) == cf_array).all())
        shutil.rmtree(workdir, ignore_errors=True)
        self.delayDisplay("Test passed")
