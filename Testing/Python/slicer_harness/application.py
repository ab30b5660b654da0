"""Stand-ins for ``slicer.app`` and its managers: layout manager, IO manager, module manager, main window.

Only what a compiled Slicer provides and PyPI cannot: everything that touches the scene does it through
real MRML (slicer-core): the layout logic makes the view nodes, volumes are read by Slicer's own storage
node, bundles by ``vtkMRMLScene.ReadFromMRB``.
"""

from __future__ import annotations

import os
from pathlib import Path

import slicer_core
import vtk

from . import qt_standin as qt
from .mrml_widgets import qMRMLPlotWidget


class ProcessEnvironment:
    """``QProcessEnvironment``: ``keys()`` and ``value(key)``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = dict(env)

    def keys(self) -> list[str]:
        return list(self.env)

    def value(self, key: str, default: str = "") -> str:
        return self.env.get(key, default)


class LayoutManager(qt.QObject):
    """qSlicerLayoutManager: the layout id is the layout node's view arrangement; plot widgets per plot view."""

    SIGNALS = ("layoutChanged(int)",)

    def __init__(self, app: Application) -> None:
        super().__init__()
        self.app = app
        self._plot_widgets: dict[str, qMRMLPlotWidget] = {}

    def layoutLogic(self):
        return self.app.layout_logic

    def _node(self):
        return self.app.layout_logic.GetLayoutNode()

    @property
    def layout(self) -> int:
        return self._node().GetViewArrangement()

    @layout.setter
    def layout(self, value: int) -> None:
        self.setLayout(value)

    def setLayout(self, value: int) -> None:
        if value != self._node().GetViewArrangement():
            self._node().SetViewArrangement(value)
            self._signal("layoutChanged").emit(value)

    def _map_views(self) -> None:
        """Mark the view nodes the current layout shows as mapped (the views the manager made widgets for)."""
        shown = self.app.layout_logic.GetViewNodes()
        ids = {shown.GetItemAsObject(i).GetID() for i in range(shown.GetNumberOfItems())}
        scene = self.app.scene
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLAbstractViewNode")):
            node = scene.GetNthNodeByClass(i, "vtkMRMLAbstractViewNode")
            if node.IsMappedInLayout() != (node.GetID() in ids):
                node.SetMappedInLayout(node.GetID() in ids)

    def _plot_view_nodes(self) -> list:
        self._map_views()
        scene = self.app.scene
        count = scene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode")
        nodes = [scene.GetNthNodeByClass(i, "vtkMRMLPlotViewNode") for i in range(count)]
        return [n for n in nodes if n.IsMappedInLayout()]

    @property
    def plotViewCount(self) -> int:
        return len(self._plot_view_nodes())

    def plotWidget(self, i: int) -> qMRMLPlotWidget:
        node = self._plot_view_nodes()[i]
        if node.GetID() not in self._plot_widgets:
            self._plot_widgets[node.GetID()] = qMRMLPlotWidget(node)
        return self._plot_widgets[node.GetID()]


class IOManager:
    """qSlicerCoreIOManager for the two file types the module loads: volumes and scene bundles."""

    def __init__(self, app: Application) -> None:
        self.app = app

    def fileType(self, filename: str) -> str:
        return "SceneFile" if str(filename).lower().endswith((".mrb", ".mrml")) else "VolumeFile"

    def loadNodes(self, filetype: str, properties: dict, loaded: vtk.vtkCollection, messages=None) -> bool:
        scene, path = self.app.scene, str(properties["fileName"])
        if filetype == "VolumeFile":
            name = properties.get("name", Path(path).name.split(".")[0])
            # qSlicerVolumesReader: the "labelmap" property loads a vtkMRMLLabelMapVolumeNode
            cls = "vtkMRMLLabelMapVolumeNode" if properties.get("labelmap") else "vtkMRMLScalarVolumeNode"
            node = scene.AddNewNodeByClass(cls, name)
            storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
            storage.SetFileName(path)
            node.SetAndObserveStorageNodeID(storage.GetID())
            if not storage.ReadData(node):
                scene.RemoveNode(node)
                return False
            node.CreateDefaultDisplayNodes()
            loaded.AddItem(node)
            return True
        if filetype == "SceneFile":
            if scene.GetCacheManager() is None:
                scene.SetCacheManager(slicer_core.vtkCacheManager())
            if scene.GetDataIOManager() is None:
                io = slicer_core.vtkDataIOManager()
                io.SetCacheManager(scene.GetCacheManager())
                scene.SetDataIOManager(io)
            if path.lower().endswith(".mrb"):
                return bool(scene.ReadFromMRB(path, bool(properties.get("clear", False))))
            scene.SetURL(path)
            return bool(scene.Import() if not properties.get("clear") else scene.Connect())
        raise RuntimeError(f"the harness loads volumes and scenes, not {filetype}")


class ModuleManager(qt.QObject):
    SIGNALS = ("moduleAboutToBeUnloaded(QString)",)


class CommandOptions:
    """qSlicerCoreCommandOptions: what the command line asked for (``--testing``)."""

    def __init__(self, testing: bool) -> None:
        self.testingEnabled = testing


class Application(qt.QObject):
    """``slicer.app``: scene, managers, settings, startup environment, ``processEvents``.

    ``testing`` is ``Slicer --testing`` (how ctest runs a module's self-test): ``testingEnabled()`` is then True,
    and Slicer's Python layer skips message boxes and ``pip_ensure`` installs.
    """

    # qSlicerCoreApplication's startupCompleted(); QCoreApplication's aboutToQuit()
    SIGNALS = ("startupCompleted()", "aboutToQuit()")

    def __init__(
        self, scene, layout_logic, version: str, home: Path, env: dict[str, str], testing: bool = False
    ) -> None:
        super().__init__()
        self.scene = scene
        self.layout_logic = layout_logic
        self.applicationName = "Slicer"
        self.applicationVersion = version
        self.majorVersion, self.minorVersion = (int(v) for v in version.split(".")[:2])
        self.slicerHome = str(home)
        self.temporaryPath = str(home / "tmp")
        self.documentationBaseUrl = "https://slicer.readthedocs.io/en/latest/"
        self._env = env
        self._layout_manager = LayoutManager(self)
        self._io = IOManager(self)
        self._modules = ModuleManager()
        self.main_window = qt.QWidget()
        self.main_window.objectName = "qSlicerMainWindow"
        self._options = CommandOptions(testing)

    def mrmlScene(self):
        return self.scene

    def layoutManager(self) -> LayoutManager:
        return self._layout_manager

    def coreIOManager(self) -> IOManager:
        return self._io

    def ioManager(self) -> IOManager:
        return self._io

    def moduleManager(self) -> ModuleManager:
        return self._modules

    def topLevelWidgets(self) -> list:
        return [self.main_window]

    def commandOptions(self) -> CommandOptions:
        return self._options

    def testingEnabled(self) -> bool:
        return self._options.testingEnabled

    def translate(self, context: str, text: str) -> str:
        return text

    def startupEnvironment(self) -> ProcessEnvironment:
        return ProcessEnvironment(self._env)

    def environment(self) -> ProcessEnvironment:
        return ProcessEnvironment(os.environ)

    def settings(self) -> qt.QSettings:
        return qt.QSettings()

    def userSettings(self) -> qt.QSettings:
        return qt.QSettings()

    def moduleDocumentationUrl(self, name: str) -> str:
        return self.documentationBaseUrl + name

    def processEvents(self, *args) -> None:
        """Run what was queued with ``QTimer.singleShot``."""
        while qt.QTimer.PENDING:
            qt.QTimer.PENDING.pop(0)()

    def setOverrideCursor(self, *args) -> None:
        pass

    def restoreOverrideCursor(self) -> None:
        pass
