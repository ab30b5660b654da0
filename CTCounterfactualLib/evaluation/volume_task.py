"""Every experiment on one volume, in a worker process; returns a plain dict (no tensors).

Workers (``jobs.executors``: a process pool or Ray actors) load the bundled models once
(``EvalWorkerFactory``) and run one volume per task. A failure
comes back as ``{"error": ...}`` naming the volume, so the parent can report it in one line.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from CTCounterfactualLib.evaluation.cohort import CohortItem, load_item
from CTCounterfactualLib.evaluation.identity import change_outside_inside, slice_consistency
from CTCounterfactualLib.evaluation.localization import FindingRegions, body_mask, localization_metrics, top_mass_chunk
from CTCounterfactualLib.evaluation.lungsize import lungsize_sweep
from CTCounterfactualLib.evaluation.saliency import METHODS, saliency_maps
from CTCounterfactualLib.evaluation.settings import WHOLE, EvalSettings, chunk_size_for, reference_engine
from CTCounterfactualLib.evaluation.shift_frames import latent_direction, shifted
from CTCounterfactualLib.evaluation.variant_task import evaluate_variants, sanity_check, table_variant
from CTCounterfactualLib.method.explain import ExplainConfig, ExplainResult, explain

_MODELS: dict = {}


def init_worker(threads: int = 1) -> None:
    """Once per worker: its torch threads (workers share the cores) and the bundled models."""
    from CTCounterfactualLib.store.catalog import load_bundled_autoencoder, load_bundled_classifier

    torch.set_num_threads(threads)
    if not _MODELS:
        _MODELS["ae"], _ = load_bundled_autoencoder("demo-vqgan")
        _MODELS["effusion"], _ = load_bundled_classifier("demo-effusion")
        _MODELS["lungsize"], _ = load_bundled_classifier("demo-lungsize")


@dataclass(frozen=True)
class EvalWorkerFactory:
    """The worker recipe for ``jobs.executors``: loads the models, returns the task function."""

    threads: int = 1

    def __call__(self):
        init_worker(self.threads)
        return run_packed_task


def run_packed_task(task: tuple) -> dict:
    """``run_task`` on an (item, settings, keep_figures) tuple."""
    return run_task(*task)


def run_task(item: CohortItem, settings: EvalSettings, keep_figures: bool) -> dict:
    """``evaluate_volume`` with any exception turned into a one-line error naming the volume."""
    try:
        return evaluate_volume(item, settings, keep_figures)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which stops the run
        where = traceback.extract_tb(e.__traceback__)[-1]
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return {"name": item.name, "error": f"{type(e).__name__}: {first} (at {where.filename}:{where.lineno})"}


def _sweep_row(r: ExplainResult, seconds: float) -> dict:
    chosen = r.chunks[r.chosen]
    return {
        "chunk_size": r.chunk_size if r.mode == "scan" else r.slices[1] - r.slices[0],
        "n_chunks": len(r.chunks),
        "reconstruction": r.predictions["reconstruction"],
        "cf_min": r.predictions["counterfactual_min"],
        "cf_at_lambda": r.predictions["counterfactual"],
        "chosen": [chosen.start, chosen.stop],
        "lambda": chosen.lam,
        "stop_reasons": dict(Counter(c.stop_reason for c in r.chunks)),
        "chunk_min_predictions": [c.prediction_min for c in r.chunks],
        "seconds": seconds,
    }


def evaluate_volume(item: CohortItem, settings: EvalSettings, keep_figures: bool = False) -> dict:
    """Table-1 predictions, the search variants, the chunk sweep, localization, saliency, identity, lung size and
    the model-randomization check of one volume (each part as ``settings`` asks)."""
    t_start = time.perf_counter()
    ae, clf = _MODELS["ae"], _MODELS["effusion"]
    vol = load_item(item)
    hu, depth = vol.hu, vol.hu.shape[0]
    body = body_mask(hu)
    regions = FindingRegions(vol.mask, vol.geometry, body) if vol.mask is not None else None
    with torch.no_grad():
        input_pred = float(clf.score(torch.as_tensor(hu), 0, clip=True))
    row: dict = {
        **item.to_dict(),
        "depth": depth,
        "has_mask": regions is not None,
        "finding_slices": list(regions.slices) if regions else None,
        "input": input_pred,
        "threshold": clf.threshold,
    }
    row["variants"], variant_results = evaluate_variants(hu, item.label, regions, body, ae, clf, settings)
    main = joint = None
    if settings.entries():
        main, joint, chosen = _reference_runs(row, hu, depth, body, regions, ae, clf, settings)
    else:
        first = row["variants"].get(table_variant(settings) or "")
        chosen = tuple(first["chosen"]) if first else (0, depth)
        row["reconstruction"] = first["reconstruction"] if first else None
        row["cf"] = first["cf_min"] if first else None
        row["cf_joint"] = first["cf_min"] if first and first["mode"] == "joint" else None
        row["sweep"], row["identity"] = {}, None

    maps: dict[str, np.ndarray] = {}
    if regions is not None:
        loc = row.setdefault("localization", {})
        for name, v in row["variants"].items():
            loc[f"{name} heatmap"] = v["loc_heatmap"]
            loc[f"{name} change"] = v["loc_change"]
        bounds = [(c.start, c.stop) for c in main.chunks] if main is not None else [chosen]
        if settings.saliency:
            maps = saliency_maps(clf, hu, 0)
            for method in METHODS:
                loc[method] = localization_metrics(maps[method], regions, top_mass_chunk(maps[method], bounds))
    if settings.sanity:
        row["sanity"] = sanity_check(hu, regions, body, ae, clf, settings, variant_results, maps or None)
    if settings.lungsize:
        row["lungsize"] = lungsize_sweep(
            hu, ae, _MODELS["lungsize"], vol.geometry.spacing, settings.batch_size, keep_figures
        )
    if keep_figures and main is not None:
        row["figure"] = _figure_slices(hu, main, joint, maps, regions, chosen)
    if keep_figures and regions is not None and variant_results:
        row["figure_variants"] = _variant_slices(hu, variant_results, regions)
    row["seconds"] = time.perf_counter() - t_start
    return row


def _reference_runs(row: dict, hu, depth, body, regions, ae, clf, settings: EvalSettings):
    """The chunk sweep along the reference's raw gradient at the input's size, Table 1's scan CF, identity
    preservation and the composite of every chunk's CF; the two reference maps' localization."""
    # the chunk sweep; entries that give the same chunks (e.g. 'all' and 'joint') are computed once
    runs: dict[tuple, tuple[ExplainResult, float]] = {}
    sweep: dict[str, dict] = {}
    for entry in settings.entries():
        cs = chunk_size_for(entry, depth)
        mode = "joint" if entry in WHOLE or cs == depth else "scan"
        key = (0, depth) if mode == "joint" else (cs,)
        if key not in runs:
            t0 = time.perf_counter()
            cfg = ExplainConfig(
                target=0, chunk_size=cs, mode=mode, batch_size=settings.batch_size, **reference_engine()
            )
            runs[key] = (explain(hu, ae, clf, cfg), time.perf_counter() - t0)
        sweep[entry] = _sweep_row(*runs[key])
    row["sweep"] = sweep
    main_key = (0, depth) if chunk_size_for(str(settings.chunk_size), depth) == depth else (settings.chunk_size,)
    main, joint = runs[main_key][0], runs[(0, depth)][0]
    row["reconstruction"] = main.predictions["reconstruction"]
    row["cf"] = sweep[str(settings.chunk_size)]["cf_min"]
    row["cf_joint"] = sweep["joint"]["cf_min"]
    bounds = [(c.start, c.stop) for c in main.chunks]
    chosen = bounds[main.chosen]

    # identity preservation, and the composite of every chunk's CF (the paper's stated limitation)
    width = ae.window.width
    direction = latent_direction(ae, clf, hu, 0, (0, depth), settings.batch_size)
    composite = shifted(ae, direction, [(c.start, c.stop, c.lam) for c in main.chunks])
    composite_diff = ((composite - direction.x0) * width).numpy()
    with torch.no_grad():
        composite_pred = float(clf.score(ae.window.to_hu(composite), 0))
    engine_cf = main.counterfactual_hu[chosen[0] : chosen[1]]
    mine_cf = ae.window.to_hu(composite[chosen[0] : chosen[1]]).numpy()
    recon_err = np.abs(main.reconstruction_hu - hu)
    dil = regions.dilated if regions else None
    msk = regions.mask if regions else None
    outside_all = body & ~dil if dil is not None else body
    borders = [a for a, _ in bounds[1:]]
    row["identity"] = {
        "scan": change_outside_inside(main.difference_hu, body, chosen, dil, msk),
        "joint": change_outside_inside(joint.difference_hu, body, (0, depth), dil, msk),
        "reconstruction_error_outside_dilated": float(recon_err[outside_all].mean()),
        "composite_prediction": composite_pred,
        "composite_matches_engine_max_abs_hu": float(np.abs(engine_cf - mine_cf).max()),
        "consistency_composite": slice_consistency(composite_diff, body, borders, (0, depth)),
        "consistency_joint": slice_consistency(joint.difference_hu, body, borders, (0, depth)),
    }
    if regions is not None:
        loc = row.setdefault("localization", {})
        loc["LatentShift scan"] = localization_metrics(main.heatmap, regions, chosen)
        loc["LatentShift joint"] = localization_metrics(joint.heatmap, regions, top_mass_chunk(joint.heatmap, bounds))
    return main, joint, chosen


def _variant_slices(hu, results: dict, regions) -> dict:
    """The slice with the most fluid, in the input and in each variant's CF and heatmap."""
    k = int(np.argmax(regions.mask.sum(axis=(1, 2))))
    out = {"slice": k, "input": hu[k], "mask": regions.mask[k], "dilated": regions.dilated[k], "variants": {}}
    for name, r in results.items():
        out["variants"][name] = {"counterfactual": r.counterfactual_hu[k], "heatmap": r.heatmap[k]}
    return out


def _figure_slices(hu, main: ExplainResult, joint: ExplainResult, maps: dict, regions, chosen) -> dict:
    """2D slices for the report's saliency and localization figures (the slice with most finding in the CF chunk)."""
    a, b = chosen
    if regions is not None:
        area = regions.mask.sum(axis=(1, 2))
        in_chunk = area[a:b]
        k = a + int(np.argmax(in_chunk)) if in_chunk.max() > 0 else int(np.argmax(area))
    else:
        k = a + int(np.argmax(main.heatmap[a:b].sum(axis=(1, 2))))
    out = {
        "slice": k,
        "input": hu[k],
        "reconstruction": main.reconstruction_hu[k],
        "counterfactual_scan": main.counterfactual_hu[k],
        "counterfactual_joint": joint.counterfactual_hu[k],
        "heat_LatentShift scan": main.heatmap[k],
        "heat_LatentShift joint": joint.heatmap[k],
        "mask": regions.mask[k] if regions is not None else None,
        "dilated": regions.dilated[k] if regions is not None else None,
        "chosen": list(chosen),
    }
    for name, m in maps.items():
        out[f"heat_{name}"] = m[k]
    return out
