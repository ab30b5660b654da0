"""The search variants on one volume: each one ``explain`` as a user runs it, measured against the input and the
finding's mask; and the model-randomization check of the first variant and of captum's Saliency."""

from __future__ import annotations

import time

import numpy as np

from CTCounterfactualLib.evaluation.cout import cout
from CTCounterfactualLib.evaluation.identity import slice_consistency
from CTCounterfactualLib.evaluation.localization import FindingRegions, localization_metrics
from CTCounterfactualLib.evaluation.sanity import randomized, spearman
from CTCounterfactualLib.evaluation.settings import EvalSettings
from CTCounterfactualLib.evaluation.variants import ALL, VARIANTS, region_of
from CTCounterfactualLib.method.explain import ExplainResult, explain


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def variant_row(r: ExplainResult, hu: np.ndarray, body: np.ndarray, regions, seconds: float, clf) -> dict:
    """Everything the report says about one variant's CF of one volume (plain numbers)."""
    chosen = r.chunks[r.chosen]
    a, b = chosen.start, chosen.stop
    change = r.counterfactual_hu.astype(np.float64) - hu
    raise_ = r.settings.get("direction") == "raise"
    row = {
        "seconds": seconds,
        "mode": r.mode,
        "counterfactual": r.settings.get("counterfactual"),
        "input": r.predictions["input"],
        "reconstruction": r.predictions["reconstruction"],
        "cf": r.predictions["counterfactual"],
        "cf_min": r.predictions["counterfactual_min"],
        "before": chosen.prediction_before,
        "chosen": [a, b],
        "lambda": chosen.lam,
        "stop_reason": chosen.stop_reason,
        "segments": chosen.segments,
        "valid": r.metrics.get("valid"),
        "proximity_hu": r.metrics.get("proximity_hu"),
        "concentration": r.metrics.get("concentration_top1pct"),
        "cout": cout(clf, r.target_index, hu, r.counterfactual_hu, raise_)["cout"],
        "discontinuity": slice_consistency(change, body, [a, b], (max(0, a - 1), min(len(hu), b + 1))),
    }
    if regions is not None:
        row["loc_heatmap"] = localization_metrics(r.heatmap, regions, (a, b))
        row["loc_change"] = localization_metrics(np.abs(change), regions, (a, b))
        outside = body[a:b] & ~regions.dilated[a:b]
        row["outside_hu"] = _mean(np.abs(change[a:b])[outside])
        row["finding_change_hu"] = _mean(change[a:b][regions.mask[a:b]])
    if "region" in r.metrics:
        row["region"] = r.metrics["region"]
    return row


def evaluate_variants(
    hu: np.ndarray, label: int, regions: FindingRegions | None, body: np.ndarray, ae, clf, settings: EvalSettings
) -> tuple[dict[str, dict], dict[str, ExplainResult]]:
    """Each applicable variant of ``settings.variants``: its row, and its result (for figures and the check)."""
    rows: dict[str, dict] = {}
    results: dict[str, ExplainResult] = {}
    for name in settings.variants:
        v = VARIANTS[name]
        if not v.applies(label, regions is not None):
            continue
        region = region_of(v, regions.dilated) if regions is not None else None
        cfg = v.config(settings.chunk_size, len(hu), settings.batch_size, region, settings.sweep_steps)
        t0 = time.perf_counter()
        r = explain(hu, ae, clf, cfg)
        rows[name] = variant_row(r, hu, body, regions, time.perf_counter() - t0, clf)
        results[name] = r
    return rows, results


def table_variant(settings: EvalSettings) -> str | None:
    """The variant whose CF stands in Table 1 when there is no chunk sweep: the first one run on every volume."""
    return next((n for n in settings.variants if VARIANTS[n].applies_to == ALL and not VARIANTS[n].region), None)


def sanity_check(hu, regions, body, ae, clf, settings: EvalSettings, trained: dict, saliency: dict | None) -> dict:
    """Trained vs randomized classifier: the first variant's heatmap and change, and captum's Saliency."""
    name = table_variant(settings)
    rand = randomized(clf)
    out: dict = {"variant": name}
    if name is not None and name in trained:
        v = VARIANTS[name]
        r = trained[name]
        cfg = v.config(settings.chunk_size, len(hu), settings.batch_size, None, settings.sweep_steps)
        rr = explain(hu, ae, rand, cfg)
        out["random_input"] = rr.predictions["input"]
        out["spearman_heatmap"] = spearman(r.heatmap, rr.heatmap, body)
        out["spearman_change"] = spearman(r.counterfactual_hu - hu, rr.counterfactual_hu - hu, body)
        if regions is not None:
            c = rr.chunks[rr.chosen]
            out["random_loc_heatmap"] = localization_metrics(rr.heatmap, regions, (c.start, c.stop))
    if saliency is not None:
        from CTCounterfactualLib.evaluation.saliency import saliency_maps

        random_maps = saliency_maps(rand, hu, 0)
        out["spearman_saliency"] = spearman(saliency["Saliency"], random_maps["Saliency"], body)
    return out
