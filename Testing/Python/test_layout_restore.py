"""Restoring the result layout after a scene load, on real MRML (layout node and layout logic)."""

from __future__ import annotations

from CTCounterfactualScene import result_layout as layout
from mrml_scene import LOGICS, new_scene


def _shown(scene) -> set[str]:
    logic = next(lg for lg in LOGICS if lg.IsA("vtkMRMLLayoutLogic") and lg.GetMRMLScene() is scene)
    views = logic.GetViewNodes()
    return {views.GetItemAsObject(i).GetLayoutName() for i in range(views.GetNumberOfItems())}


def test_a_scene_set_to_our_layout_gets_it_back_without_the_attribute():
    """5.10's layout-node copy drops attributes on import: the arrangement alone must bring the layout back."""
    scene = new_scene()
    node = layout.layout_node(scene)
    node.SetViewArrangement(layout.LAYOUT_ID)  # as read from the file, before any description is known
    assert not node.IsLayoutDescription(layout.LAYOUT_ID)
    assert layout.restore_layout(scene)
    assert node.GetLayoutDescription(layout.LAYOUT_ID) == layout.LAYOUT_XML
    # the layout already showing is rebuilt with our views (AddLayoutDescription alone would not do it)
    assert {layout.INPUT_VIEW, layout.RESULT_VIEW, layout.PLOT_VIEW} <= _shown(scene)


def test_a_scene_without_our_layout_is_left_alone():
    scene = new_scene()
    assert not layout.restore_layout(scene)
    assert not layout.layout_node(scene).IsLayoutDescription(layout.LAYOUT_ID)
