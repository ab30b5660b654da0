"""Stand-ins for the qMRML widgets (``slicer.qMRML*``), bound to a real ``vtkMRMLScene`` from slicer-core."""

from __future__ import annotations

import vtk

from . import qt_standin as qt


class qMRMLWidget(qt.QWidget):
    """A widget with a scene: ``setMRMLScene`` emits ``mrmlSceneChanged`` (the .ui connects it to children)."""

    SIGNALS = ("mrmlSceneChanged(vtkMRMLScene*)",)

    def __init__(self, parent: qt.QWidget | None = None) -> None:
        super().__init__(parent)
        self._scene = None

    def setMRMLScene(self, scene) -> None:
        if scene is not self._scene:
            self._scene = scene
            self._signal("mrmlSceneChanged").emit(scene)

    def mrmlScene(self):
        return self._scene


class qSlicerWidget(qMRMLWidget):
    pass


class qMRMLNodeComboBox(qMRMLWidget):
    """Lists the scene's nodes of ``nodeTypes``; follows node additions and removals, as qMRMLNodeComboBox."""

    SIGNALS = ("currentNodeChanged(vtkMRMLNode*)", "currentNodeIDChanged(QString)", "nodeAdded(vtkMRMLNode*)")

    def __init__(self, parent: qt.QWidget | None = None) -> None:
        super().__init__(parent)
        self.nodeTypes: list[str] = []
        self.showChildNodeTypes = True
        self.hideChildNodeTypes: list[str] = []
        self.noneEnabled = False
        self.addEnabled = True
        self.removeEnabled = True
        self.renameEnabled = False
        self.selectNodeUponCreation = True
        self._current = None
        self._tags: list[int] = []

    def _accepts(self, node) -> bool:
        if node is None or node.GetHideFromEditors():
            return False
        if any(node.IsA(t) for t in self.hideChildNodeTypes):
            return False
        if self.showChildNodeTypes:
            return any(node.IsA(t) for t in self.nodeTypes)
        return node.GetClassName() in self.nodeTypes

    def nodes(self) -> list:
        if self._scene is None:
            return []
        found = []
        for i in range(self._scene.GetNumberOfNodes()):
            node = self._scene.GetNthNode(i)
            if self._accepts(node):
                found.append(node)
        return found

    def nodeCount(self) -> int:
        return len(self.nodes())

    def setMRMLScene(self, scene) -> None:
        if self._scene is not None:
            for tag in self._tags:
                self._scene.RemoveObserver(tag)
        self._tags = []
        super().setMRMLScene(scene)
        if scene is not None:
            self._tags = [
                scene.AddObserver(scene.NodeAddedEvent, self._on_added),
                scene.AddObserver(scene.NodeRemovedEvent, self._on_removed),
            ]
        self._set(None if self.noneEnabled or not self.nodes() else self.nodes()[0])

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _on_added(self, caller, event, node) -> None:
        if self._accepts(node):
            self._signal("nodeAdded").emit(node)
            if self._current is None and not self.noneEnabled:
                self._set(node)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _on_removed(self, caller, event, node) -> None:
        if node is self._current:
            rest = [n for n in self.nodes() if n is not node]
            self._set(None if self.noneEnabled or not rest else rest[0])

    def _set(self, node) -> None:
        if node is self._current:
            return
        self._current = node
        self._signal("currentNodeChanged").emit(node)
        self._signal("currentNodeIDChanged").emit(node.GetID() if node else "")

    def currentNode(self):
        return self._current

    @property
    def currentNodeID(self) -> str:
        return self._current.GetID() if self._current else ""

    def setCurrentNode(self, node) -> None:
        """qMRMLNodeComboBoxPrivate::setCurrentNodeIDInternal: a node the combobox does not list has no index
        ("if (indexes.size() == 0) ... this->ComboBox->setCurrentIndex(this->NoneEnabled ? 0 : -1);"), so the
        selection becomes None and currentNodeChanged(None) goes out."""
        self._set(node if node is not None and self._accepts(node) else None)

    def setCurrentNodeID(self, node_id: str) -> None:
        self.setCurrentNode(self._scene.GetNodeByID(node_id) if self._scene and node_id else None)


class qMRMLPlotView(qt.QWidget):
    """The plot canvas: a click on points emits ``dataSelected(vtkStringArray*, vtkCollection*)``."""

    SIGNALS = ("dataSelected(vtkStringArray*,vtkCollection*)",)

    def click_points(self, series_ids: list[str], rows: list[list[int]]) -> None:
        """What a click on plotted points does: the series IDs and, per series, the selected rows."""
        ids = vtk.vtkStringArray()
        selection = vtk.vtkCollection()
        for sid, r in zip(series_ids, rows, strict=True):
            ids.InsertNextValue(sid)
            arr = vtk.vtkIdTypeArray()
            for row in r:
                arr.InsertNextValue(row)
            selection.AddItem(arr)
        self._signal("dataSelected").emit(ids, selection)


class qMRMLPlotWidget(qt.QWidget):
    def __init__(self, view_node) -> None:
        super().__init__()
        self._view_node = view_node
        self._view = qMRMLPlotView(self)

    def mrmlPlotViewNode(self):
        return self._view_node

    def plotView(self) -> qMRMLPlotView:
        return self._view


# qMRML classes that Slicer's parameterNodeWrapper (guiConnectors.py) names in its widget-type checks and the panel
# does not use: distinct types, so those checks stay exact. No other qMRML/qSlicer class exists here.
class qMRMLSliderWidget(qMRMLWidget):
    pass


class qMRMLSpinBox(qMRMLWidget):
    pass


class qMRMLRangeWidget(qMRMLWidget):
    pass


class qSlicerFileDialog(qt.QObject):
    pass
