"""The engine: Latent Shift counterfactuals of a CT volume, per chunk (``scan``) or whole (``joint``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from CTCounterfactualLib.method.assemble import Collected, Frames, assemble
from CTCounterfactualLib.method.config import (
    ChunkResult,
    ExplainConfig,
    ExplainResult,
    SweepFrame,
    check_request,
    chunk_bounds,
    resolve_device,
)
from CTCounterfactualLib.method.direction import LatentDirection, latent_direction
from CTCounterfactualLib.method.latent_ops import decode_slices, faithful_chunk_gradient
from CTCounterfactualLib.method.path import ChunkContext, ChunkShifter, LatentPath
from CTCounterfactualLib.method.prepare import Prepared, Timer, prepare
from CTCounterfactualLib.method.search import OnEval, SearchOutcome, Shift, latent_shift, unmoved
from CTCounterfactualLib.method.shape import DirectionShape
from CTCounterfactualLib.models.autoencoder import SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.progress import Progress, noop_progress

if TYPE_CHECKING:
    from CTCounterfactualLib.method.reuse import Reuse

__all__ = [
    "ChunkResult",
    "ExplainConfig",
    "ExplainResult",
    "SweepFrame",
    "check_request",
    "chunk_bounds",
    "explain",
    "resolve_device",
]


def _frame_collector(frames: Frames) -> Callable[[int, float, Shift], None]:
    def collect(i: int, lam: float, s: Shift) -> None:
        frames.append((lam, s.pred, s.frame))

    return collect


def _reporter(progress: Progress, n: int, n_chunks: int, a: int, b: int, to_pred) -> OnEval:
    """Report every evaluated lambda. Over several chunks the count is chunks done (their time left);
    with one chunk (joint mode, minutes on a big CT) it is lambdas evaluated, against the most the search
    can still take until it stops (so the time left is an upper bound), then the sweep's exact count."""

    def report(lam: float, s: Shift, done: int, most: int, phase: str) -> None:
        what = f"slices {a}-{b - 1}: lambda {lam:g}, prediction {to_pred(s.pred):.4f}"
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


def direction(prep: Prepared, progress: Progress = noop_progress) -> LatentDirection:
    """The "direction" step: the objective's gradient at the volume the search starts from (the input for the
    detail CF, D(z) for the decoded one), through the decoder's Jacobian, for every slice of the range."""
    depth = prep.enc.z.shape[0]
    return latent_direction(
        prep.ae,
        prep.objective_score,
        prep.enc,
        (prep.start, prep.stop),
        progress,
        at=prep.view.base,
        mask=prep.view.gradient_mask(0, depth),
    )


@dataclass
class _Run:
    """One explanation's search over its chunks: the prepared request, the first direction and the settings."""

    prep: Prepared
    d: LatentDirection | None
    cfg: ExplainConfig
    timer: Timer
    progress: Progress
    regression: bool

    def __post_init__(self) -> None:
        p = self.cfg.search
        self.shape = DirectionShape(
            keep=p.sparse_fraction,
            per_slice=p.sparse_scope == "slice",
            scale=self.prep.settings["lambda_scale"],
            latent_mask=self.prep.latent_mask,
        )
        if self.d is not None:
            self.ctx = ChunkContext(
                self.prep.ae,
                self.prep.view,
                self.prep.objective_score,
                self.prep.view.base.clone(),
                self.prep.enc.batch,
                lambda: self.timer.stage("gradient"),
            )

    def chunk(self, n: int, n_chunks: int, a: int, b: int, keep) -> tuple[float, SearchOutcome, float, int]:
        """The lambda search on chunk [a, b). Returns (starting objective, outcome, lambda unit, path segments)."""
        report = _reporter(self.progress, n, n_chunks, a, b, self.prep.objective.value)
        if self.cfg.faithful:
            return (*self._faithful(a, b, keep, report), 1.0, 1)
        prep, d, search = self.prep, self.d, self.cfg.search
        z = d.z[a:b]
        gc, unit = self.shape(d.g[a:b], z, a)
        auto = prep.settings["lambda_scale"] != "reference"
        pred_unit = abs(d.prediction) if auto and self.regression and d.prediction != 0 else 1.0
        with self.timer.stage("search"):
            path = LatentPath(z, gc)
            shifter = ChunkShifter(self.ctx, path, a, b, search.relinearize_every, lambda g: self.shape(g, z, a)[0])
            start = Shift(d.prediction, 0.0, prep.view.base[a:b])
            if unit == 0.0:
                # no lambda moves these slices; the reference decodes its way to the lambda limit for this result
                report(0.0, start, 1, 1, "sweep")
                outcome = unmoved(start, search, keep)
            else:
                outcome = latent_shift(shifter, start, prep.pixel_sum, search, keep, pred_unit, report)
        return d.prediction, outcome, unit, path.segments

    def _faithful(self, a: int, b: int, keep, report) -> tuple[float, SearchOutcome]:
        prep = self.prep
        ae, z, x0, batch, score = prep.ae, prep.enc.z, prep.enc.x0, prep.enc.batch, prep.score
        with self.timer.stage("gradient"):
            pred0, gc = faithful_chunk_gradient(ae, score, z, tuple(x0.shape[-2:]), a, b, batch)
        with self.timer.stage("search"):
            shifter = _FaithfulShifter(ae, score, z, gc, x0, a, b, batch)
            # the reference decodes lambda 0 too
            outcome = latent_shift(shifter, shifter(0.0), prep.pixel_sum, self.cfg.search, keep, on_eval=report)
        return pred0, outcome


def explain(
    hu: np.ndarray,
    ae: SliceAutoencoder,
    classifier: Classifier,
    cfg: ExplainConfig,
    progress: Progress = noop_progress,
    reuse: Reuse | None = None,
) -> ExplainResult:
    """Counterfactual(s) of a (D, H, W) HU volume for one classifier target.

    prepare (encode, decode) -> direction (one backward for every chunk) -> per-chunk lambda search ->
    assemble the chosen chunk's CF, the heatmap, the record and the per-run metrics. ``reuse`` (a warm engine's)
    keeps the prepared request and the direction for the next call on the same input.
    """
    timer = Timer()
    make = lambda: prepare(hu, ae, classifier, cfg, timer, progress)  # noqa: E731
    prep = reuse.prepared(hu, ae, classifier, cfg, make) if reuse else make()
    d = None
    if not cfg.faithful:
        with timer.stage("gradient"):
            d = reuse.direction(prep, lambda: direction(prep, progress)) if reuse else direction(prep, progress)
    run = _Run(prep, d, cfg, timer, progress, regression=not classifier.apply_sigmoid)
    chunks = chunk_bounds(prep.start, prep.stop, cfg.chunk_size, cfg.mode)
    out = Collected(torch.zeros_like(prep.hu))
    value = prep.objective.value
    for n, (a, b) in enumerate(chunks):
        frames: Frames = []
        keep = _frame_collector(frames) if cfg.keep_sweep or prep.on_grid else None
        progress("search", n, len(chunks), f"lambda search on slices {a}-{b - 1}")
        before, outcome, unit, segments = run.chunk(n, len(chunks), a, b, keep)
        record = ChunkResult(
            a,
            b,
            value(before),
            value(outcome.min_pred),
            value(outcome.cf_pred),
            outcome.lam,
            outcome.stop_reason,
            outcome.sweep_lambdas,
            [value(v) for v in outcome.sweep_preds],
            unit,
            segments,
        )
        with timer.stage("upsample"):
            out.add(prep, record, outcome, frames, cfg)
    progress("search", len(chunks), len(chunks), "search done")
    return assemble(classifier, cfg, prep, d, out, timer)
