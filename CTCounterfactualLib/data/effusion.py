"""Simulated pleural effusion on a real CT: dependent fluid that replaces the posterior lung, deterministic by seed.

The fluid of one side fills the part of that lung within ``t`` mm of the lung's outline on each
axial slice, where ``t`` grows from 0 at the middle of the lung to the effusion's depth at its back
(supine patient: the fluid lies posteriorly), and from the top of the effusion's slice run to its
base. That gives a crescent whose inner edge (the meniscus) follows the chest wall. Only lung
voxels change, so ribs, muscle and the mediastinum are never painted over. Fluid is 0-25 HU plus
noise resampled from the scan's own soft tissue, blended with the lung over a 1.5-voxel
partial-volume edge. Compressive atelectasis of the lung next to the fluid is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from CTCounterfactualLib.data.demo_ct import LEFT_LUNG_LABELS, RIGHT_LUNG_LABELS
from CTCounterfactualLib.data.volume_io import Geometry, image_from_array

SIDES = ("right", "left", "both")
FLUID_HU_RANGE = (0.0, 25.0)
DEPTH_MM_RANGE = (15.0, 45.0)  # fluid thickness at the back of the lung base
EDGE_VOXELS = 1.5  # partial-volume ramp width
POSTERIOR_START = 0.4  # the fluid starts this far (0 front .. 1 back) into the lung


@dataclass(frozen=True)
class EffusionParams:
    """The random draws of one simulated effusion."""

    side: str
    depth_mm: float
    top_fraction: float  # cranial end of the effusion, as a fraction of the lung's height from its base
    fluid_hu: float


@dataclass
class SimulatedEffusion:
    """A CT with simulated fluid: ``hu`` changed exactly where ``mask`` is set (``fraction`` > 0)."""

    hu: np.ndarray
    mask: np.ndarray
    fraction: np.ndarray
    params: EffusionParams
    slices: tuple[int, int]  # first and one-past-last slice holding fluid


def draw_params(seed: int, side: str | None = None) -> EffusionParams:
    """Side, depth, cranio-caudal extent and fluid HU of effusion ``seed``."""
    rng = np.random.default_rng([seed, 0xEFF])
    drawn_side = str(rng.choice(SIDES))
    return EffusionParams(
        side=side or drawn_side,
        depth_mm=float(rng.uniform(*DEPTH_MM_RANGE)),
        top_fraction=float(rng.uniform(0.3, 0.75)),
        fluid_hu=float(rng.uniform(*FLUID_HU_RANGE)),
    )


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


def soft_tissue_noise(hu: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` noise values resampled from the scan's soft tissue (0-100 HU minus its 3x3 in-plane mean)."""
    soft = (hu > 0) & (hu < 100)
    p = np.pad(hu, ((0, 0), (1, 1), (1, 1)), mode="edge")
    local = sum(p[:, a : a + hu.shape[1], b : b + hu.shape[2]] for a in range(3) for b in range(3)) / 9
    residual = (hu - local)[soft & (np.abs(local - 50) < 50)] * 1.06  # 9/8: the mean includes the voxel itself
    residual -= residual.mean() if residual.size else 0.0  # the selection biases it; noise is zero-mean
    if residual.size == 0:
        return np.zeros(n, dtype=np.float32)
    return rng.choice(residual, size=n).astype(np.float32)


def _side_fraction(
    lung: np.ndarray, both: np.ndarray, geometry: Geometry, params: EffusionParams, depth_mm: float
) -> np.ndarray:
    """Fluid fraction (0..1) inside one lung; depth is measured to the outline of ``both`` lungs together."""
    frac = np.zeros(lung.shape, dtype=np.float32)
    if not lung.any():
        return frac
    _, y, z = physical_axes(geometry)
    y = np.broadcast_to(y, lung.shape)
    zs = np.broadcast_to(z, lung.shape)[:, 0, 0]
    # in-plane distance (mm) to the lung's outline: a huge slice spacing keeps the distance 2D
    img = image_from_array(both.astype(np.uint8), geometry)  # a split between touching lungs is no wall
    img.SetSpacing((geometry.spacing[0], geometry.spacing[1], 1e6))
    img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    dist = -sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(img, insideIsPositive=False, useImageSpacing=True))
    lung_slices = np.flatnonzero(lung.any(axis=(1, 2)))
    z_lung = zs[lung_slices]
    base, apex = float(z_lung.min()), float(z_lung.max())
    top = base + params.top_fraction * (apex - base)
    edge = EDGE_VOXELS * min(geometry.spacing[:2])
    for k in lung_slices:
        if not base <= zs[k] <= top:
            continue
        taper = np.sqrt(1 - (zs[k] - base) / max(top - base, 1e-6))  # thickest at the base
        ys = y[k][lung[k]]
        front, back = float(ys.min()), float(ys.max())
        post = np.clip((y[k] - front) / max(back - front, 1e-6), 0, 1)  # 0 front .. 1 back
        t = depth_mm * taper * np.clip((post - POSTERIOR_START) / (1 - POSTERIOR_START), 0, 1) ** 1.5
        f = np.clip((t - dist[k]) / edge + 0.5, 0, 1) * (t > 0) * lung[k]
        frac[k] = f
    return frac


def simulate_effusion(
    hu: np.ndarray, geometry: Geometry, seed: int, labels: np.ndarray | None = None, side: str | None = None
) -> SimulatedEffusion:
    """Add effusion ``seed`` (random side, depth, extent and fluid HU unless ``side`` is given) to ``hu``."""
    params = draw_params(seed, side)
    if params.side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {params.side!r}")
    rng = np.random.default_rng([seed, 0xF1D])
    right, left = lung_sides(hu, geometry, labels)
    frac = np.zeros(hu.shape, dtype=np.float32)
    for name, lung in (("right", right), ("left", left)):
        if params.side in (name, "both"):
            depth = params.depth_mm * (float(rng.uniform(0.6, 1.0)) if params.side == "both" else 1.0)
            frac = np.maximum(frac, _side_fraction(lung, right | left, geometry, params, depth))
    mask = frac > 0
    out = np.array(hu, dtype=np.float32, copy=True)
    fluid = params.fluid_hu + soft_tissue_noise(hu, rng, int(mask.sum()))
    out[mask] = (1 - frac[mask]) * out[mask] + frac[mask] * fluid
    rows = np.flatnonzero(mask.any(axis=(1, 2)))
    slices = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
    return SimulatedEffusion(hu=out, mask=mask, fraction=frac, params=params, slices=slices)
