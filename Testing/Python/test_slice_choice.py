"""The slice choice: all slices, ±N around the Red view's slice (real MRML slice node), a custom range."""

from __future__ import annotations

from CTCounterfactualScene.slice_choice import ALL, AROUND, CUSTOM, chosen_slices, current_slice
from CTCounterfactualScene.volume_nodes import slice_center_ras
from mrml_scene import add_input, new_scene


def test_choices():
    assert chosen_slices(ALL, 24, (3, 9), 5, 12) is None
    assert chosen_slices(CUSTOM, 24, (3, 9), 5, 12) == (3, 10)
    assert chosen_slices(CUSTOM, 24, (0, 23), 5, 12) is None
    assert chosen_slices(AROUND, 24, (0, 0), 5, 12) == (7, 18)
    assert chosen_slices(AROUND, 24, (0, 0), 5, 2) == (0, 8)  # clipped at the ends
    assert chosen_slices(AROUND, 24, (0, 0), 30, 2) is None


def test_current_slice_follows_the_red_view(small_ct):
    scene = new_scene()
    node, _ = add_input(scene, small_ct)
    scene.GetFirstNodeByClass("vtkMRMLLayoutNode").SetViewArrangement(3)  # four-up: Red, Yellow, Green, 3D
    red = next(
        scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode"))
        if scene.GetNthNodeByClass(i, "vtkMRMLSliceNode").GetLayoutName() == "Red"
    )
    for k in (0, 7, 23):
        red.JumpSliceByCentering(*slice_center_ras(node, k))
        assert current_slice(scene, node) == k
