"""Simulated pleural effusion on a real CT, deterministic by seed: five families of fluid shape, with or without
compressive atelectasis of the lung next to the fluid.

Families (``FAMILIES``), each with its own parameters drawn from the seed:

- ``crescent``: fluid along the posterior chest wall whose meniscus follows the wall, thickest at the base;
- ``layering``: free fluid with a horizontal level (supine patient), optionally tilted head-up;
- ``recess``: a small effusion only in the posterior costophrenic recess (the lowest few centimetres);
- ``loculated``: a lens-shaped pocket against the lateral chest wall at any height, not following gravity;
- ``bilateral``: both sides, crescent or layering, asymmetric (the smaller side 25-100 % of the larger).

Fluid is 0-30 HU (``FLUID_HU_RANGE``), or 35-70 HU for a haemothorax (``HAEMOTHORAX_SHARE`` of draws), plus
noise resampled from the scan's own soft tissue, blended with the lung over a partial-volume edge. With
``ATELECTASIS_SHARE`` probability the lung within 3-12 mm of the fluid is compressed to -500..0 HU, fading
away from the fluid. Only lung voxels change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from CTCounterfactualLib.data import fluid_shapes
from CTCounterfactualLib.data.lungs import ChestLungs, in_plane_distance
from CTCounterfactualLib.data.volume_io import Geometry

FAMILIES = ("crescent", "layering", "recess", "loculated", "bilateral")
SIDES = ("right", "left", "both")
FLUID_HU_RANGE = (0.0, 30.0)
HAEMOTHORAX_HU_RANGE = (35.0, 70.0)
HAEMOTHORAX_SHARE = 0.15
ATELECTASIS_SHARE = 0.6
ATELECTASIS_MM_RANGE = (3.0, 12.0)
ATELECTASIS_HU_RANGE = (-500.0, 0.0)
# crescent / layering / recess / bilateral: fluid thickness at the base; loculated: the pocket's thickness
DEPTH_MM_RANGES = {
    "crescent": (15, 45),
    "layering": (20, 60),
    "recess": (8, 22),
    "loculated": (15, 35),
    "bilateral": (15, 45),
}


@dataclass(frozen=True)
class EffusionParams:
    """The random draws of one simulated effusion (fields a family does not use keep their draw, unused)."""

    family: str
    side: str
    depth_mm: float  # crescent / layering / recess: thickness at the base; loculated: pocket thickness
    top_fraction: float  # crescent / layering: cranial end as a fraction of the lung's height from its base
    fluid_hu: float
    tilt_deg: float = 0.0  # layering: head-up tilt of the fluid level
    recess_mm: float = 30.0  # recess: height of the recess above the lung base
    pocket_height: float = 0.5  # loculated: 0 base .. 1 apex
    pocket_length_mm: float = 35.0  # loculated: in-plane half-length
    pocket_extent_mm: float = 30.0  # loculated: cranio-caudal half-length
    other_side_ratio: float = 1.0  # bilateral: the second side's depth as a share of the first's
    other_side_family: str = "crescent"  # bilateral: crescent or layering on both sides
    atelectasis_mm: float = 0.0  # 0: none
    atelectasis_hu: float = -250.0


@dataclass
class SimulatedEffusion:
    """A CT with simulated fluid: ``hu`` changed exactly where ``mask`` (fluid) or ``atelectasis`` is set."""

    hu: np.ndarray
    mask: np.ndarray
    fraction: np.ndarray
    params: EffusionParams
    slices: tuple[int, int]  # first and one-past-last slice holding fluid
    volume_ml: float  # fluid volume (sum of the fluid fraction)
    atelectasis: np.ndarray  # lung compressed next to the fluid (not fluid: outside ``mask``)


def family_of(seed: int) -> str:
    """The family effusion ``seed`` draws when none is forced: round robin, so any run of seeds is balanced."""
    return FAMILIES[seed % len(FAMILIES)]


def draw_params(seed: int, side: str | None = None, family: str | None = None) -> EffusionParams:
    """Family, side, size, extent, density and atelectasis of effusion ``seed`` (``side``/``family`` force one)."""
    rng = np.random.default_rng([seed, 0xEFF, 2])
    fam = family or family_of(seed)
    if fam not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {fam!r}")
    drawn_side = "both" if fam == "bilateral" else str(rng.choice(SIDES[:2]))
    depth = DEPTH_MM_RANGES[fam]
    haemo = rng.uniform() < HAEMOTHORAX_SHARE
    fluid_hu = float(rng.uniform(*(HAEMOTHORAX_HU_RANGE if haemo else FLUID_HU_RANGE)))
    atel = rng.uniform() < ATELECTASIS_SHARE
    return EffusionParams(
        family=fam,
        side=side or drawn_side,
        depth_mm=float(rng.uniform(*depth)),
        top_fraction=float(rng.uniform(0.3, 0.8)),
        fluid_hu=fluid_hu,
        tilt_deg=float(rng.uniform(0, 12)),
        recess_mm=float(rng.uniform(20, 50)),
        pocket_height=float(rng.uniform(0.15, 0.85)),
        pocket_length_mm=float(rng.uniform(30, 60)),
        pocket_extent_mm=float(rng.uniform(25, 50)),
        other_side_ratio=float(rng.uniform(0.25, 1.0)),
        other_side_family=str(rng.choice(["crescent", "layering"])),
        atelectasis_mm=float(rng.uniform(*ATELECTASIS_MM_RANGE)) if atel else 0.0,
        atelectasis_hu=float(rng.uniform(*ATELECTASIS_HU_RANGE)),
    )


def _lung_height(lung: np.ndarray, lungs: ChestLungs) -> float:
    z = lungs.z[lung.any(axis=(1, 2))]
    return float(z.max() - z.min()) if z.size else 0.0


def _one_side(lungs: ChestLungs, side: str, family: str, p: EffusionParams, depth: float, rng) -> np.ndarray:
    height = _lung_height(lungs.side(side), lungs)
    if family == "crescent":
        return fluid_shapes.crescent(lungs, side, depth, p.top_fraction * height)
    if family == "layering":
        return fluid_shapes.layering(lungs, side, depth, p.top_fraction * height + 20.0, p.tilt_deg)
    if family == "recess":
        return fluid_shapes.crescent(lungs, side, depth, p.recess_mm, posterior_start=0.6)
    return fluid_shapes.loculated(lungs, side, rng, p.pocket_height, depth, p.pocket_length_mm, p.pocket_extent_mm)


def fluid_fraction(lungs: ChestLungs, p: EffusionParams, rng: np.random.Generator) -> np.ndarray:
    """The fluid fraction (0..1) of effusion ``p`` in these lungs."""
    if p.side not in SIDES:
        raise ValueError(f"side must be one of {', '.join(SIDES)}, got {p.side!r}")
    frac = np.zeros(lungs.right.shape, dtype=np.float32)
    sides = ("right", "left") if p.side == "both" else (p.side,)
    for i, name in enumerate(sides):
        family = p.other_side_family if p.family == "bilateral" else p.family
        depth = p.depth_mm * (p.other_side_ratio if p.side == "both" and i == 1 else 1.0)
        frac = np.maximum(frac, _one_side(lungs, name, family, p, depth, rng))
    return frac


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


def _atelectasis_weight(lungs: ChestLungs, mask: np.ndarray, band_mm: float) -> np.ndarray:
    """1 at the fluid's edge fading to 0 at ``band_mm`` from it, on the lung next to the fluid (0 elsewhere)."""
    if band_mm <= 0 or not mask.any():
        return np.zeros(mask.shape, dtype=np.float32)
    d = in_plane_distance(mask, lungs.geometry, inside=False)
    w = np.clip(1 - d / band_mm, 0, 1) * (lungs.both & ~mask)
    return w.astype(np.float32)


def simulate_effusion(
    hu: np.ndarray,
    geometry: Geometry,
    seed: int,
    labels: np.ndarray | None = None,
    side: str | None = None,
    family: str | None = None,
    lungs: ChestLungs | None = None,
) -> SimulatedEffusion:
    """Add effusion ``seed`` to ``hu`` (random family, side and size unless ``family`` / ``side`` is given).

    ``lungs`` (from ``ChestLungs.of(hu, geometry, labels)``) saves computing them again for many seeds.
    """
    params = draw_params(seed, side, family)
    rng = np.random.default_rng([seed, 0xF1D])
    lungs = lungs or ChestLungs.of(hu, geometry, labels)
    frac = fluid_fraction(lungs, params, rng)
    mask = frac > 0
    out = np.array(hu, dtype=np.float32, copy=True)
    fluid = params.fluid_hu + soft_tissue_noise(hu, rng, int(mask.sum()))
    out[mask] = (1 - frac[mask]) * out[mask] + frac[mask] * fluid
    w = _atelectasis_weight(lungs, mask, params.atelectasis_mm)
    atel = w > 0
    collapsed = params.atelectasis_hu + soft_tissue_noise(hu, rng, int(atel.sum()))
    out[atel] = (1 - w[atel]) * out[atel] + w[atel] * collapsed
    rows = np.flatnonzero(mask.any(axis=(1, 2)))
    slices = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
    volume_ml = float(frac.sum() * np.prod(geometry.spacing) / 1000)
    return SimulatedEffusion(out, mask, frac, params, slices, volume_ml, atel)
