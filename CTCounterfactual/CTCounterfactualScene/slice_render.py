"""Render slice views to PNG without OpenGL: vtkMRMLSliceLogic composites the layers in software.

Used for the docs' screenshot and the tests; in Slicer the views are on screen already.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from .result_layout import INPUT_VIEW, RESULT_VIEW, slice_node


def render_view(scene: slicer.vtkMRMLScene, view: str, size: tuple[int, int] = (320, 320)) -> np.ndarray:
    """The view as Slicer composites it (background, foreground with its opacity): (H, W, 3) uint8.

    The field of view is fitted to the background volume; the slice offset is kept.
    """
    node = slice_node(scene, view)
    if node is None:
        raise ValueError(f"no slice view named {view!r} in the scene")
    offset = node.GetSliceOffset()
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLScene(scene)
    logic.SetSliceNode(node)
    node.SetDimensions(size[0], size[1], 1)
    logic.FitSliceToBackground(size[0], size[1])
    node.SetSliceOffset(offset)
    logic.UpdatePipeline()
    port = logic.GetImageDataConnection()
    port.GetProducer().Update()
    image = port.GetProducer().GetOutputDataObject(port.GetIndex())
    w, h, _ = image.GetDimensions()
    rgba = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)
    logic.SetMRMLScene(None)  # the logic would otherwise keep observing the scene
    return np.ascontiguousarray(rgba[::-1, :, :3])  # VTK rows go bottom-up


def write_png(rgb: np.ndarray, path: str | os.PathLike) -> Path:
    h, w, _ = rgb.shape
    image = vtk.vtkImageData()
    image.SetDimensions(w, h, 1)
    from vtk.util.numpy_support import numpy_to_vtk

    image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(rgb[::-1]).reshape(-1, 3), deep=True))
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    return Path(path)


def render_linked_views(
    scene: slicer.vtkMRMLScene, path: str | os.PathLike, size: tuple[int, int] = (320, 320)
) -> Path:
    """The input and the CF-with-heatmap views side by side, as one PNG."""
    left, right = (render_view(scene, v, size) for v in (INPUT_VIEW, RESULT_VIEW))
    gap = np.full((size[1], 4, 3), 255, np.uint8)
    return write_png(np.concatenate([left, gap, right], axis=1), path)
