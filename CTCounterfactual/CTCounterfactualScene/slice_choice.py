"""Which slices a run may change: all, around the slice a view shows (±N), or a custom range."""

from __future__ import annotations

import numpy as np
import slicer

from .result_layout import slice_node
from .volume_nodes import ijk_to_ras

ALL, AROUND, CUSTOM = "All slices", "Around current slice", "Custom range"
SLICE_CHOICES = (ALL, AROUND, CUSTOM)


def first_slice_view(view_nodes) -> str | None:
    """The layout name of the first slice view the layout shows (``view_nodes``: the layout logic's
    ``GetViewNodes()``, in the layout's order): the view the user is looking at, the result layout's input view
    after a run."""
    for i in range(view_nodes.GetNumberOfItems()):
        node = view_nodes.GetItemAsObject(i)
        if node.IsA("vtkMRMLSliceNode"):
            return node.GetLayoutName()
    return None


def current_slice(scene: slicer.vtkMRMLScene, volume: slicer.vtkMRMLVolumeNode, view: str = "Red") -> int:
    """The volume's slice (k index, clamped) at the centre of ``view``."""
    node = slice_node(scene, view)
    if node is None:
        raise ValueError(f"there is no {view} slice view")
    m = node.GetSliceToRAS()
    centre = np.array([m.GetElement(0, 3), m.GetElement(1, 3), m.GetElement(2, 3), 1.0])
    k = (np.linalg.inv(ijk_to_ras(volume)) @ centre)[2]
    depth = volume.GetImageData().GetDimensions()[2]
    return int(min(max(round(float(k)), 0), depth - 1))


def chosen_slices(
    choice: str, depth: int, custom: tuple[int, int], around: int, current: int | None
) -> tuple[int, int] | None:
    """``(start, stop)`` for the engine (``None``: every slice); ``custom`` is first/last inclusive."""
    if choice == AROUND:
        if current is None:
            raise ValueError("no current slice to centre on")
        start, stop = max(0, current - around), min(depth, current + around + 1)
    elif choice == CUSTOM:
        start, stop = custom[0], custom[1] + 1
    else:
        return None
    return None if (start, stop) == (0, depth) else (start, stop)
