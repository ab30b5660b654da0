"""The engine: Latent Shift counterfactuals of a CT volume, per chunk (``scan``) or whole (``joint``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from CTCounterfactualLib.data.masks import body_mask
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.method.direction import (
    Encoded,
    LatentDirection,
    latent_direction,
    window_score,
)
from CTCounterfactualLib.method.fidelity import fidelity_warning, measure_fidelity, robust_fit
from CTCounterfactualLib.method.finite import require_finite
from CTCounterfactualLib.method.latent_ops import ScoreFn, decode_slices, encode_volume, faithful_chunk_gradient
from CTCounterfactualLib.method.memory import peak_memory_mb, reset_peak
from CTCounterfactualLib.method.search import HeatmapAccumulator, OnEval, Shift, latent_shift, unmoved
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.params import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_MODE,
    DEFAULT_OUTPUT_MAP,
    DEFAULT_SEARCH_RESOLUTION,
    DEVICES,
    LAMBDA_UNIT_RMS,
    MODES,
    OUTPUT_MAPS,
    SEARCH_RESOLUTIONS,
    SearchParams,
)
from CTCounterfactualLib.progress import Progress, noop_progress

if TYPE_CHECKING:
    from CTCounterfactualLib.method.reuse import Reuse


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
    search_resolution: str = DEFAULT_SEARCH_RESOLUTION  # fast path only; --faithful searches at the input's
    output_map: str = DEFAULT_OUTPUT_MAP  # --faithful implies "reference"


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
    lambda_unit: float = 1.0  # the raw-gradient multiple one unit of lambda is (1 under the reference scale)


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
    fidelity: dict = field(default_factory=dict)  # the autoencoder on this input: mae_hu_body, slope, ...
    warnings: list[str] = field(default_factory=list)  # one line each, for the user
    settings: dict = field(default_factory=dict)  # the effective search_resolution, output_map, lambda_scale


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
    if cfg.search_resolution not in SEARCH_RESOLUTIONS:
        raise CTCFError(f"search resolution {cfg.search_resolution!r} is not one of {', '.join(SEARCH_RESOLUTIONS)}")
    if cfg.output_map not in OUTPUT_MAPS:
        raise CTCFError(f"output map {cfg.output_map!r} is not one of {', '.join(OUTPUT_MAPS)}")
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


def search_grid(ae: SliceAutoencoder, classifier: Classifier, hw: tuple[int, int], cfg: ExplainConfig):
    """The in-plane size the lambda search works at: the autoencoder's own grid when both models resize
    slices to a fixed size and that grid is smaller than the input; else the input's (and always with
    ``--faithful`` or ``search_resolution="input"``)."""
    size = ae.convention.size
    if cfg.faithful or cfg.search_resolution == "input" or not size or not classifier.convention.size:
        return tuple(hw)
    return (size, size) if size * size < hw[0] * hw[1] else tuple(hw)


def effective_output_map(ae: SliceAutoencoder, cfg: ExplainConfig) -> str:
    """reference or calibrated: ``--faithful`` implies reference; auto = calibrated iff the maps are not inverses."""
    if cfg.faithful:
        return "reference"
    if cfg.output_map == "auto":
        return "reference" if ae.convention.output_inverts_input else "calibrated"
    return cfg.output_map


def effective_lambda_scale(cfg: ExplainConfig) -> str:
    return "reference" if cfg.faithful else cfg.search.lambda_scale


def _rms(t: torch.Tensor) -> float:
    return float(t.double().pow(2).mean().sqrt())


class _FastShifter:
    """Decodes only the chunk's slices; the rest of D(z) stays cached in ``work``. ``gc``: the chunk's direction."""

    def __init__(self, ae, score, z, gc, x0, work, a, b, batch):
        self.ae, self.score, self.z, self.gc, self.x0, self.work = ae, score, z, gc, x0, work
        self.a, self.b, self.batch, self.hw = a, b, batch, tuple(x0.shape[-2:])

    @torch.no_grad()
    def __call__(self, lam: float) -> Shift:
        a, b = self.a, self.b
        frame = decode_slices(self.ae, self.z[a:b] + lam * self.gc, self.hw, self.batch)
        self.work[a:b] = frame
        try:
            with torch.inference_mode():  # the classifier's forward, with no autograd bookkeeping at all
                pred = float(self.score(self.work))
        finally:
            self.work[a:b] = self.x0[a:b]
        return Shift(pred, float((self.x0[a:b] - frame).abs().sum()), frame)


def _frame_collector(frames: list) -> Callable[[int, float, Shift], None]:
    def collect(i: int, lam: float, s: Shift) -> None:
        frames.append((lam, s.pred, s.frame))

    return collect


def _reporter(progress: Progress, n: int, n_chunks: int, a: int, b: int) -> OnEval:
    """Report every evaluated lambda. Over several chunks the count is chunks done (their time left);
    with one chunk (joint mode, minutes on a big CT) it is lambdas evaluated, against the most the search
    can still take until it stops (so the time left is an upper bound), then the sweep's exact count."""

    def report(lam: float, s: Shift, done: int, most: int, phase: str) -> None:
        what = f"slices {a}-{b - 1}: lambda {lam:g}, prediction {s.pred:.4f}"
        if n_chunks > 1:
            progress("search", n, n_chunks, what)
        elif phase == "search":
            progress("search", done, most, f"{what} (search step {done}; at most {most} decodes in all)")
        else:
            progress("search", done, most, f"{what} (sweep frame; decode {done} of {most})")

    return report


class _FaithfulShifter:
    """The reference: decode every slice of z + lambda * g at every step."""

    def __init__(self, ae, score, z, g, x0, a, b, batch):
        self.ae, self.score, self.z, self.g, self.x0 = ae, score, z, g, x0
        self.a, self.b, self.batch, self.hw = a, b, batch, tuple(x0.shape[-2:])

    @torch.no_grad()
    def __call__(self, lam: float) -> Shift:
        x = decode_slices(self.ae, self.z + lam * self.g, self.hw, self.batch)
        with torch.inference_mode():
            pred = float(self.score(x))
        return Shift(pred, float((self.x0 - x).abs().sum()), x[self.a : self.b].clone())


@dataclass
class _Prepared:
    """The checked request on the device: range, target, scoring function, latents and reconstruction.

    ``enc.x0`` is D(z) on the search grid; ``x0_full`` the same at the input's size (the same tensor when
    the grid is the input's). ``ae`` carries the effective output map.
    """

    start: int
    stop: int
    index: int
    device: torch.device
    score: ScoreFn
    input_pred: float
    enc: Encoded
    pixel_sum: float
    ae: SliceAutoencoder
    x0_full: torch.Tensor
    fidelity: dict
    warnings: list[str]
    settings: dict

    @property
    def on_grid(self) -> bool:
        return self.x0_full is not self.enc.x0

    def to_input_size(self, unit_slices: torch.Tensor) -> torch.Tensor:
        """Slices of the search grid at the input's size (the decoder's own resize; identity off the grid)."""
        if not self.on_grid:
            return unit_slices
        return self.ae.convention.resample(unit_slices, tuple(self.x0_full.shape[-2:]))


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
    hw = tuple(hu.shape[-2:])
    grid = search_grid(ae, classifier, hw, cfg)
    with timer.stage("decode"):
        x0 = decode_slices(ae, z, grid, cfg.batch_size, progress=progress)
        require_finite(x0, "the reconstruction D(E(x))", "the autoencoder's decoder is broken or does not fit")
        x0_full = x0 if grid == hw else ae.convention.resample(x0, hw)
    with timer.stage("fidelity"):
        ae, x0, x0_full, fid, warn, output_map = _fit_output(hu, ae, x0, x0_full, cfg, device)
    settings = {
        "search_resolution": "input" if grid == hw else "model",
        "search_grid": list(grid),
        "output_map": output_map,
        "lambda_scale": effective_lambda_scale(cfg),
    }
    enc = Encoded(z, x0, cfg.batch_size)
    return _Prepared(
        start,
        stop,
        index,
        device,
        window_score(ae, classifier, index),
        input_pred,
        enc,
        float(enc.x0.abs().sum()),
        ae,
        x0_full,
        fid,
        [warn] if warn else [],
        settings,
    )


def _fit_output(hu, ae: SliceAutoencoder, x0, x0_full, cfg: ExplainConfig, device):
    """Measure the reconstruction against the input in the body; with the calibrated map, fit it first."""
    window = ae.window
    body = torch.as_tensor(body_mask(hu), device=device)
    hu_t = torch.as_tensor(hu, dtype=x0_full.dtype, device=device).clamp(window.low, window.high)
    output_map = effective_output_map(ae, cfg)
    fit = None
    if output_map == "calibrated" and bool(body.any()):
        scale, offset = robust_fit(x0_full[body], window.to_unit(hu_t)[body])
        ae = SliceAutoencoder(ae.model, ae.convention.with_output_fit(scale, offset), ae.name)
        same = x0_full is x0
        x0 = x0 * scale + offset
        x0_full = x0 if same else x0_full * scale + offset
        fit = {"scale": scale, "offset": offset}
    fid = measure_fidelity(hu_t, window.to_hu(x0_full), body)
    fid["output_map"] = output_map
    if fit is not None:
        fid["calibration"] = fit
    return ae, x0, x0_full, fid, fidelity_warning(fid, output_map), output_map


def _chunk_direction(prep: _Prepared, d: LatentDirection, a: int, b: int, regression: bool):
    """The chunk's search direction, the raw-gradient multiple one lambda unit is, and the prediction unit.

    reference: the raw gradient, units 1. auto: the gradient rescaled so that one unit of lambda moves the
    chunk's latents by LAMBDA_UNIT_RMS of their RMS; a regression output's prediction rules then count in
    units of the starting prediction's magnitude, so a classifier's output scale changes nothing.
    """
    g = d.g[a:b]
    if prep.settings["lambda_scale"] == "reference":
        return g, 1.0, 1.0
    g_rms = _rms(g)
    unit = LAMBDA_UNIT_RMS * _rms(d.z[a:b]) / g_rms if g_rms > 0 else 0.0
    pred_unit = abs(d.prediction) if regression and d.prediction != 0 else 1.0
    return g * unit, unit, pred_unit


def _search_chunk(prep: _Prepared, d: LatentDirection | None, work, a, b, n, total, cfg, timer, progress, keep, reg):
    """The lambda search on chunk [a, b): along the shared direction ``d`` (fast) or the reference's own.

    Returns (starting prediction, outcome, lambda unit).
    """
    ae, z, x0, batch, score = prep.ae, prep.enc.z, prep.enc.x0, prep.enc.batch, prep.score
    if cfg.faithful:
        with timer.stage("gradient"):
            pred0, gc = faithful_chunk_gradient(ae, score, z, tuple(x0.shape[-2:]), a, b, batch)
        with timer.stage("search"):
            shifter = _FaithfulShifter(ae, score, z, gc, x0, a, b, batch)
            report = _reporter(progress, n, total, a, b)
            outcome = latent_shift(  # the reference decodes lambda 0 too
                shifter, shifter(0.0), prep.pixel_sum, cfg.search, keep, on_eval=report
            )
        return pred0, outcome, 1.0
    gc, unit, pred_unit = _chunk_direction(prep, d, a, b, reg)
    with timer.stage("search"):
        shifter = _FastShifter(ae, score, z, gc, x0, work, a, b, batch)
        start = Shift(d.prediction, 0.0, x0[a:b])
        report = _reporter(progress, n, total, a, b)
        if unit == 0.0:
            # no lambda moves these slices; the reference decodes its way to the lambda limit for this result
            report(0.0, start, 1, 1, "sweep")
            outcome = unmoved(start, cfg.search, keep)
        else:
            outcome = latent_shift(shifter, start, prep.pixel_sum, cfg.search, keep, pred_unit, report)
    return d.prediction, outcome, unit


def _to_input_size(prep: _Prepared, outcome, frames: list, method: str, a: int, b: int) -> None:
    """Off the grid nothing to do; on it, the CF and the heatmap at the input's size from the sweep frames.

    Each frame is resized exactly as the decoder's output would be, so these equal decoding at full size.
    """
    if not prep.on_grid:
        return
    full = [prep.to_input_size(f) for _, _, f in frames]
    heat = HeatmapAccumulator(method, prep.x0_full[a:b], len(full))
    for f in full:
        heat.add(f)
    outcome.cf_frame, outcome.heatmap = full[0], heat.result()


def explain(
    hu: np.ndarray,
    ae: SliceAutoencoder,
    classifier: Classifier,
    cfg: ExplainConfig,
    progress: Progress = noop_progress,
    reuse: Reuse | None = None,
) -> ExplainResult:
    """Counterfactual(s) of a (D, H, W) HU volume for one classifier target.

    prepare (encode, decode) -> latent direction (one backward for every chunk) -> per-chunk lambda
    search -> assemble the chosen chunk's CF, the heatmap and the record. ``reuse`` (a warm engine's) keeps the
    prepared request and the direction for the next call on the same input.
    """
    timer = _Timer()
    prepare = lambda: _prepare(hu, ae, classifier, cfg, timer, progress)  # noqa: E731
    prep = reuse.prepared(hu, ae, classifier, cfg, prepare) if reuse else prepare()
    x0 = prep.enc.x0
    d = work = None
    if cfg.faithful:
        with torch.no_grad():
            recon_pred = float(prep.score(x0))
    else:
        with timer.stage("gradient"):
            direction = lambda: latent_direction(prep.ae, prep.score, prep.enc, (prep.start, prep.stop), progress)  # noqa: E731
            d = reuse.direction(prep, direction) if reuse else direction()
        recon_pred = d.prediction
        work = x0.clone()

    chunks = chunk_bounds(prep.start, prep.stop, cfg.chunk_size, cfg.mode)
    heatmap = torch.zeros_like(prep.x0_full)
    results: list[ChunkResult] = []
    best: tuple[float, int, torch.Tensor] | None = None
    best_sweep: list[tuple[float, float, torch.Tensor]] = []
    regression = not classifier.apply_sigmoid
    for n, (a, b) in enumerate(chunks):
        frames: list[tuple[float, float, torch.Tensor]] = []
        keep = _frame_collector(frames) if cfg.keep_sweep or prep.on_grid else None
        progress("search", n, len(chunks), f"lambda search on slices {a}-{b - 1}")
        pred0, outcome, unit = _search_chunk(
            prep, d, work, a, b, n, len(chunks), cfg, timer, progress, keep, regression
        )
        with timer.stage("upsample"):
            _to_input_size(prep, outcome, frames, cfg.search.heatmap_method, a, b)
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
                unit,
            )
        )
        if best is None or outcome.min_pred < best[0]:
            best = (outcome.min_pred, n, outcome.cf_frame)
            best_sweep = frames if cfg.keep_sweep else []
        frames = []
    progress("search", len(chunks), len(chunks), "search done")
    return _assemble(classifier, cfg, prep, recon_pred, heatmap, results, chunks, best, best_sweep, timer)


def _assemble(classifier, cfg, prep: _Prepared, recon_pred, heatmap, results, chunks, best, best_sweep, timer):
    """The chosen chunk's CF pasted into D(z), everything converted to HU numpy, and the record.

    On the model's grid the predictions of the reconstruction and the CF are scored again at the input's size
    (what a user re-running the classifier on the written volumes gets); the chunk records keep the search's.
    """
    x0 = prep.x0_full
    _, chosen, cf_frame = best
    a, b = chunks[chosen]
    cf = x0.clone()
    cf[a:b] = cf_frame
    window = prep.ae.window
    width = window.width
    to_np = lambda t: t.detach().to("cpu", torch.float32).numpy()  # noqa: E731
    predictions = {
        "input": prep.input_pred,
        "reconstruction": recon_pred,
        "counterfactual": results[chosen].prediction_cf,
        "counterfactual_min": results[chosen].prediction_min,
    }
    if prep.on_grid:
        with timer.stage("upsample"), torch.no_grad():
            predictions["reconstruction_search"] = recon_pred
            predictions["counterfactual_search"] = results[chosen].prediction_cf
            predictions["reconstruction"] = float(prep.score(x0))
            predictions["counterfactual"] = float(prep.score(cf))
    return ExplainResult(
        counterfactual_hu=to_np(window.to_hu(cf)),
        reconstruction_hu=to_np(window.to_hu(x0)),
        heatmap=to_np(heatmap * width),
        difference_hu=to_np((cf - x0) * width),
        chunks=results,
        chosen=chosen,
        target_index=prep.index,
        target_name=classifier.targets[prep.index],
        predictions=predictions,
        timings=timer.timings,
        peak_memory_mb=peak_memory_mb(prep.device),
        device=str(prep.device),
        mode=cfg.mode,
        faithful=cfg.faithful,
        slices=(prep.start, prep.stop),
        chunk_size=cfg.chunk_size,
        sweep=[SweepFrame(lam, pred, to_np(window.to_hu(prep.to_input_size(f)))) for lam, pred, f in best_sweep],
        fidelity=prep.fidelity,
        warnings=prep.warnings,
        settings=prep.settings,
    )
