"""The bundled real chest CT (LIDC-IDRI-0001, resampled) and its TotalSegmentator labels: paths and loader."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CTCounterfactualLib.data.volume_io import Geometry, read_volume

DEMO_DIR = Path(__file__).resolve().parent.parent / "resources" / "demo"
DEMO_CT = DEMO_DIR / "chest_ct.nii.gz"
DEMO_LABELS = DEMO_DIR / "chest_labels.nii.gz"

# TotalSegmentator v2 label ids
RIGHT_LUNG_LABELS = (12, 13, 14)
LEFT_LUNG_LABELS = (10, 11)


@dataclass
class ChestCT:
    """A real chest CT (HU, slices x rows x cols) with its label map (0 where none)."""

    hu: np.ndarray
    labels: np.ndarray | None
    geometry: Geometry
    name: str


def load_demo_ct() -> ChestCT:
    """The bundled demo chest CT with its labels."""
    ct = read_volume(DEMO_CT)
    labels = read_volume(DEMO_LABELS).array.astype(np.uint8)
    return ChestCT(hu=ct.array, labels=labels, geometry=ct.geometry, name="LIDC-IDRI-0001")
