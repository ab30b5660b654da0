"""Scenes for the Slicer-side tests: a vtkMRMLScene with the logics the Slicer application attaches."""

from __future__ import annotations

import numpy as np
import slicer
from CTCounterfactualScene.volume_nodes import read_volume_node
from vtk.util.numpy_support import vtk_to_numpy

LOGICS = []  # module logics must outlive the scenes they serve


def new_scene() -> slicer.vtkMRMLScene:
    """A scene with the module logics the Slicer application would attach to it."""
    scene = slicer.vtkMRMLScene()
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene)  # Axial, Sagittal, Coronal
    # default colour nodes (Grey, PET-Heat, ...); subject hierarchy items for new nodes; sequence node classes
    # and, as the layout manager does, views for the layout
    logics = (
        slicer.vtkMRMLColorLogic(),
        slicer.vtkSlicerSubjectHierarchyModuleLogic(),
        slicer.vtkSlicerSequencesLogic(),
    )
    for logic in (*logics, slicer.vtkMRMLLayoutLogic()):
        logic.SetMRMLScene(scene)
        LOGICS.append(logic)
    return scene


def voxels(node) -> np.ndarray:
    image = node.GetImageData()
    d = image.GetDimensions()
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(d[2], d[1], d[0])


def add_input(scene: slicer.vtkMRMLScene, path, name: str = "chest") -> tuple[slicer.vtkMRMLScalarVolumeNode, int]:
    """Load a CT into ``scene`` under a patient/study in the subject hierarchy: (node, study item)."""
    node = read_volume_node(scene, path, name)
    sh = slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)
    sh.CreateItem(sh.GetSceneItemID(), node)  # in Slicer the (Qt) subject hierarchy plugin logic does this
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1")
    study = sh.CreateStudyItem(patient, "CT chest")
    sh.SetItemParent(sh.GetItemByDataNode(node), study)
    return node, study
