"""Finding masks in millimetres: dilate a mask by a distance, and how much of a map lies inside one."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from CTCounterfactualLib.data.volume_io import Geometry, image_from_array
from CTCounterfactualLib.params import BODY_THRESHOLD_HU


def dilated_mask(mask: np.ndarray, geometry: Geometry, mm: float) -> np.ndarray:
    """``mask`` dilated by a ball of ``mm`` millimetres (per-axis radius from the spacing)."""
    img = image_from_array(mask.astype(np.uint8), geometry)
    radius = [max(1, int(round(mm / s))) for s in geometry.spacing]
    out = sitk.BinaryDilate(img, radius, sitk.sitkBall)
    return sitk.GetArrayFromImage(out).astype(bool)


def heatmap_share(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """The share of ``heatmap``'s mass inside ``mask`` (0 for an empty heatmap)."""
    total = float(heatmap.sum())
    return float(heatmap[mask].sum() / total) if total > 0 else 0.0


def body_mask(hu: np.ndarray, threshold: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """The body of a (D, H, W) HU volume: voxels above ``threshold`` with each slice's holes (lungs, airways) filled."""
    out = np.empty(hu.shape, dtype=bool)
    for i, sl in enumerate(hu):
        img = sitk.GetImageFromArray((sl > threshold).astype(np.uint8))
        out[i] = sitk.GetArrayFromImage(sitk.BinaryFillhole(img)).astype(bool)
    return out
