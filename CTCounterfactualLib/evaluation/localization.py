"""Where a map (CF heatmap or saliency) puts its mass, against the ground-truth finding mask."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from CTCounterfactualLib.data.masks import dilated_mask, heatmap_share
from CTCounterfactualLib.data.volume_io import Geometry

DILATE_MM = 5.0


def body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient: voxels above -500 HU with holes (lungs, airways) filled, slice by slice."""
    out = np.zeros(hu.shape, bool)
    for k in range(hu.shape[0]):
        img = sitk.GetImageFromArray((hu[k] > -500).astype(np.uint8))
        out[k] = sitk.GetArrayFromImage(sitk.BinaryFillhole(img)).astype(bool)
    return out


class FindingRegions:
    """The finding's mask, its dilation by ``DILATE_MM`` and the body, computed once per volume."""

    def __init__(self, mask: np.ndarray, geometry: Geometry, body: np.ndarray):
        self.mask = mask
        self.dilated = dilated_mask(mask, geometry, DILATE_MM)
        self.body = body | self.dilated
        ks = np.nonzero(mask.any(axis=(1, 2)))[0]
        self.slices = (int(ks.min()), int(ks.max()) + 1)

    @property
    def chance_share(self) -> float:
        """The dilated mask's share of the body: what a map spread evenly over the body would score."""
        return float(self.dilated.sum() / max(1, self.body.sum()))


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def top_mass_chunk(saliency: np.ndarray, bounds: list[tuple[int, int]]) -> tuple[int, int]:
    """The chunk holding the most map mass (a saliency map's answer to 'which slices matter')."""
    return max(bounds, key=lambda ab: float(saliency[ab[0] : ab[1]].sum()))


def localization_metrics(heat: np.ndarray, regions: FindingRegions, top_chunk: tuple[int, int]) -> dict:
    """Share of the map's mass in the mask and within 5 mm, pointing game, top chunk on the finding.

    ``heat`` is non-negative. Pointing game: the map's maximum (inside the body) falls within 5 mm of
    the finding. Mass outside the body is counted in the total, so noise in the air is penalised.
    """
    h = np.abs(heat)
    inside = np.where(regions.body, h, -1.0)
    peak = np.unravel_index(int(np.argmax(inside)), h.shape)
    return {
        "share_in_mask": heatmap_share(h, regions.mask),
        "share_in_dilated": heatmap_share(h, regions.dilated),
        "chance_share_dilated": regions.chance_share,
        "pointing_hit": bool(h.max() > 0 and regions.dilated[peak]),
        "top_chunk_overlaps": overlaps(top_chunk, regions.slices),
    }
