"""One Slicer session without the application: Slicer's real Python layer over real MRML, stand-ins for the rest.

``SlicerSession(version, home)`` puts in ``sys.modules`` the ``slicer`` package executed from Slicer's own
source for that release (``__init__.py``, ``util.py``, ``ScriptedLoadableModule.py``, ``i18n.py``,
``parameterNodeWrapper/``, ``packaging.py``), with the MRML classes of PyPI slicer-core in its namespace,
as Slicer's kits put them there; ``qt`` and ``ctk`` are the stand-ins. It loads a scripted module the way
Slicer's module factory does, and opens its panel the way the module panel does. ``close()`` gives the
test process back its own modules.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import time
import types
from pathlib import Path

import slicer_core
import vtk

from . import ctk_standin, mrml_widgets
from . import qt_standin as qt
from .application import Application

REPO = Path(__file__).resolve().parents[3]
SLICER_VERSIONS = ("5.10.0", "5.12.3")
# PythonQt classes that the Slicer layer names (guiConnectors checks widget types against them)
QMRML_CLASSES = (
    "qMRMLWidget",
    "qSlicerWidget",
    "qMRMLNodeComboBox",
    "qMRMLSliderWidget",
    "qMRMLSpinBox",
    "qMRMLRangeWidget",
    "qSlicerFileDialog",
    "qMRMLPlotWidget",
    "qMRMLPlotView",
)


def slicer_python_dir() -> Path | None:
    """Slicer's Python layer: ``$CTCF_SLICER_PYTHON``, else ``../shared/slicer-python`` beside the clone."""
    env = os.environ.get("CTCF_SLICER_PYTHON")
    path = Path(env) if env else REPO.parent / "shared" / "slicer-python"
    return path if (path / "v5.12.3" / "slicer" / "ScriptedLoadableModule.py").is_file() else None


SESSION_PACKAGES = (
    "slicer",
    "qt",
    "ctk",
    "PyTorchUtils",
    "SampleData",
    "CTCounterfactual",
    "CTCounterfactualScene",
    "CTCounterfactualLib",  # a Slicer starts without the engine loaded: what the module imports, it imports here
)


def _ours(name: str) -> bool:
    """Modules that belong to one session (the test process has its own ``slicer`` from PyPI, its own engine)."""
    return name.split(".")[0] in SESSION_PACKAGES


def new_app_scene() -> tuple[slicer_core.vtkMRMLScene, list]:
    """A scene with the logics the application attaches (colours, subject hierarchy, sequences, layout)."""
    scene = slicer_core.vtkMRMLScene()
    slicer_core.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)
    logics = [
        slicer_core.vtkMRMLColorLogic(),
        slicer_core.vtkSlicerSubjectHierarchyModuleLogic(),
        slicer_core.vtkSlicerSequencesLogic(),
        slicer_core.vtkMRMLLayoutLogic(),
    ]
    for logic in logics:
        logic.SetMRMLScene(scene)
    # Slicer starts in the Conventional layout: Red, Yellow, Green and a 3D view exist from the start
    logics[-1].GetLayoutNode().SetViewArrangement(slicer_core.vtkMRMLLayoutNode.SlicerLayoutConventionalView)
    return scene, logics


class ModuleParent(qt.QObject):
    """qSlicerScriptedLoadableModule: what ``ScriptedLoadableModule.__init__`` fills in."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = str(path)
        self.title = ""
        self.categories: list[str] = []
        self.dependencies: list[str] = []
        self.contributors: list[str] = []
        self.helpText = ""
        self.acknowledgementText = ""
        self.icon = None
        self.hidden = False


class ModuleWidgetParent(mrml_widgets.qSlicerWidget):
    """qSlicerScriptedLoadableModuleWidget: the panel's container, with ``isEntered``."""

    def __init__(self) -> None:
        super().__init__()
        self.setLayout(qt.QVBoxLayout())
        self.isEntered = False


class SlicerSession:
    """Slicer ``version`` (e.g. "5.12.3") in this process, its home (``bin/PythonSlicer``) under ``home``;
    ``testing``: started as ``Slicer --testing``."""

    def __init__(self, version: str, home: Path, testing: bool = False) -> None:
        self.version = version
        self.home = Path(home)
        source = slicer_python_dir()
        if source is None:
            raise RuntimeError("Slicer's Python layer (../shared/slicer-python) is not here")
        self.source = source
        self.saved = {k: m for k, m in sys.modules.items() if _ours(k)}
        self.saved_path = list(sys.path)
        self.saved_env = os.environ.get("PATH", "")
        for k in self.saved:
            del sys.modules[k]
        qt.QSettings.STORE = {}
        qt.REFUSED_CONNECTIONS.clear()
        qt.QFileDialog.ANSWERS = []
        qt.QDesktopServices.OPENED = []
        ctk_standin.ctkMessageBox.ANSWERS = []
        ctk_standin.ctkMessageBox.SHOWN = []
        (self.home / "bin").mkdir(parents=True, exist_ok=True)
        (self.home / "tmp").mkdir(exist_ok=True)
        self._python_slicer()
        self.startup_env = dict(os.environ)  # the environment before the launcher added Slicer's own paths
        os.environ["PATH"] = str(self.home / "bin") + os.pathsep + self.saved_env  # as Slicer's launcher does
        self.scene, self.logics = new_app_scene()
        # qSlicerCoreApplication::setMRMLScene: "newMRMLScene->SetRootDirectory(this->defaultScenePath())", which is
        # the user's Documents folder unless the settings say otherwise
        (self.home / "Documents").mkdir(exist_ok=True)
        self.scene.SetRootDirectory(str(self.home / "Documents"))
        self.app = Application(self.scene, self.logics[-1], version, self.home, self.startup_env, testing)
        self.slicer = self._slicer_package()
        sys.path.insert(0, str(source / "SlicerPyTorch"))
        self.modules: dict[str, types.ModuleType] = {}
        self.closed = False

    def _python_slicer(self) -> None:
        """``bin/PythonSlicer``: Slicer's Python interpreter; here, the project's own Python."""
        launcher = self.home / "bin" / "PythonSlicer"
        launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', encoding="utf-8")
        launcher.chmod(0o755)

    def _slicer_package(self) -> types.ModuleType:
        root = self.source / f"v{self.version}" / "slicer"
        sys.modules["qt"] = qt
        sys.modules["ctk"] = ctk_standin
        module = types.ModuleType("slicer")
        module.__file__ = str(root / "__init__.py")
        module.__path__ = [str(root)]
        module.__package__ = "slicer"
        sys.modules["slicer"] = module
        exec(compile((root / "__init__.py").read_text(encoding="utf-8"), module.__file__, "exec"), module.__dict__)
        for name in dir(slicer_core):  # what Slicer's kits (MRMLCore, MRMLLogic, module logics) add
            if not name.startswith("_"):
                setattr(module, name, getattr(slicer_core, name))
        for name in QMRML_CLASSES:
            setattr(module, name, getattr(mrml_widgets, name))
        module.app = self.app
        module.mrmlScene = self.scene
        import slicer.util  # noqa: F401  (Slicer's application imports it at startup)

        # a core module, importable before startup completes; executed per session (it imports this ``slicer``)
        spec = importlib.util.spec_from_file_location("SampleData", Path(__file__).parent / "sampledata_standin.py")
        sample_data = importlib.util.module_from_spec(spec)
        sys.modules["SampleData"] = sample_data
        spec.loader.exec_module(sample_data)

        return module

    def load_module(self, path: Path) -> types.ModuleType:
        """Load a scripted module as Slicer's factory does: its folder on sys.path, executed under its name."""
        name = path.stem
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        parent = ModuleParent(path)
        instance = getattr(module, name)(parent)
        setattr(self.slicer.modules, name.lower(), parent)
        setattr(self.slicer.modules, f"{name}Instance", instance)
        setattr(self.slicer.moduleNames, name, name)
        self.modules[name] = module
        return module

    def startup_completed(self) -> None:
        self.app.emit("startupCompleted()")
        self.app.processEvents()

    def open_panel(self, name: str):
        """The first time the user selects the module: the widget is made and ``setup()`` runs, then ``enter()``."""
        parent = ModuleWidgetParent()
        parent.setMRMLScene(self.scene)
        widget = getattr(self.modules[name], f"{name}Widget")(parent)
        widget.setup()
        setattr(self.slicer.modules, f"{name}Widget", widget)
        self.enter(widget)
        return widget

    def enter(self, widget) -> None:
        widget.parent.isEntered = True
        widget.enter()

    def exit(self, widget) -> None:
        widget.exit()
        widget.parent.isEntered = False

    def unload(self, widget) -> None:
        """Application exit: the module manager announces the unload (``cleanup()`` runs)."""
        self.app.moduleManager().emit("moduleAboutToBeUnloaded(QString)", widget.moduleName)

    def close_scene(self) -> None:
        """File / Close scene."""
        self.scene.Clear(False)

    def load_scene(self, path: Path) -> None:
        """File / Load scene (an .mrb): ``slicer.util.loadScene``."""
        self.slicer.util.loadScene(str(path))

    def save_scene(self, folder: Path | None = None) -> Path:
        """File / Save: the Save dialog (``save_dialog``); the user picks ``folder`` with its folder button, or
        (None) keeps every proposed location, and clicks Save. Returns the saved .mrml."""
        return save_dialog(self.scene, None if folder is None else Path(folder))

    def close(self) -> None:
        """Give the process back its own modules (the PyPI ``slicer``, the scene package under it).

        Fails when the module made a connection that PythonQt would have refused: its slot would never run.
        """
        if self.closed:
            return
        self.closed = True
        refused, qt.REFUSED_CONNECTIONS[:] = list(qt.REFUSED_CONNECTIONS), []
        self.app.emit("aboutToQuit()")  # QCoreApplication::aboutToQuit, as when the user quits Slicer
        self.scene.RemoveAllObservers()  # the panels' observers must not outlive this harness's Slicer objects
        for k in [k for k in sys.modules if _ours(k)]:
            del sys.modules[k]
        sys.modules.update(self.saved)
        sys.path[:] = self.saved_path
        os.environ["PATH"] = self.saved_env
        for logic in self.logics:
            logic.SetMRMLScene(None)
        if refused:
            raise AssertionError("connections PythonQt refuses: " + "; ".join(refused))


def _safe_file_name(name: str) -> str:
    """qSlicerCoreIOManager::forceFileNameValidCharacters: characters a file name cannot hold become '_'."""
    return "".join("_" if c in '<>:"/\\|?*' or ord(c) < 32 else c for c in name)


def _with_writable_extension(storage, path: Path) -> Path:
    """createFileFormatsWidget: a file name without a writable extension gets the default one ("The existing file
    name doesn't contain an existing extension, pick the default extension if any": completeBaseName + extension)."""
    formats = storage.GetSupportedWriteFileTypes()
    extensions = [re.search(r"\((\.[^)]*)\)", formats.GetValue(i)) for i in range(formats.GetNumberOfValues())]
    if any(m and path.name.lower().endswith(m.group(1).lower()) for m in extensions):
        return path
    base = path.name.rsplit(".", 1)[0] if "." in path.name else path.name
    return path.with_name(f"{base}.{storage.GetDefaultWriteFileExtension()}")


def save_dialog(scene, folder: Path | None) -> Path:
    """qSlicerSaveDataDialog (Base/QTGUI/qSlicerSaveDataDialog.cxx): its defaults, the folder button if ``folder``
    is given, then Save.

    - populateItems: the dialog's folder is the scene's root directory (``"."`` if it does not exist); the scene
      row proposes ``<root>/<URL's name>``, or ``<root>/<yyyy-MM-dd>-Scene.mrml`` for a scene never saved.
    - populateNode/nodeFileInfo, per storable node shown in editors and saved with the scene: a node without a
      storage node gets its default one; a file name that is not the node's name is renamed to it in the same
      folder (and the node marked modified); a node with no file name gets ``<dialog folder>/<name>.<ext>``.
      The row's folder is the file's own folder, and the row is ticked only if
      ``storableNode->GetModifiedSinceRead()``.
    - setDirectory (the user picks ``folder``): "if (selectItem->checkState() == Qt::Unchecked) continue;" -
      only ticked rows move there; an unticked node keeps its file where it is, wherever that is.
    - saveNodes: ticked rows only, written through qSlicerCoreIOManager::saveNodes, which creates a missing
      folder ("if (!QFileInfo(fileName).dir().exists() && !QFileInfo(fileName).dir().mkpath("."))") and, as
      qSlicerNodeWriter::write, sets the storage node's file name and calls WriteData.
    - then the scene: root directory = the scene file's folder, URL = the scene file, written.
    """
    root = Path(scene.GetRootDirectory() or ".")
    if not root.is_dir():
        scene.SetRootDirectory(".")
        root = Path(".")
    rows = []
    storable = "vtkMRMLStorableNode"
    for node in [scene.GetNthNodeByClass(i, storable) for i in range(scene.GetNumberOfNodesByClass(storable))]:
        if node.GetHideFromEditors() or not node.GetSaveWithScene():
            continue
        storage = node.GetStorageNode()
        if storage is None:
            if not node.AddDefaultStorageNode() or node.GetStorageNode() is None:
                continue
            storage = node.GetStorageNode()
        elif storage.GetFileName() is not None and node.GetName():  # C++: a non-null name, "" included
            safe = _safe_file_name(node.GetName())
            if storage.GetFileNameWithoutExtension() != safe:
                existing = Path(storage.GetFileName())  # QFileInfo(""): the path "."
                storage.SetFileName(str(existing.parent / (safe + storage.GetSupportedFileExtension())))
                node.StorableModified()
        if storage.GetFileName() is None:
            extension = storage.GetDefaultWriteFileExtension()
            storage.SetFileName(str((root / (_safe_file_name(node.GetName() or "") + f".{extension}")).absolute()))
        name = storage.GetFileName()
        path = root / name if scene.IsFilePathRelative(name) else Path(name)
        path = _with_writable_extension(storage, path)
        rows.append({"node": node, "file": path, "ticked": bool(node.GetModifiedSinceRead())})
    url = scene.GetURL()
    scene_file = root.absolute() / (Path(url).name if url else time.strftime("%Y-%m-%d") + "-Scene.mrml")
    if folder is not None:  # setDirectory(folder): the ticked rows, the scene's among them
        scene_file = folder / scene_file.name
        for row in rows:
            if row["ticked"]:
                row["file"] = folder / row["file"].name
    scene.SetRootDirectory(str(scene_file.parent))
    for row in rows:  # saveNodes
        if not row["ticked"]:
            continue
        node, path = row["node"], row["file"]
        path.parent.mkdir(parents=True, exist_ok=True)  # what qSlicerCoreIOManager::saveNodes does
        storage = node.GetStorageNode()
        storage.SetFileName(str(path))
        if not storage.WriteData(node):
            raise RuntimeError(f"Cannot write data file: {path}")
    scene_file.parent.mkdir(parents=True, exist_ok=True)
    scene.SetURL(str(scene_file))
    if not scene.Commit():
        raise RuntimeError(f"cannot write the scene {scene_file}")
    return scene_file


def vtk_collection_items(collection: vtk.vtkCollection) -> list:
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]
