"""The lungs of a chest CT and in-plane distances inside them: what the effusion simulator draws into."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from CTCounterfactualLib.data.demo_ct import LEFT_LUNG_LABELS, RIGHT_LUNG_LABELS
from CTCounterfactualLib.data.volume_io import Geometry, image_from_array


def physical_axes(geometry: Geometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LPS x, y, z (mm) of every voxel, as arrays broadcastable to (slices, rows, cols)."""
    d = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    sx, sy, sz = geometry.spacing
    nx, ny, nz = geometry.size
    i = np.arange(nx)[None, None, :] * sx
    j = np.arange(ny)[None, :, None] * sy
    k = np.arange(nz)[:, None, None] * sz
    return tuple(geometry.origin[a] + d[a, 0] * i + d[a, 1] * j + d[a, 2] * k for a in range(3))


def computed_lung_mask(hu: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Lungs of a CT without labels: air below -400 HU not connected to the outside, the largest parts, closed."""
    air = image_from_array((hu < -400).astype(np.uint8), geometry)
    comps = sitk.RelabelComponent(sitk.ConnectedComponent(air), sortByObjectSize=True)
    lab = sitk.GetArrayFromImage(comps)
    border = np.unique(
        np.concatenate([lab[:, 0].ravel(), lab[:, -1].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()])
    )
    voxel_ml = float(np.prod(geometry.spacing)) / 1000
    keep = []
    for c in range(1, min(int(lab.max()), 6) + 1):
        size_ml = float((lab == c).sum()) * voxel_ml
        if c not in border and size_ml > 100:  # lungs (or both joined by the trachea); not bowel gas
            keep.append(c)
    lungs = np.isin(lab, keep).astype(np.uint8)
    radius = [max(1, int(round(3.0 / s))) for s in geometry.spacing[:2]] + [1]
    closed = sitk.BinaryMorphologicalClosing(image_from_array(lungs, geometry), radius)  # vessels inside the lung
    filled = sitk.BinaryFillhole(closed)
    return sitk.GetArrayFromImage(filled).astype(bool)


def lung_sides(hu: np.ndarray, geometry: Geometry, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) lung masks: TotalSegmentator lobes when ``labels`` has them, else computed on the CT."""
    if labels is not None and np.isin(labels, RIGHT_LUNG_LABELS + LEFT_LUNG_LABELS).any():
        return np.isin(labels, RIGHT_LUNG_LABELS), np.isin(labels, LEFT_LUNG_LABELS)
    lungs = computed_lung_mask(hu, geometry)
    x, _, _ = physical_axes(geometry)
    x = np.broadcast_to(x, hu.shape)
    mid = float(np.median(x[lungs])) if lungs.any() else 0.0
    return lungs & (x < mid), lungs & (x >= mid)  # LPS: +x is the patient's left


def in_plane_distance(mask: np.ndarray, geometry: Geometry, inside: bool, in_plane: bool = True) -> np.ndarray:
    """The distance (mm) to ``mask``'s outline of voxels inside it (``inside``) or outside it: per axial slice, or
    in 3D when not ``in_plane``."""
    img = image_from_array(mask.astype(np.uint8), geometry)
    if in_plane:  # a huge slice spacing keeps the distance 2D
        img.SetSpacing((geometry.spacing[0], geometry.spacing[1], 1e6))
    img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    signed = sitk.GetArrayFromImage(
        sitk.SignedMaurerDistanceMap(img, insideIsPositive=inside, squaredDistance=False, useImageSpacing=True)
    )
    return np.maximum(signed, 0.0).astype(np.float32)


@dataclass
class ChestLungs:
    """Both lungs of a CT with what every fluid shape needs: sides, LPS coordinates, distance to the outline."""

    right: np.ndarray
    left: np.ndarray
    x: np.ndarray  # LPS mm, full (slices, rows, cols) arrays
    y: np.ndarray
    z: np.ndarray  # per slice, (slices,)
    depth: np.ndarray  # in-plane mm from each lung voxel to the outline of both lungs (0 outside)
    geometry: Geometry

    @property
    def both(self) -> np.ndarray:
        return self.right | self.left

    def side(self, name: str) -> np.ndarray:
        return self.right if name == "right" else self.left

    @classmethod
    def of(cls, hu: np.ndarray, geometry: Geometry, labels: np.ndarray | None = None) -> ChestLungs:
        right, left = lung_sides(hu, geometry, labels)
        x, y, z = (np.broadcast_to(a, hu.shape) for a in physical_axes(geometry))
        # depth is measured to the outline of both lungs together: a split between touching lungs is no wall
        depth = in_plane_distance(right | left, geometry, inside=True)
        return cls(right, left, x, y, np.ascontiguousarray(z[:, 0, 0]), depth, geometry)
