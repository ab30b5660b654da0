"""Plausibility warnings, refusals and result flags of an explanation: every threshold, code and message in one place.

Warnings (``summary["warnings"]``, one-line strings; ``ctcf: warning: ...`` on the CLI) say the input does not look
like the CT the models expect. Flags (``summary["flags"]``, ``{"code", "message"}``; also in the CLI's result line)
say the result must not be read as an explanation. docs/cli.md ("Bad input and exit codes") states these thresholds.
"""

from __future__ import annotations

import math

import numpy as np

from CTCounterfactualLib.data.volume_io import Volume
from CTCounterfactualLib.errors import CTCFError

# ---------------------------------------------------------------------------------------------- thresholds
AIR_HU = -500.0  # a CT holds air or lung below this; if the darkest 0.5 % of voxels do not, the values are not HU
BRIGHT_HU = 3000.0  # dense bone is about 1900 HU; if the brightest 0.5 % exceed this, the values are not HU
TAIL_SHARE = 0.005  # the share of voxels at each end of the intensity range that the two checks above look at
SMALL_TYPES = ("int8", "uint8", "bool")  # cannot hold HU (-1024..3071)
ASPECT_DISTORTION = 1.25  # warn when a model resamples slices so that anatomy is stretched by more than this
SPACING_RATIO = 6.0  # warn when the largest voxel spacing exceeds the smallest by more than this
MIN_SLICES = 2  # a 3D classifier on fewer slices sees no neighbouring anatomy
MIN_WINDOW_SHARE = 0.01  # refuse when fewer voxels than this lie inside the autoencoder's HU window
RECON_GAP = 0.25  # flag when the reconstruction's prediction differs from the input's by more than this

# ---------------------------------------------------------------------------------------------- flag codes
CF_NOT_LOWER = "cf_not_lower"
RECON_FAR = "reconstruction_far"
FLAG_CODES = (CF_NOT_LOWER, RECON_FAR)

_SAMPLE_VOXELS = 2_000_000  # percentiles on a strided sample of at most about this many voxels


def _tails(array: np.ndarray) -> tuple[float, float]:
    """The TAIL_SHARE and 1 - TAIL_SHARE quantiles of the voxels (of a strided sample of a large volume)."""
    step = max(1, math.ceil((array.size / _SAMPLE_VOXELS) ** (1 / 3)))
    sample = array[::step, ::step, ::step]
    lo, hi = np.quantile(sample, [TAIL_SHARE, 1 - TAIL_SHARE])
    return float(lo), float(hi)


def distortion(size_xyz: tuple[int, ...], spacing_xyz: tuple[float, ...], model_size: int | None) -> float:
    """How much a model resizing slices to ``model_size`` squared (None: not resized) stretches anatomy (>= 1)."""
    cols, rows = size_xyz[0], size_xyz[1]
    out_cols, out_rows = (model_size, model_size) if model_size else (cols, rows)
    ratio = (cols * spacing_xyz[0] / out_cols) / (rows * spacing_xyz[1] / out_rows)
    return max(ratio, 1 / ratio)


def volume_warnings(volume: Volume, model_sizes: dict[str, int | None]) -> list[str]:
    """One-line warnings for an input that does not look like the CT the models were made for.

    ``model_sizes``: model role -> the in-plane size its convention resizes slices to (None: not resized).
    """
    warnings: list[str] = []
    geo = volume.geometry
    if volume.pixel_type in SMALL_TYPES:
        warnings.append(
            f"the input's voxels are {volume.pixel_type}, which cannot hold CT values in HU (-1024..3071); "
            "the volume is probably a rescaled or screenshot image, not a CT"
        )
    lo, hi = _tails(volume.array)
    if lo > AIR_HU:
        warnings.append(
            f"the darkest {TAIL_SHARE:.1%} of the voxels are above {AIR_HU:g} (at {lo:g}): a CT in HU has air and lung "
            "near -1000; the values may not be HU (MR, PET, normalised or without its rescale)"
        )
    if hi > BRIGHT_HU:
        warnings.append(
            f"the brightest {TAIL_SHARE:.1%} of the voxels exceed {BRIGHT_HU:g} (at {hi:g}): bone is about 1900 HU; "
            "the values may not be HU"
        )
    for role, size in model_sizes.items():
        factor = distortion(geo.size, geo.spacing, size)
        if factor > ASPECT_DISTORTION:
            target = f"{size} x {size}" if size else "its input grid"
            warnings.append(
                f"the {role} resamples the {geo.size[1]} x {geo.size[0]}-voxel slices ({geo.spacing[1]:g} x "
                f"{geo.spacing[0]:g} mm) to {target}, stretching the anatomy {factor:.2f}x; crop or resample the "
                "slices to a square field of view with square pixels"
            )
    if geo.size[2] < MIN_SLICES:
        warnings.append(
            f"the input has {geo.size[2]} slice: a 3D classifier sees no neighbouring anatomy; give a volume"
        )
    spacing = [float(s) for s in geo.spacing]
    if min(spacing) > 0 and max(spacing) / min(spacing) > SPACING_RATIO:
        warnings.append(
            f"the voxel spacing {spacing[0]:g} x {spacing[1]:g} x {spacing[2]:g} mm is very anisotropic "
            f"({max(spacing) / min(spacing):.1f}x); the models were made for more even spacing; resample first"
        )
    return warnings


def refuse_meaningless(volume: Volume, low: float, high: float) -> None:
    """Refuse an input whose voxels (almost) all lie outside the autoencoder's HU window: it would see a flat image."""
    array = volume.array
    inside = float(np.count_nonzero((array > low) & (array < high))) / array.size
    if inside < MIN_WINDOW_SHARE:
        raise CTCFError(
            f"only {inside:.2%} of the input's voxels lie inside the autoencoder's window {low:g}..{high:g} HU: it "
            "would see a blank image; the input is not a CT in HU"
        )


def result_flags(
    predictions: dict[str, float],
    chunk_before: float,
    chunk_cf: float,
    *,
    raise_: bool = False,
    start: str = "reconstruction",
) -> list[dict]:
    """Flags of a finished explanation: the CF does not move the prediction (below its starting point, or above
    it with ``raise_``), or the reconstruction moves it (only when the search starts from the reconstruction)."""
    flags: list[dict] = []
    if not (chunk_cf > chunk_before if raise_ else chunk_cf < chunk_before):
        flags.append(
            {
                "code": CF_NOT_LOWER,
                "message": f"the counterfactual's prediction {chunk_cf:.4f} is not {'above' if raise_ else 'below'} "
                f"the {start}'s {chunk_before:.4f}: this is not an explanation",
            }
        )
    gap = abs(predictions["reconstruction"] - predictions["input"])
    if start == "reconstruction" and gap > RECON_GAP:
        flags.append(
            {
                "code": RECON_FAR,
                "message": f"the reconstruction's prediction {predictions['reconstruction']:.4f} is far from the "
                f"input's {predictions['input']:.4f} (more than {RECON_GAP:g}): the autoencoder changes what the "
                "classifier sees, so the counterfactual explains the reconstruction, not the input",
            }
        )
    return flags
