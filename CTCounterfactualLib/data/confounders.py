"""Findings that are not pleural effusion, for an effusion classifier to learn to ignore: a solid lung mass inside the
lung, a round mass against the pleura (a tumour's acute angles, not fluid's tapering lens), and dependent subpleural
atelectasis without fluid. Deterministic by seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from CTCounterfactualLib.data.effusion import soft_tissue_noise
from CTCounterfactualLib.data.lungs import ChestLungs, in_plane_distance

KINDS = ("mass", "pleural_mass", "dependent_atelectasis")
MASS_DIAMETER_MM = (12.0, 50.0)
MASS_HU = (20.0, 60.0)
MASS_PLEURA_GAP_MM = 5.0  # the mass keeps this far from the lungs' outline: an effusion always touches it
ATELECTASIS_DEPTH_MM = (3.0, 10.0)
ATELECTASIS_HU = (-600.0, -250.0)


@dataclass
class Confounder:
    """A CT with a non-effusion finding; ``mask`` is where it changed."""

    hu: np.ndarray
    mask: np.ndarray
    kind: str


def _mass(hu: np.ndarray, lungs: ChestLungs, rng: np.random.Generator, pleural: bool) -> np.ndarray:
    """Fraction (0..1) of a lobulated solid mass: centred deep enough in the lung to clear the pleura, or
    (``pleural``) with its centre 30-90 % of its radius inside the lung, so that it bulges from the chest wall."""
    radius = rng.uniform(*MASS_DIAMETER_MM) / 2
    sp = lungs.geometry.spacing
    frac = np.zeros(hu.shape, dtype=np.float32)
    depth = in_plane_distance(lungs.both, lungs.geometry, inside=True, in_plane=False)  # in 3D: clear on every slice
    if pleural:
        inset = rng.uniform(0.3, 0.9) * radius
        candidates = np.argwhere(lungs.both & (np.abs(depth - inset) <= max(sp)))
    else:
        candidates = np.argwhere(depth >= 1.15 * radius + MASS_PLEURA_GAP_MM)
    if candidates.size == 0:  # a lung too thin for this mass: the largest that fits
        best = float(depth.max())
        radius = max(2.0, (best - MASS_PLEURA_GAP_MM) / 1.15)
        candidates = np.argwhere(depth >= best - 1e-3)
    k, r, c = candidates[rng.integers(len(candidates))]
    zc, yc, xc = float(lungs.z[k]), float(lungs.y[k, r, c]), float(lungs.x[k, r, c])
    lobes = rng.uniform(0.85, 1.15, size=3)  # a slightly uneven outline
    z = lungs.z[:, None, None]
    d = np.sqrt(((lungs.x - xc) / lobes[0]) ** 2 + ((lungs.y - yc) / lobes[1]) ** 2 + ((z - zc) / lobes[2]) ** 2)
    edge = 1.5 * min(sp[:2])
    frac[:] = np.clip((radius - d) / edge + 0.5, 0, 1) * lungs.both
    return frac


def _dependent_atelectasis(hu: np.ndarray, lungs: ChestLungs, rng: np.random.Generator) -> np.ndarray:
    """Weight (0..1) of a band of collapsed lung along the posterior chest wall, fading inward: no fluid."""
    depth = rng.uniform(*ATELECTASIS_DEPTH_MM)
    w = np.zeros(hu.shape, dtype=np.float32)
    for k in np.flatnonzero(lungs.both.any(axis=(1, 2))):
        ys = lungs.y[k][lungs.both[k]]
        post = np.clip((lungs.y[k] - ys.min()) / max(float(ys.max() - ys.min()), 1e-6), 0, 1)
        band = np.clip(1 - lungs.depth[k] / depth, 0, 1) * (post > 0.7) * lungs.both[k]
        w[k] = band
    return w


def simulate_confounder(hu: np.ndarray, lungs: ChestLungs, seed: int, kind: str | None = None) -> Confounder:
    """Add confounder ``seed`` (a mass or dependent atelectasis, by seed unless ``kind``) to ``hu``."""
    rng = np.random.default_rng([seed, 0xC0F])
    kind = kind or KINDS[seed % len(KINDS)]
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind in ("mass", "pleural_mass"):
        w = _mass(hu, lungs, rng, pleural=kind == "pleural_mass")
        value = rng.uniform(*MASS_HU)
    else:
        w = _dependent_atelectasis(hu, lungs, rng)
        value = rng.uniform(*ATELECTASIS_HU)
    mask = w > 0
    out = np.array(hu, dtype=np.float32, copy=True)
    out[mask] = (1 - w[mask]) * out[mask] + w[mask] * (value + soft_tissue_noise(hu, rng, int(mask.sum())))
    return Confounder(out, mask, kind)
