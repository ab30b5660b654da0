"""The engine: Latent Shift counterfactuals of a CT volume, per chunk (``scan``) or whole (``joint``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .autoencoder import SliceAutoencoder
from .classifier import Classifier
from .errors import CTCFError
from .latent_ops import (
    Progress,
    _noop,
    decode_slices,
    encode_volume,
    faithful_chunk_gradient,
    latent_gradient,
    volume_gradient,
)
from .memory import peak_memory_mb, reset_peak
from .search import SearchParams, Shift, latent_shift

MODES = ("scan", "joint")


@dataclass
class ExplainConfig:
    """What to explain and how. ``slices`` is a half-open range (start, stop); None = all."""

    target: str | int
    slices: tuple[int, int] | None = None
    chunk_size: int = 10
    mode: str = "scan"
    faithful: bool = False
    batch_size: int = 8
    search: SearchParams = field(default_factory=SearchParams)
    device: str = "auto"
    dtype: torch.dtype = torch.float32
    keep_sweep: bool = False  # keep the output chunk's lambda-sweep frames (a movie of the shift)


@dataclass
class ChunkResult:
    start: int
    stop: int  # exclusive
    prediction_before: float
    prediction_min: float
    prediction_cf: float
    lam: float
    stop_reason: str
    sweep_lambdas: list[float]
    sweep_predictions: list[float]


@dataclass
class ExplainResult:
    counterfactual_hu: np.ndarray  # (D, H, W) float32
    reconstruction_hu: np.ndarray
    heatmap: np.ndarray  # (D, H, W) float32, HU magnitude
    difference_hu: np.ndarray  # CF - reconstruction
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


@dataclass
class SweepFrame:
    """One frame of the output chunk's lambda sweep: the chunk's slices at ``lam``, in HU."""

    lam: float
    prediction: float
    slab_hu: np.ndarray  # (stop - start, H, W) float32


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CTCFError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if name not in ("cpu", "cuda"):
        raise CTCFError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)


def chunk_bounds(start: int, stop: int, size: int, mode: str) -> list[tuple[int, int]]:
    """Chunks of ``size`` slices over [start, stop); the last may be shorter. ``joint``: one chunk."""
    if mode == "joint":
        return [(start, stop)]
    return [(i, min(i + size, stop)) for i in range(start, stop, size)]


def check_request(depth: int, cfg: ExplainConfig) -> tuple[int, int]:
    """Validate mode, range and chunk size against a volume of ``depth`` slices."""
    if cfg.mode not in MODES:
        raise CTCFError(f"unknown mode {cfg.mode!r}: use scan or joint")
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
    return start, stop


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


class _FastShifter:
    """Decodes only the chunk's slices; the rest of D(z) stays cached in ``work``."""

    def __init__(self, ae, score, z, g, x0, work, a, b, batch):
        self.ae, self.score, self.z, self.g, self.x0, self.work = ae, score, z, g, x0, work
        self.a, self.b, self.batch, self.hw = a, b, batch, tuple(x0.shape[-2:])

    @torch.no_grad()
    def __call__(self, lam: float) -> Shift:
        a, b = self.a, self.b
        frame = decode_slices(self.ae, self.z[a:b] + lam * self.g[a:b], self.hw, self.batch)
        self.work[a:b] = frame
        try:
            pred = float(self.score(self.work))
        finally:
            self.work[a:b] = self.x0[a:b]
        return Shift(pred, float((self.x0[a:b] - frame).abs().sum()), frame)


def _frame_collector(frames: list) -> Callable[[int, float, Shift], None]:
    def collect(i: int, lam: float, s: Shift) -> None:
        frames.append((lam, s.pred, s.frame))

    return collect


def _reporting(shifter, progress: Progress, n: int, total: int, a: int, b: int):
    """Report every evaluated lambda, so a long search (joint mode) shows signs of life."""

    def shift(lam: float) -> Shift:
        s = shifter(lam)
        progress("search", n, total, f"slices {a}-{b - 1}: lambda {lam:g}, prediction {s.pred:.4f}")
        return s

    return shift


class _FaithfulShifter:
    """The reference: decode every slice of z + lambda * g at every step."""

    def __init__(self, ae, score, z, g, x0, a, b, batch):
        self.ae, self.score, self.z, self.g, self.x0 = ae, score, z, g, x0
        self.a, self.b, self.batch, self.hw = a, b, batch, tuple(x0.shape[-2:])

    @torch.no_grad()
    def __call__(self, lam: float) -> Shift:
        x = decode_slices(self.ae, self.z + lam * self.g, self.hw, self.batch)
        pred = float(self.score(x))
        return Shift(pred, float((self.x0 - x).abs().sum()), x[self.a : self.b].clone())


def explain(
    hu: np.ndarray,
    ae: SliceAutoencoder,
    classifier: Classifier,
    cfg: ExplainConfig,
    progress: Progress = _noop,
) -> ExplainResult:
    """Counterfactual(s) of a (D, H, W) HU volume for one classifier target."""
    if hu.ndim != 3:
        raise CTCFError(f"expected a 3D volume, got {hu.ndim} dimensions")
    start, stop = check_request(hu.shape[0], cfg)
    index = classifier.target_index(cfg.target)
    device = resolve_device(cfg.device)
    reset_peak(device)
    ae.to(device, cfg.dtype)
    classifier.to(device, cfg.dtype)
    timer = _Timer()
    window = ae.window
    hw = tuple(hu.shape[-2:])
    batch = cfg.batch_size

    def score(unit: torch.Tensor) -> torch.Tensor:
        return classifier.score(window.to_hu(unit), index)

    with timer.stage("encode"):
        hu_t = torch.as_tensor(hu, dtype=cfg.dtype, device=device)
        with torch.no_grad():
            input_pred = float(classifier.score(hu_t, index, clip=True))
        unit = window.to_unit(hu_t).clamp_(0.0, 1.0)
        del hu_t
        z = encode_volume(ae, unit, batch, progress)
        del unit
    with timer.stage("decode"):
        x0 = decode_slices(ae, z, hw, batch, progress=progress)
        pixel_sum = float(x0.abs().sum())

    chunks = chunk_bounds(start, stop, cfg.chunk_size, cfg.mode)
    if not cfg.faithful:
        with timer.stage("gradient"):
            progress("gradient", 0, stop - start, "classifier backward on the decoded volume")
            recon_pred, gvol = volume_gradient(score, x0)
            g = latent_gradient(ae, z, gvol, start, stop, batch, progress)
            del gvol
        work = x0.clone()
    else:
        with torch.no_grad():
            recon_pred = float(score(x0))

    heatmap = torch.zeros_like(x0)
    results: list[ChunkResult] = []
    best: tuple[float, int, torch.Tensor] | None = None
    best_sweep: list[tuple[float, float, torch.Tensor]] = []
    for n, (a, b) in enumerate(chunks):
        frames: list[tuple[float, float, torch.Tensor]] = []
        keep = _frame_collector(frames) if cfg.keep_sweep else None
        progress("search", n, len(chunks), f"lambda search on slices {a}-{b - 1}")
        if cfg.faithful:
            with timer.stage("gradient"):
                pred0, gc = faithful_chunk_gradient(ae, score, z, hw, a, b, batch)
            with timer.stage("search"):
                shifter = _reporting(
                    _FaithfulShifter(ae, score, z, gc, x0, a, b, batch), progress, n, len(chunks), a, b
                )
                outcome = latent_shift(shifter, shifter(0.0), pixel_sum, cfg.search, keep)  # reference decodes 0
            del gc
        else:
            pred0 = recon_pred
            with timer.stage("search"):
                shifter = _reporting(
                    _FastShifter(ae, score, z, g, x0, work, a, b, batch), progress, n, len(chunks), a, b
                )
                outcome = latent_shift(shifter, Shift(pred0, 0.0, x0[a:b]), pixel_sum, cfg.search, keep)
        heatmap[a:b] = outcome.heatmap
        results.append(
            ChunkResult(
                a,
                b,
                pred0,
                outcome.min_pred,
                outcome.cf_pred,
                outcome.lam,
                outcome.stop_reason,
                outcome.sweep_lambdas,
                outcome.sweep_preds,
            )
        )
        if best is None or outcome.min_pred < best[0]:
            best = (outcome.min_pred, n, outcome.cf_frame)
            best_sweep = frames
    progress("search", len(chunks), len(chunks), "search done")

    _, chosen, cf_frame = best
    a, b = chunks[chosen]
    cf = x0.clone()
    cf[a:b] = cf_frame
    width = window.width
    to_np = lambda t: t.detach().to("cpu", torch.float32).numpy()  # noqa: E731
    return ExplainResult(
        counterfactual_hu=to_np(window.to_hu(cf)),
        reconstruction_hu=to_np(window.to_hu(x0)),
        heatmap=to_np(heatmap * width),
        difference_hu=to_np((cf - x0) * width),
        chunks=results,
        chosen=chosen,
        target_index=index,
        target_name=classifier.targets[index],
        predictions={
            "input": input_pred,
            "reconstruction": recon_pred,
            "counterfactual": results[chosen].prediction_cf,
            "counterfactual_min": results[chosen].prediction_min,
        },
        timings=timer.timings,
        peak_memory_mb=peak_memory_mb(device),
        device=str(device),
        mode=cfg.mode,
        faithful=cfg.faithful,
        slices=(start, stop),
        chunk_size=cfg.chunk_size,
        sweep=[SweepFrame(lam, pred, to_np(window.to_hu(f))) for lam, pred, f in best_sweep],
    )
