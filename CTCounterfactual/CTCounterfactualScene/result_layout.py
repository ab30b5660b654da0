"""The result layout: input (left) and CF with the heatmap overlay (right), linked, over the chunk plot.

Custom layouts are not saved in a scene file, so the XML is also stored as an attribute of the
layout node and registered again after a scene is loaded (``restore_layout``).
"""

from __future__ import annotations

import slicer

LAYOUT_ID = 1701  # outside Slicer's built-in layout ids (< 1000 plus a few named ones)
LAYOUT_ATTRIBUTE = "CTCounterfactual.LayoutXML"
INPUT_VIEW = "CTCFInput"
RESULT_VIEW = "CTCFResult"
PLOT_VIEW = "CTCFPlot"
VIEW_GROUP = 7  # only our two slice views link to each other, not Red/Yellow/Green

LAYOUT_XML = f"""<layout type="vertical" split="true">
 <item splitSize="700">
  <layout type="horizontal" split="true">
   <item>
    <view class="vtkMRMLSliceNode" singletontag="{INPUT_VIEW}">
     <property name="orientation" action="default">Axial</property>
     <property name="viewlabel" action="default">In</property>
     <property name="viewcolor" action="default">#8C8C8C</property>
     <property name="viewgroup" action="default">{VIEW_GROUP}</property>
    </view>
   </item>
   <item>
    <view class="vtkMRMLSliceNode" singletontag="{RESULT_VIEW}">
     <property name="orientation" action="default">Axial</property>
     <property name="viewlabel" action="default">CF</property>
     <property name="viewcolor" action="default">#E0A030</property>
     <property name="viewgroup" action="default">{VIEW_GROUP}</property>
    </view>
   </item>
  </layout>
 </item>
 <item splitSize="300">
  <view class="vtkMRMLPlotViewNode" singletontag="{PLOT_VIEW}">
   <property name="viewlabel" action="default">P</property>
  </view>
 </item>
</layout>"""


def layout_node(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLLayoutNode:
    node = scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode") or scene.GetFirstNodeByClass(
        "vtkMRMLLayoutNode"
    )
    if node is None:  # the Slicer application always has one; a bare scene may not
        node = slicer.vtkMRMLLayoutNode()
        scene.AddNode(node)
    return node


def register_layout(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLLayoutNode:
    """Register the result layout (idempotent) and keep its XML on the layout node."""
    node = layout_node(scene)
    _describe(node, LAYOUT_XML)
    node.SetAttribute(LAYOUT_ATTRIBUTE, LAYOUT_XML)
    return node


def restore_layout(scene: slicer.vtkMRMLScene) -> bool:
    """After loading a scene: register the result layout again; True if the scene uses or stored it.

    The XML comes from the layout node's attribute, or is ours when the node is set to our id (Slicer
    5.10's layout node copy drops attributes on import).
    """
    node = layout_node(scene)
    xml = node.GetAttribute(LAYOUT_ATTRIBUTE) or (LAYOUT_XML if node.GetViewArrangement() == LAYOUT_ID else None)
    if not xml:
        return False
    _describe(node, xml)
    return True


def _describe(node: slicer.vtkMRMLLayoutNode, xml: str) -> None:
    """Register ``xml`` as the result layout (Add refuses an id that exists, Set one that does not)."""
    if node.IsLayoutDescription(LAYOUT_ID):
        node.SetLayoutDescription(LAYOUT_ID, xml)
        return
    node.AddLayoutDescription(LAYOUT_ID, xml)
    if node.GetViewArrangement() == LAYOUT_ID:  # Add does not rebuild a layout that is already showing
        node.SetViewArrangement(node.SlicerLayoutNone)
        node.SetViewArrangement(LAYOUT_ID)


def slice_node(scene: slicer.vtkMRMLScene, view: str) -> slicer.vtkMRMLSliceNode | None:
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLSliceNode")
        if node.GetLayoutName() == view:
            return node
    return None


def composite_node(scene: slicer.vtkMRMLScene, view: str) -> slicer.vtkMRMLSliceCompositeNode:
    """The view's slice composite node; created when no slice logic made it yet (as Slicer would)."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
        if node.GetLayoutName() == view:
            return node
    node = slicer.vtkMRMLSliceCompositeNode()
    node.SetLayoutName(view)
    node.SetName(f"SliceComposite{view}")
    scene.AddNode(node)
    return node


def show_layout(scene: slicer.vtkMRMLScene) -> None:
    """Switch to the result layout; Slicer's layout manager (a vtkMRMLLayoutLogic) makes its views."""
    register_layout(scene).SetViewArrangement(LAYOUT_ID)


def show_result(
    scene: slicer.vtkMRMLScene,
    input_id: str,
    cf_id: str,
    heatmap_id: str,
    chart_id: str | None,
    heatmap_opacity: float = 0.5,
) -> None:
    """Input left; CF with the heatmap as foreground right; both linked; the chart in the plot view."""
    show_layout(scene)
    left = composite_node(scene, INPUT_VIEW)
    right = composite_node(scene, RESULT_VIEW)
    left.SetBackgroundVolumeID(input_id)
    left.SetForegroundVolumeID(None)
    right.SetBackgroundVolumeID(cf_id)
    right.SetForegroundVolumeID(heatmap_id)
    right.SetForegroundOpacity(heatmap_opacity)
    for view, comp in ((INPUT_VIEW, left), (RESULT_VIEW, right)):
        slice_node(scene, view).SetViewGroup(VIEW_GROUP)
        comp.SetLinkedControl(True)  # slice offset, zoom and pan follow each other within the view group
        comp.SetHotLinkedControl(True)
    if chart_id is not None:
        for i in range(scene.GetNumberOfNodesByClass("vtkMRMLPlotViewNode")):
            pv = scene.GetNthNodeByClass(i, "vtkMRMLPlotViewNode")
            if pv.GetLayoutName() == PLOT_VIEW:
                pv.SetPlotChartNodeID(chart_id)


def jump_to_slice(scene: slicer.vtkMRMLScene, ras: tuple[float, float, float]) -> None:
    """Centre both result views on ``ras`` (they are linked; both are set so it also works unlinked)."""
    for view in (INPUT_VIEW, RESULT_VIEW):
        sn = slice_node(scene, view)
        if sn is not None:
            sn.JumpSliceByCentering(*ras)
