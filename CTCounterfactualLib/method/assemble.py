"""The "assemble" step of ``explain``: each chunk's CF and heatmap in HU at the input's size, then the record.

On the model's grid the searched frames are brought to the input's size once, here: the decoded CF's slices
by the decoder's own resize (equal to decoding at full size), the detail CF's *change* by the same resize,
added to the full-size input (``output_slab``). The written CF is then scored again at the input's size, so
the reported prediction is the written volume's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from CTCounterfactualLib.method.config import ChunkResult, ExplainConfig, ExplainResult, SweepFrame
from CTCounterfactualLib.method.direction import LatentDirection
from CTCounterfactualLib.method.memory import peak_memory_mb
from CTCounterfactualLib.method.metrics import region_metrics, run_metrics
from CTCounterfactualLib.method.prepare import Prepared, Timer
from CTCounterfactualLib.method.search import HeatmapAccumulator, SearchOutcome
from CTCounterfactualLib.method.view import clip_changed
from CTCounterfactualLib.models.classifier import Classifier

Frames = list[tuple[float, float, torch.Tensor]]  # (lambda, objective, the searched volume's chunk slices)


def output_slab(prep: Prepared, frame: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """A searched frame of slices a:b as the user gets it: HU at the input's size."""
    window = prep.ae.window
    if prep.view.kind == "decoded":
        return window.to_hu(prep.to_input_size(frame))
    change = prep.to_input_size(frame - prep.view.x[a:b])
    if prep.region_full is not None:
        change = change * prep.region_full[a:b]
    x = prep.hu[a:b]
    # x + 0 is x: a voxel the shift did not change keeps the input's own value, beyond the window too
    return clip_changed(x, x + change * window.width, window.low, window.high)


def base_hu(prep: Prepared) -> torch.Tensor:
    """What lambda 0 gives, in HU at the input's size: the input (detail CF) or the reconstruction (decoded CF)."""
    return prep.hu if prep.view.kind == "detail" else prep.ae.window.to_hu(prep.x0_full)


@dataclass
class Collected:
    """The chunks' outputs as the search goes: the heatmap volume (HU), the records, the best chunk's CF slab."""

    heatmap: torch.Tensor
    records: list[ChunkResult] = field(default_factory=list)
    best: tuple[float, int, torch.Tensor] | None = None  # (objective, chunk index, CF slab in HU)
    best_sweep: list[tuple[float, float, torch.Tensor]] = field(default_factory=list)

    def add(self, prep: Prepared, record: ChunkResult, outcome: SearchOutcome, frames: Frames, cfg: ExplainConfig):
        a, b = record.start, record.stop
        width = prep.ae.window.width
        sweep: list[tuple[float, float, torch.Tensor]] = []
        if prep.on_grid:
            heat = HeatmapAccumulator(cfg.search.heatmap_method, base_hu(prep)[a:b], len(frames))
            cf = None
            for lam, value, f in frames:  # one full-size frame at a time
                full = output_slab(prep, f, a, b)
                heat.add(full)
                cf = full if cf is None else cf
                if cfg.keep_sweep:
                    sweep.append((lam, value, full))
            self.heatmap[a:b] = heat.result()
        else:
            cf = output_slab(prep, outcome.cf_frame, a, b)
            self.heatmap[a:b] = outcome.heatmap * width
            if cfg.keep_sweep:
                sweep = [(lam, value, output_slab(prep, f, a, b)) for lam, value, f in frames]
        self.records.append(record)
        if self.best is None or outcome.min_pred < self.best[0]:
            self.best = (outcome.min_pred, len(self.records) - 1, cf)
            self.best_sweep = sweep


def _predictions(classifier: Classifier, prep: Prepared, d: LatentDirection | None, record, cf_hu, timer) -> dict:
    """The predictions of the written volumes. Decoded CF: the search's, rescored at the input's size when the
    search ran on the model's grid. Detail CF: the input's own, and the written CF scored at full size."""
    value = prep.objective.value
    with torch.no_grad():
        recon_search = value(d.prediction) if d is not None and prep.view.kind == "decoded" else None
        if recon_search is None and prep.view.kind == "decoded":
            recon_search = float(prep.score(prep.enc.x0))
        out = {
            "input": prep.input_pred,
            "reconstruction": recon_search,
            "counterfactual": record.prediction_cf,
            "counterfactual_min": record.prediction_min,
        }
        if prep.view.kind == "detail":
            with timer.stage("upsample"):
                out["reconstruction"] = float(prep.score(prep.x0_full))
                out["counterfactual"] = float(classifier.score(cf_hu, prep.index, clip=True))
            if prep.on_grid:
                out["input_search"] = value(d.prediction)
                out["counterfactual_search"] = record.prediction_cf
        elif prep.on_grid:
            with timer.stage("upsample"):
                out["reconstruction_search"] = recon_search
                out["counterfactual_search"] = record.prediction_cf
                out["reconstruction"] = float(prep.score(prep.x0_full))
                out["counterfactual"] = float(prep.score(prep.ae.window.to_unit(cf_hu)))
    return out


def assemble(
    classifier: Classifier,
    cfg: ExplainConfig,
    prep: Prepared,
    d: LatentDirection | None,
    out: Collected,
    timer: Timer,
) -> ExplainResult:
    """The chosen chunk's CF pasted into the volume at lambda 0, everything as HU numpy, the record, the metrics."""
    _, chosen, cf_slab = out.best
    record = out.records[chosen]
    a, b = record.start, record.stop
    base = base_hu(prep)
    cf = base.clone()
    cf[a:b] = cf_slab
    window = prep.ae.window

    def to_np(t: torch.Tensor) -> np.ndarray:
        return t.detach().to("cpu", torch.float32).numpy()

    predictions = _predictions(classifier, prep, d, record, cf, timer)
    cf_np, input_np = to_np(cf), to_np(prep.hu)
    threshold = classifier.threshold if classifier.apply_sigmoid else None
    raise_ = prep.objective.raise_
    metrics = run_metrics(input_np, cf_np, prep.body, (a, b), predictions["counterfactual"], threshold, raise_)
    if prep.region_full is not None:
        region = to_np(prep.region_full).astype(bool)
        metrics["region"] = region_metrics(
            input_np, cf_np, region, (a, b), record.prediction_before, predictions["counterfactual"]
        )
    reference = "input" if prep.view.kind == "detail" else "reconstruction"
    settings = {**prep.settings, "difference": f"counterfactual - {reference}"}
    return ExplainResult(
        counterfactual_hu=cf_np,
        reconstruction_hu=to_np(window.to_hu(prep.x0_full)),
        heatmap=to_np(out.heatmap),
        difference_hu=to_np(cf - base),
        chunks=out.records,
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
        sweep=[SweepFrame(lam, prep.objective.value(v), to_np(f)) for lam, v, f in out.best_sweep],
        fidelity=prep.fidelity,
        warnings=prep.warnings,
        settings=settings,
        metrics=metrics,
    )
