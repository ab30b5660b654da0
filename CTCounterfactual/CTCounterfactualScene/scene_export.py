"""Export the scene with every result as an MRB, and load one back with the result layout restored."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import slicer

from .result_layout import restore_layout


def _ensure_storage_nodes(scene: slicer.vtkMRMLScene) -> None:
    """Give every storable node (tables, sequences, ...) a storage node so the bundle contains it."""
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLStorableNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLStorableNode")
        if node.GetStorageNode() is None and not node.GetHideFromEditors():
            node.AddDefaultStorageNode()


def export_mrb(scene: slicer.vtkMRMLScene, path: str | os.PathLike) -> Path:
    """Write the whole scene (inputs, results, table, plot, sequence, layout) to ``path`` atomically."""
    path = Path(path)
    if path.suffix.lower() != ".mrb":
        raise ValueError(f"a scene bundle must end in .mrb, got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _ensure_storage_nodes(scene)
    # the bundle names its scene after the file, so write under the final name in a folder beside it
    stage = Path(tempfile.mkdtemp(prefix=".ctcf-export-", dir=path.parent))
    try:
        tmp = stage / path.name
        written = scene.WriteToMRB(str(tmp))
        # WriteToMRB marks every storable node unmodified since read and gives them back their old file names (a
        # deleted run folder's, or none); without this a later File / Save unticks them and they are lost. Slicer's
        # own writer does the same (qSlicerSceneWriter::writeToMRB: "Mark the storable nodes as modified since
        # read, since that flag was reset when the files were written out.")
        scene.SetStorableNodesModifiedSinceRead()
        if not written:
            raise RuntimeError(f"writing the scene bundle {path} failed (see the error log)")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return path


def load_mrb(scene: slicer.vtkMRMLScene, path: str | os.PathLike) -> None:
    """Read an MRB into ``scene`` (replacing its content) and register the result layout again.

    In the Slicer application use ``slicer.util.loadScene`` and then ``restore_layout``; this is the
    same without the application (a bare scene needs a cache and data IO manager to read bundles).
    """
    if scene.GetCacheManager() is None:
        scene.SetCacheManager(slicer.vtkCacheManager())
    if scene.GetDataIOManager() is None:
        io = slicer.vtkDataIOManager()
        io.SetCacheManager(scene.GetCacheManager())
        scene.SetDataIOManager(io)
    if not scene.ReadFromMRB(str(path)):
        raise RuntimeError(f"cannot read the scene bundle {path}")
    restore_layout(scene)
