"""Shapes of pleural fluid inside one lung: each returns the fluid fraction (0..1) per voxel of that lung.

All shapes replace lung only (ribs, muscle and mediastinum are never painted over), with a partial-volume
ramp of ``EDGE_VOXELS`` at the fluid's edge. LPS: +y is posterior (dependent for a supine patient), +z cranial.
"""

from __future__ import annotations

import numpy as np

from CTCounterfactualLib.data.lungs import ChestLungs

EDGE_VOXELS = 1.5  # partial-volume ramp width


def _edge_mm(lungs: ChestLungs) -> float:
    return EDGE_VOXELS * min(lungs.geometry.spacing[:2])


def _ramp(signed_mm: np.ndarray, edge: float) -> np.ndarray:
    """1 well inside the fluid (``signed_mm`` > 0), 0 well outside, linear over ``edge`` mm around 0."""
    return np.clip(signed_mm / edge + 0.5, 0.0, 1.0)


def _lung_z_range(lung: np.ndarray, lungs: ChestLungs) -> tuple[np.ndarray, float, float]:
    rows = np.flatnonzero(lung.any(axis=(1, 2)))
    z = lungs.z[rows]
    return rows, float(z.min()), float(z.max())


def crescent(lungs: ChestLungs, side: str, depth_mm: float, top_mm: float, posterior_start: float = 0.4) -> np.ndarray:
    """Fluid along the posterior chest wall whose inner edge (meniscus) follows the wall.

    On each slice from the lung base to ``top_mm`` above it, the lung within ``t`` mm of the lungs' outline
    fills, where ``t`` grows from 0 at ``posterior_start`` (0 front .. 1 back of that slice's lung) to
    ``depth_mm`` at the back, tapering (square root) from the base to ``top_mm``.
    """
    lung = lungs.side(side)
    frac = np.zeros(lung.shape, dtype=np.float32)
    if not lung.any():
        return frac
    rows, base, _ = _lung_z_range(lung, lungs)
    top = base + top_mm
    edge = _edge_mm(lungs)
    for k in rows:
        if not base <= lungs.z[k] <= top:
            continue
        taper = np.sqrt(1 - (lungs.z[k] - base) / max(top - base, 1e-6))  # thickest at the base
        ys = lungs.y[k][lung[k]]
        front, back = float(ys.min()), float(ys.max())
        post = np.clip((lungs.y[k] - front) / max(back - front, 1e-6), 0, 1)
        t = depth_mm * taper * np.clip((post - posterior_start) / (1 - posterior_start), 0, 1) ** 1.5
        frac[k] = _ramp(t - lungs.depth[k], edge) * (t > 0) * lung[k]
    return frac


def layering(lungs: ChestLungs, side: str, depth_mm: float, top_mm: float, tilt_deg: float) -> np.ndarray:
    """Free fluid with a horizontal level (supine patient): every lung voxel behind one coronal plane fills.

    The level lies ``depth_mm`` in front of the most posterior lung voxel of the side; a head-up tilt of
    ``tilt_deg`` lifts the level cranially (the fluid thins towards the apex); nothing above ``top_mm`` from
    the lung base.
    """
    lung = lungs.side(side)
    frac = np.zeros(lung.shape, dtype=np.float32)
    if not lung.any():
        return frac
    rows, base, _ = _lung_z_range(lung, lungs)
    back = float(lungs.y[lung].max())
    edge = _edge_mm(lungs)
    slope = np.tan(np.radians(tilt_deg))
    for k in rows:
        if lungs.z[k] - base > top_mm:
            continue
        level = back - depth_mm + (lungs.z[k] - base) * slope
        frac[k] = _ramp(lungs.y[k] - level, edge) * lung[k]
    return frac


def loculated(
    lungs: ChestLungs,
    side: str,
    rng: np.random.Generator,
    height: float,
    thickness_mm: float,
    length_mm: float,
    height_mm: float,
) -> np.ndarray:
    """A lens-shaped pocket against the chest wall, anywhere on its lateral half, not following gravity.

    Its centre is a random point of the lung's outline on the slice ``height`` (0 base .. 1 apex) of the way
    up, away from the mediastinum; it is ``thickness_mm`` deep at the centre and thins to 0 over
    ``length_mm`` in-plane and ``height_mm`` cranio-caudally (an ellipsoidal lens).
    """
    lung = lungs.side(side)
    frac = np.zeros(lung.shape, dtype=np.float32)
    if not lung.any():
        return frac
    rows, base, apex = _lung_z_range(lung, lungs)
    zc = base + height * (apex - base)
    k0 = int(rows[np.argmin(np.abs(lungs.z[rows] - zc))])
    wall = lung[k0] & (lungs.depth[k0] <= 1.5 * max(lungs.geometry.spacing[:2]))
    mid_x = float(lungs.x[k0][lungs.both[k0]].mean())
    lateral = np.abs(lungs.x[k0] - mid_x) >= np.abs(float(lungs.x[k0][lung[k0]].mean()) - mid_x)
    candidates = np.argwhere(wall & lateral)
    if candidates.size == 0:
        candidates = np.argwhere(wall)
    r, c = candidates[rng.integers(len(candidates))]
    xc, yc = float(lungs.x[k0, r, c]), float(lungs.y[k0, r, c])
    edge = _edge_mm(lungs)
    for k in rows:
        dz = (lungs.z[k] - lungs.z[k0]) / height_mm
        if abs(dz) >= 1:
            continue
        s2 = ((lungs.x[k] - xc) ** 2 + (lungs.y[k] - yc) ** 2) / length_mm**2
        t = thickness_mm * np.sqrt(np.clip(1 - s2 - dz**2, 0, None))
        frac[k] = _ramp(t - lungs.depth[k], edge) * (t > 0) * lung[k]
    return frac
