"""The per-chunk predictions as a table node and a plot chart (prediction vs chunk centre)."""

from __future__ import annotations

import csv
import os

import slicer
import vtk

from .contract import protocol

NUMERIC_COLUMNS = (*protocol.CHUNK_NUMERIC_COLUMNS[:2], "chunk_center", *protocol.CHUNK_NUMERIC_COLUMNS[2:])


def read_chunk_rows(path: str | os.PathLike) -> list[dict]:
    """Rows of the engine's chunks.csv, with the chunk centre (slice index) added."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["chunk_center"] = (int(r["chunk_start"]) + int(r["chunk_end"]) - 1) / 2
    return rows


def chunk_table(scene: slicer.vtkMRMLScene, rows: list[dict], name: str) -> slicer.vtkMRMLTableNode:
    """A table node with one row per chunk: the engine's columns plus ``chunk_center``."""
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", scene.GenerateUniqueName(name))
    table = node.GetTable()
    for column in NUMERIC_COLUMNS:
        array = vtk.vtkDoubleArray()
        array.SetName(column)
        for r in rows:
            array.InsertNextValue(float(r[column]))
        table.AddColumn(array)
    reasons = vtk.vtkStringArray()
    reasons.SetName("stop_reason")
    for r in rows:
        reasons.InsertNextValue(r["stop_reason"])
    table.AddColumn(reasons)
    node.SetUseColumnTitleAsColumnHeader(True)
    node.SetLocked(True)  # results, not something to edit by accident
    return node


def _series(scene, table, name: str, y_column: str, rgb: tuple[float, float, float], style: int):
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", scene.GenerateUniqueName(name))
    series.SetAndObserveTableNodeID(table.GetID())
    series.SetXColumnName("chunk_center")
    series.SetYColumnName(y_column)
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeScatter)
    series.SetLineStyle(style)
    series.SetMarkerStyle(slicer.vtkMRMLPlotSeriesNode.MarkerStyleCircle)
    series.SetColor(*rgb)
    return series


def prediction_chart(
    scene: slicer.vtkMRMLScene, table: slicer.vtkMRMLTableNode, target: str, name: str
) -> tuple[slicer.vtkMRMLPlotChartNode, list[slicer.vtkMRMLPlotSeriesNode]]:
    """A chart of the counterfactual's (minimum) and the unshifted prediction per chunk centre."""
    cf = _series(
        scene,
        table,
        f"{name} counterfactual",
        "prediction_min",
        (0.30, 0.45, 0.69),
        slicer.vtkMRMLPlotSeriesNode.LineStyleSolid,
    )
    before = _series(
        scene,
        table,
        f"{name} before shift",
        "prediction_before",
        (0.77, 0.31, 0.32),
        slicer.vtkMRMLPlotSeriesNode.LineStyleDash,
    )
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", scene.GenerateUniqueName(name))
    for s in (cf, before):
        chart.AddAndObservePlotSeriesNodeID(s.GetID())
    chart.SetTitle(f"{target}: prediction per chunk")
    chart.SetXAxisTitle("slice (chunk centre)")
    chart.SetYAxisTitle(f"P({target})")
    chart.SetLegendVisibility(True)
    return chart, [cf, before]
