"""The output chunk's lambda sweep (``sweep/`` from ``ctcf explain --sweep``) as a playable sequence."""

from __future__ import annotations

import csv
from pathlib import Path

import slicer

from .contract import protocol
from .volume_nodes import read_volume_node


def read_sweep_rows(folder: Path) -> list[dict]:
    with open(folder / protocol.SWEEP_CSV, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def sweep_sequence(
    scene: slicer.vtkMRMLScene, folder: Path, name: str
) -> tuple[slicer.vtkMRMLSequenceNode, slicer.vtkMRMLSequenceBrowserNode]:
    """A sequence of the sweep's slabs indexed by lambda, with a browser (played from the CF to lambda 0)."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", scene.GenerateUniqueName(f"{name} sweep"))
    sequence.SetIndexName("lambda")
    sequence.SetIndexUnit("")
    sequence.SetIndexType(slicer.vtkMRMLSequenceNode.NumericIndex)
    for row in read_sweep_rows(folder):
        frame = read_volume_node(scene, folder / row["file"], f"{name} lambda {row['lambda']}")
        sequence.SetDataNodeAtValue(frame, row["lambda"])  # the sequence keeps its own copy
        scene.RemoveNode(frame.GetStorageNode())
        scene.RemoveNode(frame.GetDisplayNode())
        scene.RemoveNode(frame)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", scene.GenerateUniqueName(f"{name} sweep browser"))
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    browser.SetPlaybackRateFps(4.0)
    browser.SetPlaybackItemSkippingEnabled(False)
    browser.SetPlaybackLooped(True)
    return sequence, browser
