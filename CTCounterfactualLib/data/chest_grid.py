"""Bring a real chest CT (any file or DICOM folder) onto the models' grid: LPS, square in-plane, 5 mm slices."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from CTCounterfactualLib.data.demo_ct import ChestCT
from CTCounterfactualLib.data.volume_io import Geometry, image_from_array, read_volume

MODEL_GRID_SIZE = 128  # in-plane voxels: the VQ-GAN's working resolution
MODEL_GRID_Z_MM = 5.0


def resample_chest(
    hu: np.ndarray,
    geometry: Geometry,
    labels: np.ndarray | None = None,
    size: int = MODEL_GRID_SIZE,
    z_mm: float = MODEL_GRID_Z_MM,
    name: str = "",
) -> ChestCT:
    """Resample onto an identity-direction grid of ``size`` x ``size`` over the in-plane field of view."""
    img = sitk.DICOMOrient(image_from_array(np.maximum(hu, -1024).astype(np.float32), geometry), "LPS")
    fov = [img.GetSpacing()[a] * img.GetSize()[a] for a in range(3)]
    side = max(fov[0], fov[1])
    spacing = (side / size, side / size, z_mm)
    n_z = max(1, int(fov[2] // z_mm))
    corner = np.asarray(img.TransformIndexToPhysicalPoint((0, 0, 0))) - np.asarray(img.GetSpacing()) / 2
    ref = sitk.Image(size, size, n_z, sitk.sitkFloat32)
    ref.SetSpacing(spacing)
    ref.SetOrigin(tuple(corner + np.asarray(spacing) / 2))
    sigma = [max(1e-3, (spacing[a] - img.GetSpacing()[a]) / 2) for a in range(3)]  # anti-aliasing
    smooth = sitk.SmoothingRecursiveGaussian(img, sigma)
    out = sitk.Resample(smooth, ref, sitk.Transform(), sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    lab = None
    if labels is not None:
        limg = sitk.DICOMOrient(image_from_array(labels.astype(np.uint8), geometry), "LPS")
        lab = sitk.GetArrayFromImage(sitk.Resample(limg, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    vol_geometry = Geometry(
        size=tuple(int(v) for v in out.GetSize()),
        spacing=tuple(float(v) for v in out.GetSpacing()),
        origin=tuple(float(v) for v in out.GetOrigin()),
        direction=tuple(float(v) for v in out.GetDirection()),
    )
    return ChestCT(hu=sitk.GetArrayFromImage(out), labels=lab, geometry=vol_geometry, name=name)


def load_chest(
    path: str | os.PathLike, labels_path: str | os.PathLike | None = None, size: int = MODEL_GRID_SIZE
) -> ChestCT:
    """Read a CT (and optionally its label map) and resample it with :func:`resample_chest`."""
    vol = read_volume(path)
    labels = read_volume(labels_path).array if labels_path else None
    return resample_chest(vol.array, vol.geometry, labels, size=size, name=Path(path).name)
