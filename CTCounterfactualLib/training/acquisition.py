"""Plausible acquisitions of one CT on the classifier's grid: slice thickness, coverage, field of view, kernel, noise.

A training or test volume is a (C, D, H, W) tensor at ``SOURCE_Z_MM`` slices: channel 0 the CT in model units
(HU / 1000 after the classifier's input map), further channels masks (fluid fraction). Everything here is
seeded by a ``torch.Generator``. Masks follow every geometric change and none of the intensity changes.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

SOURCE_Z_MM = 5.0  # the chest grid every training CT is resampled to (data/chest_grid.py)
THICKNESS_MM_RANGE = (1.0, 8.0)
HU_PER_UNIT = 1000.0  # model units: the classifier's window -1000..1000 mapped to -1..1


@dataclass(frozen=True)
class Acquisition:
    """One drawn acquisition. ``coverage``: None (all), or (anchor, share) with anchor lower / upper / any."""

    thickness_mm: float
    coverage: tuple[str, float] | None
    zoom: float
    rotation_deg: float
    shift: tuple[float, float]
    blur: float  # soft kernel: share of a [1, 2, 1] in-plane smoothing (0: none)
    sharpen: float  # unsharp-mask amount of a sharp kernel (0: none)
    noise_hu: float
    offset_hu: float
    gain: float
    flip: bool
    warp: float = 0.0  # a smooth random in-plane displacement (another body shape), in half-widths


def draw_acquisition(g: torch.Generator, coverage_share: float = 0.35, flip: bool = True) -> Acquisition:
    """A random plausible acquisition: thickness 1-8 mm, lower/upper/partial coverage for ``coverage_share`` of
    draws, field of view (zoom 0.75-1.3, rotation 8 deg, shift 8 %), soft or sharp kernel, noise 0-25 HU."""
    u = torch.rand(15, generator=g).tolist()
    lo, hi = THICKNESS_MM_RANGE
    coverage = None
    if u[1] < coverage_share:
        anchor = ("lower", "upper", "any")[min(2, int(u[2] * 3))]
        coverage = (anchor, 0.45 + 0.35 * u[3])
    kernel = u[8]
    return Acquisition(
        thickness_mm=lo + (hi - lo) * u[0],
        coverage=coverage,
        zoom=0.75 + 0.55 * u[4],
        rotation_deg=(u[5] * 2 - 1) * 8.0,
        shift=((u[6] * 2 - 1) * 0.08, (u[7] * 2 - 1) * 0.08),
        blur=0.3 + 0.7 * u[9] if kernel < 0.45 else 0.0,
        sharpen=0.3 + 0.7 * u[9] if kernel > 0.7 else 0.0,
        noise_hu=25.0 * u[10],
        offset_hu=(u[11] * 2 - 1) * 30.0,
        gain=1.0 + (u[12] * 2 - 1) * 0.05,
        flip=flip and u[13] < 0.5,
        warp=0.08 * u[14],
    )


@functools.lru_cache(maxsize=256)
def _z_operator(depth_in: int, depth_out: int, sigma: float) -> torch.Tensor:
    """(depth_out, depth_in): Gaussian smoothing along z (``sigma`` in input slices, edges replicated), then
    linear interpolation to ``depth_out`` slices over the same extent (slice centres as align_corners=False)."""
    src = torch.arange(depth_in, dtype=torch.float64)
    if sigma > 0:
        r = max(1, int(math.ceil(3 * sigma)))
        taps = torch.arange(-r, r + 1, dtype=torch.float64)
        w = torch.exp(-0.5 * (taps / sigma) ** 2)
        w = w / w.sum()
        smooth = torch.zeros(depth_in, depth_in, dtype=torch.float64)
        for t, wt in zip(taps.tolist(), w.tolist(), strict=True):
            cols = (src + t).clamp(0, depth_in - 1).long()
            smooth[torch.arange(depth_in), cols] += wt
    else:
        smooth = torch.eye(depth_in, dtype=torch.float64)
    pos = ((torch.arange(depth_out, dtype=torch.float64) + 0.5) * depth_in / depth_out - 0.5).clamp(0, depth_in - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=depth_in - 1)
    frac = pos - lo
    interp = torch.zeros(depth_out, depth_in, dtype=torch.float64)
    interp[torch.arange(depth_out), lo] += 1 - frac
    interp[torch.arange(depth_out), hi] += frac
    return (interp @ smooth).float()


def resample_thickness(x: torch.Tensor, thickness_mm: float, source_mm: float = SOURCE_Z_MM) -> torch.Tensor:
    """(C, D, H, W) at ``source_mm`` slices -> the same extent at ``thickness_mm`` slices (thicker: smoothed
    first, as a thick slice averages what it covers; thinner: interpolated). One matrix product along z."""
    c, d, h, w = x.shape
    depth = max(2, round(d * source_mm / thickness_mm))
    sigma = math.sqrt(thickness_mm**2 - source_mm**2) / 2.355 / source_mm if thickness_mm > source_mm else 0.0
    op = _z_operator(d, depth, sigma).to(x.dtype)
    return (op @ x.permute(1, 0, 2, 3).reshape(d, -1)).reshape(depth, c, h, w).permute(1, 0, 2, 3)


def coverage_window(depth: int, coverage: tuple[str, float] | None, g: torch.Generator) -> tuple[int, int]:
    """The slices [a, b) a scan of partial ``coverage`` keeps (slice 0 is caudal: LPS z grows cranially)."""
    if coverage is None:
        return 0, depth
    anchor, share = coverage
    n = max(2, round(depth * share))
    if anchor == "lower":
        return 0, n
    if anchor == "upper":
        return depth - n, depth
    a = int(torch.randint(0, depth - n + 1, (1,), generator=g))
    return a, a + n


def _theta(zoom: float, rotation_deg: float, shift: tuple[float, float]) -> list[list[float]]:
    a = math.radians(rotation_deg)
    cos, sin = math.cos(a) / zoom, math.sin(a) / zoom
    return [[cos, -sin, shift[0]], [sin, cos, shift[1]]]


def in_plane_affine(x: torch.Tensor, zoom: float, rotation_deg: float, shift: tuple[float, float]) -> torch.Tensor:
    """(C, D, H, W): the same rotation / zoom / shift on every slice; outside the scan is each channel's minimum
    (air for the CT, no fluid for a mask)."""
    theta = torch.tensor([_theta(zoom, rotation_deg, shift)], dtype=x.dtype)
    return _affine_batch(x[None], theta)[0]


def _affine_batch(x: torch.Tensor, theta: torch.Tensor, warp: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, D, H, W) with one (2, 3) affine per volume, plus an optional (B, H, W, 2) displacement, applied alike to
    each of its slices."""
    b, c, d, h, w = x.shape
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    if warp is not None:
        grid = grid + warp
    low = x.amin(dim=(2, 3, 4), keepdim=True)
    out = F.grid_sample((x - low).reshape(b, c * d, h, w), grid, align_corners=False)
    return out.reshape(b, c, d, h, w) + low


def _blur121(ct: torch.Tensor) -> torch.Tensor:
    """(..., H, W) smoothed in-plane by [1, 2, 1] / 4 along each axis (edges replicated)."""
    p = torch.cat([ct[..., :1, :], ct, ct[..., -1:, :]], -2)
    ct = (p[..., :-2, :] + 2 * p[..., 1:-1, :] + p[..., 2:, :]) / 4
    p = torch.cat([ct[..., :1], ct, ct[..., -1:]], -1)
    return (p[..., :-2] + 2 * p[..., 1:-1] + p[..., 2:]) / 4


def apply_acquisition(x: torch.Tensor, acq: Acquisition, g: torch.Generator) -> torch.Tensor:
    """(C, D, H, W) at ``SOURCE_Z_MM`` -> the volume this acquisition would have given (its own depth)."""
    x = resample_thickness(x, acq.thickness_mm)
    a, b = coverage_window(x.shape[1], acq.coverage, g)
    return apply_scanner(x[:, a:b], acq, g)


def apply_scanner(x: torch.Tensor, acq: Acquisition, g: torch.Generator) -> torch.Tensor:
    """The in-plane part of an acquisition on a (C, D, H, W) volume already at its thickness and coverage."""
    return scanner_batch(x[None], [acq], g)[0]


def scanner_batch(x: torch.Tensor, acqs: list[Acquisition], g: torch.Generator) -> torch.Tensor:
    """(B, C, D, H, W), one acquisition per volume: field of view and a smooth warp (another body shape),
    left-right flip (the label does not depend on the side), kernel (a soft one moves the CT ``blur`` of the way to
    its [1, 2, 1] smoothing, a sharp one adds ``sharpen`` times the detail that smoothing removes), gain, offset and
    noise on the CT channel only."""
    b = x.shape[0]
    per = lambda values: torch.tensor(values, dtype=x.dtype).view(b, 1, 1, 1, 1)  # noqa: E731
    h, w = x.shape[-2:]
    coarse = torch.randn(b, 2, 4, 4, generator=g) * per([a.warp for a in acqs]).view(b, 1, 1, 1)
    warp = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1)
    x = _affine_batch(x, torch.tensor([_theta(a.zoom, a.rotation_deg, a.shift) for a in acqs], dtype=x.dtype), warp)
    x = torch.where(per([a.flip for a in acqs]) > 0, torch.flip(x, dims=(-1,)), x)
    ct = x[:, :1]
    ct = ct + per([a.blur - a.sharpen for a in acqs]) * (_blur121(ct) - ct)
    ct = ct * per([a.gain for a in acqs]) + per([a.offset_hu for a in acqs]) / HU_PER_UNIT
    ct = ct + torch.randn(ct.shape, generator=g) * per([a.noise_hu for a in acqs]) / HU_PER_UNIT
    return torch.cat([ct, x[:, 1:]], 1)
