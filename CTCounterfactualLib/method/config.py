"""What to explain and how (``ExplainConfig``), what comes back (``ExplainResult``), and the request's checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.params import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_MODE,
    DEFAULT_OUTPUT_MAP,
    DEFAULT_SEARCH_RESOLUTION,
    DEVICES,
    MODES,
    OUTPUT_MAPS,
    SEARCH_RESOLUTIONS,
    SearchParams,
    option_name,
)


@dataclass
class ExplainConfig:
    """What to explain and how. ``slices`` is a half-open range (start, stop); None = all.

    ``region_mask`` is the (D, H, W) region of ``search.region`` as an array on the input's grid (``jobs`` reads
    the file); the engine uses the array.
    """

    target: str | int
    slices: tuple[int, int] | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    mode: str = DEFAULT_MODE
    faithful: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    search: SearchParams = field(default_factory=SearchParams)
    device: str = DEFAULT_DEVICE
    dtype: torch.dtype = torch.float32
    keep_sweep: bool = False  # keep the output chunk's lambda-sweep frames (a movie of the shift)
    search_resolution: str = DEFAULT_SEARCH_RESOLUTION  # fast path only; --faithful searches at the input's
    output_map: str = DEFAULT_OUTPUT_MAP  # --faithful implies "reference"
    region_mask: np.ndarray | None = None


@dataclass
class ChunkResult:
    """One chunk's search. Predictions are the classifier's; ``prediction_min`` is the one furthest along the
    direction over the sweep (the lowest; the highest with ``--direction raise``)."""

    start: int
    stop: int  # exclusive
    prediction_before: float
    prediction_min: float
    prediction_cf: float
    lam: float
    stop_reason: str
    sweep_lambdas: list[float]
    sweep_predictions: list[float]
    lambda_unit: float = 1.0  # the raw-gradient multiple one unit of lambda is (1 under the reference scale)
    segments: int = 1  # straight-line segments of the latent path (more with --relinearize-every)


@dataclass
class SweepFrame:
    """One frame of the output chunk's lambda sweep: the chunk's slices at ``lam``, in HU."""

    lam: float
    prediction: float
    slab_hu: np.ndarray  # (stop - start, H, W) float32


@dataclass
class ExplainResult:
    counterfactual_hu: np.ndarray  # (D, H, W) float32
    reconstruction_hu: np.ndarray
    heatmap: np.ndarray  # (D, H, W) float32, HU magnitude
    difference_hu: np.ndarray  # CF - its reference: the input (detail CF) or the reconstruction (decoded CF)
    chunks: list[ChunkResult]
    chosen: int  # index into chunks of the chunk whose CF is ``counterfactual_hu``
    target_index: int
    target_name: str
    predictions: dict[str, float]
    timings: dict[str, float]
    peak_memory_mb: float
    device: str
    mode: str
    faithful: bool
    slices: tuple[int, int]
    chunk_size: int
    sweep: list[SweepFrame] = field(default_factory=list)  # output chunk only, with keep_sweep
    fidelity: dict = field(default_factory=dict)  # the autoencoder on this input: mae_hu_body, slope, ...
    warnings: list[str] = field(default_factory=list)  # one line each, for the user
    settings: dict = field(default_factory=dict)  # the effective search_resolution, output_map, lambda_scale, ...
    metrics: dict = field(default_factory=dict)  # validity, proximity, concentration (method/metrics.py)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CTCFError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if name not in DEVICES:
        raise CTCFError(f"unknown device {name!r}: use {', '.join(DEVICES)}")
    return torch.device(name)


def chunk_bounds(start: int, stop: int, size: int, mode: str) -> list[tuple[int, int]]:
    """Chunks of ``size`` slices over [start, stop); the last may be shorter. ``joint``: one chunk."""
    if mode == "joint":
        return [(start, stop)]
    return [(i, min(i + size, stop)) for i in range(start, stop, size)]


def check_request(depth: int, cfg: ExplainConfig, hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """Validate mode, range, chunk size, variant options and region against a volume of ``depth`` slices."""
    if cfg.mode not in MODES:
        raise CTCFError(f"unknown mode {cfg.mode!r}: use {' or '.join(MODES)}")
    start, stop = cfg.slices if cfg.slices is not None else (0, depth)
    if start >= stop:
        raise CTCFError(f"slice range {start}:{stop} is empty: the start must be below the end (B is excluded)")
    if not (0 <= start < stop <= depth):
        raise CTCFError(f"slice range {start}:{stop} is outside the volume (it has slices 0:{depth})")
    if cfg.chunk_size < 1:
        raise CTCFError(f"chunk size must be at least 1 (got {cfg.chunk_size})")
    if cfg.mode == "scan" and cfg.chunk_size > stop - start:
        raise CTCFError(
            f"the range {start}:{stop} has {stop - start} slices, fewer than the chunk size {cfg.chunk_size}; "
            "use a smaller --chunk-size or a wider --slices"
        )
    if cfg.batch_size < 1:
        raise CTCFError("batch size must be at least 1")
    if cfg.search_resolution not in SEARCH_RESOLUTIONS:
        raise CTCFError(f"search resolution {cfg.search_resolution!r} is not one of {', '.join(SEARCH_RESOLUTIONS)}")
    if cfg.output_map not in OUTPUT_MAPS:
        raise CTCFError(f"output map {cfg.output_map!r} is not one of {', '.join(OUTPUT_MAPS)}")
    variant = cfg.search.variant_options()
    if cfg.faithful and variant:
        names = ", ".join(option_name(n) for n in variant)
        raise CTCFError(f"--faithful reproduces the reference's straight shift; leave out {names}")
    if cfg.search.region and cfg.region_mask is None:
        raise CTCFError(f"the region {cfg.search.region} was not read; explain a file (ctcf explain) to use --region")
    if cfg.region_mask is not None:
        check_region(cfg.region_mask, depth, hw, (start, stop))
    return start, stop


def check_region(mask: np.ndarray, depth: int, hw: tuple[int, int] | None, rows: tuple[int, int]) -> None:
    shape = (depth, *hw) if hw is not None else None
    if mask.ndim != 3 or (shape is not None and tuple(mask.shape) != shape):
        raise CTCFError(f"the region mask has shape {tuple(mask.shape)}, the input {shape}; they must match")
    if not mask[rows[0] : rows[1]].any():
        raise CTCFError(
            f"the region mask has no voxel in the slices {rows[0]}:{rows[1]} being explained; give a mask over them"
        )
