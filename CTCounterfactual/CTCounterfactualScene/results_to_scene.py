"""Put one engine run (an output folder of ``ctcf explain``) into a scene, next to its input.

Every run adds new nodes under a new subject-hierarchy folder beside the input, so running twice
on the same input keeps both result sets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import slicer
import vtk

from .chunk_plot import chunk_table, prediction_chart, read_chunk_rows
from .contract import protocol
from .result_layout import jump_to_slice, show_result
from .sweep_sequence import sweep_sequence
from .volume_nodes import forget_file, read_volume_node, same_geometry, show_as_heatmap, slice_center_ras

ROLE = "CTCounterfactual.Role"  # node attribute: which output a node holds
CHUNKS = "chunks"  # the ROLE of a run's table, which references the run's other nodes
SUMMARY = "CTCounterfactual.Summary"  # table attribute: the run's summary.json, for a scene opened later
# Node reference roles from the table (and the chart) to the run's nodes. References, not attributes holding IDs:
# importing a scene renumbers clashing IDs and updates references only (vtkMRMLScene::Import).
INPUT_REFERENCE = "CTCounterfactualInput"  # the volume the chunk slices index
OUTPUT_REFERENCE = "CTCounterfactualOutput"  # + the ResultNodes field: Counterfactual, Chart, Sequence, ...
HEATMAP_THRESHOLD_SHARE = 0.1  # heatmap voxels below 10% of its maximum are transparent
REFERENCED = ("counterfactual", "reconstruction", "heatmap", "difference", "chart", "sequence", "browser")


@dataclass
class ResultNodes:
    """IDs of the nodes one run added (``None`` where the run had no such output)."""

    folder_item: int
    counterfactual: str
    reconstruction: str
    heatmap: str
    difference: str
    table: str
    chart: str
    series: list[str]
    sequence: str | None
    browser: str | None
    summary: dict


def _subject_hierarchy(scene: slicer.vtkMRMLScene) -> slicer.vtkMRMLSubjectHierarchyNode:
    return slicer.vtkMRMLSubjectHierarchyNode.ResolveSubjectHierarchy(scene)


def _item(sh: slicer.vtkMRMLSubjectHierarchyNode, node) -> int:
    """The node's subject-hierarchy item (Slicer makes one for every node; a bare scene may not have)."""
    item = sh.GetItemByDataNode(node)
    return item if item else sh.CreateItem(sh.GetSceneItemID(), node)


def _result_folder(scene: slicer.vtkMRMLScene, input_node, name: str) -> int:
    """A new folder under the input's parent (its study, when loaded from DICOM)."""
    sh = _subject_hierarchy(scene)
    parent = sh.GetItemParent(_item(sh, input_node))
    return sh.CreateFolderItem(parent, scene.GenerateUniqueName(name))


def _node_ids(scene: slicer.vtkMRMLScene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def load_results(
    scene: slicer.vtkMRMLScene, input_node: slicer.vtkMRMLScalarVolumeNode, out_dir: str | os.PathLike
) -> ResultNodes:
    """Load every output in ``out_dir`` as nodes, place them under the input's study, show the layout.

    All or nothing: when an output cannot be loaded, the nodes and the folder added so far are removed.
    """
    before = _node_ids(scene)
    sh = _subject_hierarchy(scene)
    items = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), items, True)
    items_before = {items.GetId(i) for i in range(items.GetNumberOfIds())}
    try:
        return _load_results(scene, input_node, Path(out_dir))
    except Exception:
        for node_id in _node_ids(scene) - before:
            node = scene.GetNodeByID(node_id)
            if node is not None and not node.IsA("vtkMRMLSubjectHierarchyNode"):
                scene.RemoveNode(node)
        sh.GetItemChildren(sh.GetSceneItemID(), items, True)  # what is left: the new folder
        for item in sorted({items.GetId(i) for i in range(items.GetNumberOfIds())} - items_before, reverse=True):
            sh.RemoveItem(item, False, False)
        raise


def _load_results(scene: slicer.vtkMRMLScene, input_node: slicer.vtkMRMLScalarVolumeNode, out: Path) -> ResultNodes:
    summary = json.loads((out / protocol.SUMMARY_JSON).read_text(encoding="utf-8"))
    target = summary["target"]["name"]
    base = f"{input_node.GetName()} CF {target}"
    folder = _result_folder(scene, input_node, f"{base} ({summary['mode']})")
    nodes = {}
    for role, file_name in protocol.VOLUME_FILES.items():
        node = read_volume_node(scene, out / file_name, f"{base} {role}")
        if not same_geometry(node, input_node):
            raise ValueError(f"{file_name} in {out} does not have the geometry of {input_node.GetName()}")
        node.SetAttribute(ROLE, role)
        nodes[role] = node
    for node in nodes.values():  # read from the run's temporary folder, which goes away
        forget_file(scene, node)
    show_as_heatmap(scene, nodes["heatmap"], HEATMAP_THRESHOLD_SHARE)
    table = chunk_table(scene, read_chunk_rows(out / protocol.CHUNKS_CSV), f"{base} chunks")
    chart, series = prediction_chart(scene, table, target, f"{base} predictions")
    for node in (table, chart):
        node.SetNodeReferenceID(INPUT_REFERENCE, input_node.GetID())
    table.SetAttribute(ROLE, CHUNKS)
    table.SetAttribute(SUMMARY, json.dumps(summary))
    sequence = browser = None
    if (out / protocol.SWEEP_DIR / protocol.SWEEP_CSV).is_file():
        sequence, browser = sweep_sequence(scene, out / protocol.SWEEP_DIR, base)
    outputs = {**nodes, "chart": chart, "sequence": sequence, "browser": browser}
    for field_name in REFERENCED:
        if outputs.get(field_name) is not None:
            table.SetNodeReferenceID(OUTPUT_REFERENCE + field_name.capitalize(), outputs[field_name].GetID())
    sh = _subject_hierarchy(scene)
    for node in [*nodes.values(), table, chart, *series, sequence, browser]:
        if node is not None:
            sh.SetItemParent(_item(sh, node), folder)
    show_result(scene, input_node.GetID(), nodes["counterfactual"].GetID(), nodes["heatmap"].GetID(), chart.GetID())
    chunk = summary["output_chunk"]
    jump_to_slice(scene, slice_center_ras(input_node, (chunk["start"] + chunk["end"] - 1) / 2))
    return ResultNodes(
        folder_item=folder,
        counterfactual=nodes["counterfactual"].GetID(),
        reconstruction=nodes["reconstruction"].GetID(),
        heatmap=nodes["heatmap"].GetID(),
        difference=nodes["difference"].GetID(),
        table=table.GetID(),
        chart=chart.GetID(),
        series=[s.GetID() for s in series],
        sequence=sequence.GetID() if sequence is not None else None,
        browser=browser.GetID() if browser is not None else None,
        summary=summary,
    )


def result_of_table(scene: slicer.vtkMRMLScene, table: slicer.vtkMRMLTableNode) -> ResultNodes | None:
    """The run whose per-chunk table is ``table`` (None if its volumes are no longer in the scene)."""
    ids = {name: table.GetNodeReferenceID(OUTPUT_REFERENCE + name.capitalize()) for name in REFERENCED}
    if not all(ids[name] and scene.GetNodeByID(ids[name]) for name in ("counterfactual", "heatmap", "chart")):
        return None
    chart = scene.GetNodeByID(ids["chart"])
    sh = _subject_hierarchy(scene)
    return ResultNodes(
        folder_item=sh.GetItemParent(sh.GetItemByDataNode(table)),
        counterfactual=ids["counterfactual"],
        reconstruction=ids["reconstruction"],
        heatmap=ids["heatmap"],
        difference=ids["difference"],
        table=table.GetID(),
        chart=ids["chart"],
        series=[chart.GetNthPlotSeriesNodeID(i) for i in range(chart.GetNumberOfPlotSeriesNodes())],
        sequence=ids["sequence"],
        browser=ids["browser"],
        summary=json.loads(table.GetAttribute(SUMMARY) or "{}"),
    )


def latest_result(scene: slicer.vtkMRMLScene) -> ResultNodes | None:
    """The last run in the scene that is still complete (loaded, imported or made since Slicer started)."""
    cls = "vtkMRMLTableNode"
    tables = [scene.GetNthNodeByClass(i, cls) for i in range(scene.GetNumberOfNodesByClass(cls))]
    for table in reversed(tables):
        if table.GetAttribute(ROLE) == CHUNKS:
            result = result_of_table(scene, table)
            if result is not None:
                return result
    return None


def is_result_table(node) -> bool:
    return node is not None and node.IsA("vtkMRMLTableNode") and node.GetAttribute(ROLE) == CHUNKS


def input_of(table_or_chart) -> slicer.vtkMRMLScalarVolumeNode | None:
    """The volume a run's table or chart indexes (its input)."""
    return table_or_chart.GetNodeReference(INPUT_REFERENCE)


def jump_to_chunk(scene: slicer.vtkMRMLScene, table_or_chart, row: int) -> tuple[float, float, float]:
    """Centre the linked views on chunk ``row`` of a result table (what a click on a plot point does)."""
    table = table_or_chart
    if table.IsA("vtkMRMLPlotChartNode"):
        table = table.GetNthPlotSeriesNode(0).GetTableNode()
    column = table.GetTable().GetColumnByName("chunk_center")
    if not 0 <= row < column.GetNumberOfTuples():
        raise IndexError(f"chunk row {row} is out of range (the table has {column.GetNumberOfTuples()} rows)")
    input_node = input_of(table)
    if input_node is None:
        raise ValueError("the result's input volume is no longer in the scene")
    ras = slice_center_ras(input_node, column.GetValue(row))
    jump_to_slice(scene, ras)
    return ras
