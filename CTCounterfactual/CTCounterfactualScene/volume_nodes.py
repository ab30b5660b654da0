"""Reading result volumes into scalar volume nodes, and comparing their geometry with the input."""

from __future__ import annotations

import os

import numpy as np
import slicer
import vtk


def read_volume_node(scene: slicer.vtkMRMLScene, path: str | os.PathLike, name: str) -> slicer.vtkMRMLScalarVolumeNode:
    """A new scalar volume node holding the file at ``path`` (NRRD/NIfTI), with a storage node."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", scene.GenerateUniqueName(name))
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    storage.SetSingleFile(True)
    if not storage.ReadData(node):
        scene.RemoveNode(storage)
        scene.RemoveNode(node)
        raise RuntimeError(f"cannot read {path} into the scene")
    node.SetAndObserveStorageNodeID(storage.GetID())
    node.CreateDefaultDisplayNodes()
    return node


def first_plain_volume(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLScalarVolumeNode | None:
    """The first volume that is a plain scalar volume: not a label map or any other subclass, which the input
    selector does not list (its showChildNodeTypes is false) and would answer with None."""
    cls = "vtkMRMLScalarVolumeNode"
    nodes = (scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls)))
    return next((n for n in nodes if n.GetClassName() == cls), None)


def forget_file(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLStorableNode) -> None:
    """The node keeps its data but no longer names the file it was read from (a temporary file about to go).

    Without a storage node the Save dialog gives it a new one named after the node in the folder the user saves
    to (qSlicerSaveDataDialog's nodeFileInfo: "if (snode->GetFileName() == nullptr ...)"), and the node counts as
    modified since read, so every save writes it.
    """
    storage = node.GetStorageNode()
    if storage is not None:
        node.SetAndObserveStorageNodeID(None)
        scene.RemoveNode(storage)
    node.StorableModified()


def ijk_to_ras(node: slicer.vtkMRMLVolumeNode) -> np.ndarray:
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(i, j) for j in range(4)] for i in range(4)])


def same_geometry(a: slicer.vtkMRMLVolumeNode, b: slicer.vtkMRMLVolumeNode, tol: float = 1e-3) -> bool:
    """True when both volumes have the same voxel grid in RAS (dimensions and IJK-to-RAS)."""
    dims = a.GetImageData().GetDimensions() == b.GetImageData().GetDimensions()
    return dims and bool(np.allclose(ijk_to_ras(a), ijk_to_ras(b), atol=tol))


def slice_center_ras(node: slicer.vtkMRMLVolumeNode, k: float) -> tuple[float, float, float]:
    """RAS position of the centre of slice ``k`` (fractional allowed) of ``node``."""
    i, j, _ = node.GetImageData().GetDimensions()
    ras = ijk_to_ras(node) @ np.array([(i - 1) / 2, (j - 1) / 2, k, 1.0])
    return float(ras[0]), float(ras[1]), float(ras[2])


def heat_color_node_id(scene: slicer.vtkMRMLScene) -> str | None:
    """Slicer's heat colour map (PET-Heat), or any colour node named like heat/hot, or None."""
    preferred = scene.GetNodeByID("vtkMRMLPETProceduralColorNodePET-Heat")
    if preferred is not None:
        return preferred.GetID()
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLColorNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLColorNode")
        if any(word in (node.GetName() or "").lower() for word in ("heat", "hot")):
            return node.GetID()
    return None


def show_as_heatmap(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLScalarVolumeNode, threshold_share: float) -> None:
    """Heat colours, window over the heatmap's range, voxels below ``threshold_share`` of the max hidden."""
    display = node.GetDisplayNode()
    color = heat_color_node_id(scene)
    if color is not None:
        display.SetAndObserveColorNodeID(color)
    lo, hi = node.GetImageData().GetScalarRange()
    hi = max(hi, lo + 1e-6)
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, hi)
    display.SetApplyThreshold(True)
    display.SetLowerThreshold(threshold_share * hi)
    display.SetUpperThreshold(hi)


def write_volume_file(scene: slicer.vtkMRMLScene, node: slicer.vtkMRMLVolumeNode, path: str | os.PathLike) -> None:
    """Write ``node`` to ``path`` (NRRD) for the engine, without touching the node's own storage node."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    scene.AddNode(storage)  # a storage node writes through its scene
    try:
        storage.SetFileName(str(path))
        storage.SetUseCompression(False)
        if not storage.WriteData(node):
            raise RuntimeError(f"cannot write {node.GetName()} to {path}")
    finally:
        scene.RemoveNode(storage)
