"""The bundled demo chest CT in Slicer's Sample Data module, so a first-time user has an input in one click."""

from __future__ import annotations

import hashlib
from pathlib import Path

from .contract import SCENE_PARENT

CATEGORY = "CT Counterfactual"
SAMPLE_NAME = "CTCounterfactual demo chest CT"
NODE_NAME = "CTCounterfactualDemoChestCT"
THUMBNAIL = SCENE_PARENT / "Resources" / "Icons" / "CTCounterfactual.png"


def demo_ct_path() -> Path:
    """The engine's bundled demo CT (its one definition: ``CTCounterfactualLib/data/demo_ct.py``)."""
    from CTCounterfactualLib.data.demo_ct import DEMO_CT  # numpy and SimpleITK, both in Slicer; no torch

    return DEMO_CT


def register_demo_sample() -> bool:
    """Register the demo CT with Sample Data (a local file URI, verified by its SHA-256); False where impossible."""
    try:
        import SampleData
    except ImportError:  # an application built without the Sample Data module
        return False
    path = demo_ct_path()
    if not path.is_file():
        return False
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY,
        sampleName=SAMPLE_NAME,
        uris=path.as_uri(),
        fileNames=f"{NODE_NAME}{''.join(path.suffixes)}",
        nodeNames=NODE_NAME,
        thumbnailFileName=str(THUMBNAIL),
        loadFileType="VolumeFile",
        checksums=f"SHA256:{digest}",
    )
    return True
