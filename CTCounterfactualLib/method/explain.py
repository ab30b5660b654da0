"""The engine: Latent Shift counterfactuals of a CT volume, per chunk (``scan``) or whole (``joint``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.method.direction import (
    Encoded,
    LatentDirection,
    latent_direction,
    window_score,
)
from CTCounterfactualLib.method.finite import require_finite
from CTCounterfactualLib.method.latent_ops import ScoreFn, decode_slices, encode_volume, faithful_chunk_gradient
from CTCounterfactualLib.method.memory import peak_memory_mb, reset_peak
from CTCounterfactualLib.method.search import Shift, latent_shift
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.params import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_MODE,
    DEVICES,
    MODES,
    SearchParams,
)
from CTCounterfactualLib.progress import Progress, noop_progress


@dataclass
class ExplainConfig:
    """What to explain and how. ``slices`` is a half-open range (start, stop); None = all."""

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
    if name not in DEVICES:
        raise CTCFError(f"unknown device {name!r}: use {', '.join(DEVICES)}")
    return torch.device(name)


def chunk_bounds(start: int, stop: int, size: int, mode: str) -> list[tuple[int, int]]:
    """Chunks of ``size`` slices over [start, stop); the last may be shorter. ``joint``: one chunk."""
    if mode == "joint":
        return [(start, stop)]
    return [(i, min(i + size, stop)) for i in range(start, stop, size)]


def check_request(depth: int, cfg: ExplainConfig) -> tuple[int, int]:
    """Validate mode, range and chunk size against a volume of ``depth`` slices."""
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


@dataclass
class _Prepared:
    """The checked request on the device: range, target, scoring function, latents and reconstruction."""

    start: int
    stop: int
    index: int
    device: torch.device
    score: ScoreFn
    input_pred: float
    enc: Encoded
    pixel_sum: float


def _prepare(hu, ae, classifier, cfg: ExplainConfig, timer: _Timer, progress: Progress) -> _Prepared:
    if hu.ndim != 3:
        raise CTCFError(f"expected a 3D volume, got {hu.ndim} dimensions")
    start, stop = check_request(hu.shape[0], cfg)
    index = classifier.target_index(cfg.target)
    device = resolve_device(cfg.device)
    reset_peak(device)
    ae.to(device, cfg.dtype)
    classifier.to(device, cfg.dtype)
    with timer.stage("encode"):
        hu_t = torch.as_tensor(hu, dtype=cfg.dtype, device=device)
        with torch.no_grad():
            input_pred = float(classifier.score(hu_t, index, clip=True))
        unit = ae.window.to_unit(hu_t).clamp_(0.0, 1.0)
        del hu_t
        z = encode_volume(ae, unit, cfg.batch_size, progress)
        del unit
        require_finite(z, "the autoencoder's latents", "the autoencoder's encoder is broken or does not fit its file")
    with timer.stage("decode"):
        enc = Encoded(z, decode_slices(ae, z, tuple(hu.shape[-2:]), cfg.batch_size, progress=progress), cfg.batch_size)
        require_finite(enc.x0, "the reconstruction D(E(x))", "the autoencoder's decoder is broken or does not fit")
    return _Prepared(
        start, stop, index, device, window_score(ae, classifier, index), input_pred, enc, float(enc.x0.abs().sum())
    )


def _search_chunk(ae, prep: _Prepared, d: LatentDirection | None, work, a, b, n, total, cfg, timer, progress, keep):
    """The lambda search on chunk [a, b): along the shared direction ``d`` (fast) or the reference's own."""
    z, x0, batch, score = prep.enc.z, prep.enc.x0, prep.enc.batch, prep.score
    if cfg.faithful:
        with timer.stage("gradient"):
            pred0, gc = faithful_chunk_gradient(ae, score, z, tuple(x0.shape[-2:]), a, b, batch)
        with timer.stage("search"):
            shifter = _reporting(_FaithfulShifter(ae, score, z, gc, x0, a, b, batch), progress, n, total, a, b)
            outcome = latent_shift(shifter, shifter(0.0), prep.pixel_sum, cfg.search, keep)  # reference decodes 0
        return pred0, outcome
    with timer.stage("search"):
        shifter = _reporting(_FastShifter(ae, score, z, d.g, x0, work, a, b, batch), progress, n, total, a, b)
        outcome = latent_shift(shifter, Shift(d.prediction, 0.0, x0[a:b]), prep.pixel_sum, cfg.search, keep)
    return d.prediction, outcome


def explain(
    hu: np.ndarray,
    ae: SliceAutoencoder,
    classifier: Classifier,
    cfg: ExplainConfig,
    progress: Progress = noop_progress,
) -> ExplainResult:
    """Counterfactual(s) of a (D, H, W) HU volume for one classifier target.

    prepare (encode, decode) -> latent direction (one backward for every chunk) -> per-chunk lambda
    search -> assemble the chosen chunk's CF, the heatmap and the record.
    """
    timer = _Timer()
    prep = _prepare(hu, ae, classifier, cfg, timer, progress)
    x0 = prep.enc.x0
    d = work = None
    if cfg.faithful:
        with torch.no_grad():
            recon_pred = float(prep.score(x0))
    else:
        with timer.stage("gradient"):
            d = latent_direction(ae, prep.score, prep.enc, (prep.start, prep.stop), progress)
        recon_pred = d.prediction
        work = x0.clone()

    chunks = chunk_bounds(prep.start, prep.stop, cfg.chunk_size, cfg.mode)
    heatmap = torch.zeros_like(x0)
    results: list[ChunkResult] = []
    best: tuple[float, int, torch.Tensor] | None = None
    best_sweep: list[tuple[float, float, torch.Tensor]] = []
    for n, (a, b) in enumerate(chunks):
        frames: list[tuple[float, float, torch.Tensor]] = []
        keep = _frame_collector(frames) if cfg.keep_sweep else None
        progress("search", n, len(chunks), f"lambda search on slices {a}-{b - 1}")
        pred0, outcome = _search_chunk(ae, prep, d, work, a, b, n, len(chunks), cfg, timer, progress, keep)
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
    return _assemble(ae, classifier, cfg, prep, recon_pred, heatmap, results, chunks, best, best_sweep, timer)


def _assemble(ae, classifier, cfg, prep: _Prepared, recon_pred, heatmap, results, chunks, best, best_sweep, timer):
    """The chosen chunk's CF pasted into D(z), everything converted to HU numpy, and the record."""
    x0 = prep.enc.x0
    _, chosen, cf_frame = best
    a, b = chunks[chosen]
    cf = x0.clone()
    cf[a:b] = cf_frame
    window = ae.window
    width = window.width
    to_np = lambda t: t.detach().to("cpu", torch.float32).numpy()  # noqa: E731
    return ExplainResult(
        counterfactual_hu=to_np(window.to_hu(cf)),
        reconstruction_hu=to_np(window.to_hu(x0)),
        heatmap=to_np(heatmap * width),
        difference_hu=to_np((cf - x0) * width),
        chunks=results,
        chosen=chosen,
        target_index=prep.index,
        target_name=classifier.targets[prep.index],
        predictions={
            "input": prep.input_pred,
            "reconstruction": recon_pred,
            "counterfactual": results[chosen].prediction_cf,
            "counterfactual_min": results[chosen].prediction_min,
        },
        timings=timer.timings,
        peak_memory_mb=peak_memory_mb(prep.device),
        device=str(prep.device),
        mode=cfg.mode,
        faithful=cfg.faithful,
        slices=(prep.start, prep.stop),
        chunk_size=cfg.chunk_size,
        sweep=[SweepFrame(lam, pred, to_np(window.to_hu(f))) for lam, pred, f in best_sweep],
    )
