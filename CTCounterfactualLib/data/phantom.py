"""Chest CT phantom generator (deterministic by seed) with an optional pleural effusion.

Supine patient, LPS axes: array (slices, rows, cols) = (z inferior->superior, y anterior->posterior,
x right->left of the image), so the dependent (posterior) pleural space is at large row indices.
Tissues in HU: air -1000, lung about -850, fat -100, muscle/soft tissue 40, blood 40-50, fluid
(effusion) 0-20, bone 300-1000. A label map marks every structure.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from CTCounterfactualLib.data.volume_io import Geometry

LABELS = {
    "background": 0,
    "body": 1,
    "right_lung": 2,
    "left_lung": 3,
    "effusion": 4,
    "heart": 5,
    "aorta": 6,
    "spine": 7,
    "ribs": 8,
    "vessels": 9,
    "nodule": 10,
}


@dataclass(frozen=True)
class PhantomSpec:
    """What to generate. ``effusion``: 'none', 'right', 'left' or 'both'."""

    seed: int = 0
    slices: int = 48
    size: int = 128  # rows = cols
    spacing_mm: tuple[float, float, float] = (2.5, 2.5, 5.0)  # x, y, z
    effusion: str = "none"
    effusion_depth_mm: float = 30.0  # depth of the fluid layer at its thickest slice
    effusion_extent: tuple[float, float] = (0.1, 0.6)  # share of the slices (from the bottom) it spans
    nodules: int = 0
    noise_hu: float = 15.0


@dataclass
class Phantom:
    hu: np.ndarray  # float32 (slices, rows, cols)
    labels: np.ndarray  # uint8, see LABELS
    geometry: Geometry
    spec: PhantomSpec
    effusion_slices: tuple[int, int] | None = None  # half-open, None without effusion
    meta: dict = field(default_factory=dict)


def _grid(spec: PhantomSpec) -> tuple[np.ndarray, np.ndarray]:
    """In-plane coordinates in mm, centred: (y, x) each (rows, cols)."""
    n = spec.size
    sx, sy, _ = spec.spacing_mm
    y = (np.arange(n) - (n - 1) / 2) * sy
    x = (np.arange(n) - (n - 1) / 2) * sx
    return np.meshgrid(y, x, indexing="ij")


def _ellipse(y, x, cy, cx, ry, rx) -> np.ndarray:
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def _vessel_tree(
    rng: np.random.Generator, root: np.ndarray, direction: np.ndarray, radius: float, depth: int, out: list
) -> None:
    """Random branching segments (mm coordinates z, y, x), radius shrinking at each split."""
    length = rng.uniform(25, 45) * (0.8 ** (3 - depth) if depth < 3 else 1.0)
    end = root + direction * length
    out.append((root, end, radius))
    if depth == 0 or radius < 0.8:
        return
    for _ in range(2):
        d = direction + rng.normal(0, 0.45, 3)
        d /= np.linalg.norm(d)
        _vessel_tree(rng, end, d, radius * 0.72, depth - 1, out)


def _draw_segments(mask: np.ndarray, segments: list, zc: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
    """Rasterise tube segments into ``mask`` slice by slice (points sampled along each segment)."""
    for a, b, r in segments:
        n = max(2, int(np.linalg.norm(b - a) / 1.5))
        for t in np.linspace(0, 1, n):
            p = a + (b - a) * t
            k = int(np.argmin(np.abs(zc - p[0])))
            if abs(zc[k] - p[0]) > r + 2.5:
                continue
            mask[k] |= (y - p[1]) ** 2 + (x - p[2]) ** 2 <= r**2


def make_phantom(spec: PhantomSpec) -> Phantom:
    """Generate one chest CT phantom; same spec (seed included) -> same volume."""
    if spec.effusion not in ("none", "right", "left", "both"):
        raise ValueError(f"effusion must be none, right, left or both, not {spec.effusion!r}")
    rng = np.random.default_rng(spec.seed)
    d, n = spec.slices, spec.size
    sx, sy, sz = spec.spacing_mm
    y, x = _grid(spec)
    zc = np.arange(d) * sz  # mm from the bottom slice
    height = d * sz
    labels = np.zeros((d, n, n), np.uint8)
    hu = np.full((d, n, n), -1000.0, np.float32)

    # patient size and position vary by seed
    body_ry, body_rx = rng.uniform(95, 115), rng.uniform(140, 165)
    cy0, cx0 = rng.uniform(-8, 8), rng.uniform(-10, 10)
    lung_scale = rng.uniform(0.85, 1.1)
    fat = rng.uniform(8, 20)

    vessels = np.zeros((d, n, n), bool)
    for side in (-1, 1):
        segs: list = []
        for _ in range(6):
            root = np.array([height * rng.uniform(0.3, 0.7), cy0 + rng.uniform(-10, 10), cx0 + side * 40.0])
            dvec = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.6, 0.6), side * 1.0])
            _vessel_tree(rng, root, dvec / np.linalg.norm(dvec), rng.uniform(2.5, 4.0), 3, segs)
        _draw_segments(vessels, segs, zc, y, x)

    nodules = [
        (
            rng.uniform(0.2, 0.9) * height,
            rng.uniform(-40, 20) + cy0,
            rng.choice([-1, 1]) * rng.uniform(45, 80) + cx0,
            rng.uniform(3, 7),
        )
        for _ in range(spec.nodules)
    ]

    # effusion: a run of slices near the lung bases, deepest in the middle of the run
    e0 = int(round(spec.effusion_extent[0] * d))
    e1 = max(e0 + 1, int(round(spec.effusion_extent[1] * d)))
    eff_sides = {"none": (), "right": (-1,), "left": (1,), "both": (-1, 1)}[spec.effusion]
    eff_depth_scale = rng.uniform(0.8, 1.2)

    for k in range(d):
        t = zc[k] / height  # 0 bottom (bases) .. 1 top (apices)
        body = _ellipse(y, x, cy0, cx0, body_ry, body_rx)
        inner = _ellipse(y, x, cy0, cx0, body_ry - fat, body_rx - fat)
        cavity = _ellipse(y, x, cy0, cx0, body_ry - fat - 12, body_rx - fat - 14)
        labels[k][body] = LABELS["body"]
        hu[k][body] = -100.0  # subcutaneous fat
        hu[k][inner] = 40.0  # muscle and soft tissue

        # ribs: small bone ovals on a ring just outside the cavity, one every ~25 mm in z
        if (zc[k] % 25.0) < sz:
            for ang in np.linspace(0.15 * np.pi, 0.85 * np.pi, 6):
                for s in (-1, 1):
                    ry_, rx_ = body_ry - fat - 6, body_rx - fat - 7
                    py, px = cy0 + ry_ * np.sin(ang) * 1.0 - 10, cx0 + s * rx_ * np.cos(ang)
                    rib = _ellipse(y, x, py, px, 4.0, 6.0) & inner
                    labels[k][rib] = LABELS["ribs"]
                    hu[k][rib] = 700.0

        # lungs: larger at the bases, shrinking to the apices; dome of the diaphragm at the bottom
        lung_r = lung_scale * (0.55 + 0.45 * np.sin(np.pi * np.clip(0.15 + 0.85 * t, 0, 1)) ** 0.7)
        if t < 0.08:
            lung_r *= t / 0.08
        lungs = {}
        for side, name in ((-1, "right_lung"), (1, "left_lung")):
            cx = cx0 + side * (body_rx - fat) * 0.48
            if lung_r <= 0.05:
                lungs[side] = np.zeros_like(body)
                continue
            m = _ellipse(y, x, cy0 + 5, cx, (body_ry - fat - 18) * lung_r, (body_rx - fat) * 0.36 * lung_r) & cavity
            lungs[side] = m
            labels[k][m] = LABELS[name]
            hu[k][m] = -850.0

        # mediastinum: heart (lower half, anterior-left), aorta, spine
        if t < 0.55:
            hr = np.sqrt(max(0.0, 1 - ((t - 0.3) / 0.28) ** 2))
            if hr > 0:
                heart = _ellipse(y, x, cy0 - 22, cx0 + 12, 38 * hr, 45 * hr) & cavity
                labels[k][heart] = LABELS["heart"]
                hu[k][heart] = 45.0
        aorta = _ellipse(y, x, cy0 + 30, cx0 + 14, 11, 11)
        labels[k][aorta] = LABELS["aorta"]
        hu[k][aorta] = 50.0
        spine = _ellipse(y, x, cy0 + body_ry - fat - 25, cx0, 17, 18)
        canal = _ellipse(y, x, cy0 + body_ry - fat - 5, cx0, 7, 8)
        labels[k][spine | canal] = LABELS["spine"]
        hu[k][spine] = 450.0
        hu[k][canal] = 25.0

        in_lung = lungs[-1] | lungs[1]
        v = vessels[k] & in_lung
        labels[k][v] = LABELS["vessels"]
        hu[k][v] = 40.0

        # effusion: fluid layering in the dependent (posterior) part of the pleural space
        if eff_sides and e0 <= k < e1:
            u = (k - e0 + 0.5) / (e1 - e0)
            depth = spec.effusion_depth_mm * eff_depth_scale * np.sin(np.pi * u) ** 0.6
            for side in eff_sides:
                lung = lungs[side]
                if not lung.any() or depth < 1:
                    continue
                rows = np.nonzero(lung.any(axis=1))[0]
                bottom = y[rows.max(), 0]
                fluid = lung & (y >= bottom - depth)
                labels[k][fluid] = LABELS["effusion"]
                hu[k][fluid] = rng.uniform(0, 20)

        for zn, yn, xn, rn in nodules:
            if abs(zc[k] - zn) < rn:
                rr = np.sqrt(rn**2 - (zc[k] - zn) ** 2)
                nod = _ellipse(y, x, yn, xn, rr, rr) & in_lung
                labels[k][nod] = LABELS["nodule"]
                hu[k][nod] = 30.0

    # noise, slightly correlated like reconstructed CT noise
    noise = rng.normal(0, spec.noise_hu, hu.shape).astype(np.float32)
    noise = (noise + np.roll(noise, 1, 1) + np.roll(noise, 1, 2) + np.roll(noise, 1, 0)) / 2.0
    hu = np.where(labels > 0, hu + noise, hu + noise * 0.3).astype(np.float32)

    has_eff = bool((labels == LABELS["effusion"]).any())
    eff_slices = None
    if has_eff:
        ks = np.nonzero((labels == LABELS["effusion"]).any(axis=(1, 2)))[0]
        eff_slices = (int(ks.min()), int(ks.max()) + 1)
    origin = (-(n - 1) / 2 * sx, -(n - 1) / 2 * sy, 0.0)
    geometry = Geometry(
        size=(n, n, d), spacing=(sx, sy, sz), origin=origin, direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    )
    return Phantom(hu=hu, labels=labels, geometry=geometry, spec=spec, effusion_slices=eff_slices)
