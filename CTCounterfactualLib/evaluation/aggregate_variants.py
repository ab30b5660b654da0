"""Per-variant numbers of the cohort (mean +- SE with n, rates), split by patients seen and held out, and the
model-randomization check."""

from __future__ import annotations

from CTCounterfactualLib.evaluation.saliency import METHODS
from CTCounterfactualLib.evaluation.stats import mean_se
from CTCounterfactualLib.evaluation.variants import VARIANTS

LOC_KEYS = ("share_in_mask", "share_in_dilated", "pointing_hit")


def groups(rows: list[dict]) -> dict[str, list[dict]]:
    """Positives (all, on training patients, on held-out patients) and negatives; empty groups left out."""
    pos = [r for r in rows if r["label"] == 1]
    out = {"positives": pos}
    if any(r.get("held_out") for r in rows):
        out["positives, training patients"] = [r for r in pos if not r.get("held_out")]
        out["positives, held-out patients"] = [r for r in pos if r.get("held_out")]
    out["negatives"] = [r for r in rows if r["label"] == 0]
    return {k: v for k, v in out.items() if v}


def _flag_rate(values: list) -> dict:
    return mean_se([float(v) for v in values if v is not None])


def _detected(r: dict, v: dict) -> bool:
    """The classifier calls the input what the variant explains away: positive for lower, negative for raise."""
    above = r["input"] >= r["threshold"]
    return not above if VARIANTS[v["name"]].search.get("direction") == "raise" else above


def variant_summary(rows: list[dict], name: str) -> dict:
    out: dict = {}
    for group, rs in groups(rows).items():
        have = [(r, {**r["variants"][name], "name": name}) for r in rs if name in r.get("variants", {})]
        if not have:
            continue
        vs = [v for _, v in have]
        d = {
            "n": len(vs),
            "seconds": mean_se([v["seconds"] for v in vs]),
            "cf": mean_se([v["cf"] for v in vs]),
            "detected": sum(_detected(r, v) for r, v in have),
            "valid_if_detected": _flag_rate([v["valid"] for r, v in have if _detected(r, v)]),
            "proximity_hu": mean_se([v["proximity_hu"] for v in vs]),
            "concentration": mean_se([v["concentration"] for v in vs]),
            "cout": mean_se([v["cout"] for v in vs]),
            "outside_hu": mean_se([v.get("outside_hu") for v in vs]),
            "finding_change_hu": mean_se([v.get("finding_change_hu") for v in vs]),
            "discontinuity_inside_hu": mean_se([v["discontinuity"]["adjacent_abs_delta_hu_inside_chunks"] for v in vs]),
            "discontinuity_borders_hu": mean_se([v["discontinuity"]["adjacent_abs_delta_hu_at_borders"] for v in vs]),
        }
        for which in ("loc_heatmap", "loc_change"):
            locs = [v[which] for v in vs if which in v]
            d[which] = {k: mean_se([float(x[k]) for x in locs]) for k in LOC_KEYS}
        regions = [v["region"] for v in vs if "region" in v]
        if regions:
            d["region_lowered"] = _flag_rate([x["prediction_after"] < x["prediction_before"] for x in regions])
            d["region_outside_hu"] = mean_se([x["mean_abs_hu_outside"] for x in regions])
        out[group] = d
    return out


def baselines(rows: list[dict]) -> dict:
    """captum's maps per group, for the trade-off table's comparison."""
    out: dict = {}
    for group, rs in groups(rows).items():
        locs = [r["localization"] for r in rs if r.get("localization")]
        out[group] = {
            m: {k: mean_se([float(x[m][k]) for x in locs]) for k in LOC_KEYS}
            for m in METHODS
            if any(m in x for x in locs)
        }
    return out


def sanity(rows: list[dict]) -> dict:
    checked = [r["sanity"] for r in rows if r.get("sanity")]
    if not checked:
        return {"n_volumes": 0}
    out: dict = {"n_volumes": len(checked), "variant": checked[0].get("variant")}
    for key in ("spearman_heatmap", "spearman_change", "spearman_saliency"):
        values = [c.get(key) for c in checked if key in c]
        out[key] = mean_se(values)
        out[f"{key}_constant"] = sum(v is None for v in values)
    rand = [c["random_loc_heatmap"]["share_in_dilated"] for c in checked if "random_loc_heatmap" in c]
    out["random_heatmap_share_in_dilated"] = mean_se(rand)
    out["random_input"] = mean_se([c.get("random_input") for c in checked])
    return out


def summarize_variants(rows: list[dict], names: tuple[str, ...]) -> dict:
    return {
        "variants": {n: variant_summary(rows, n) for n in names},
        "baselines": baselines(rows),
        "sanity": sanity(rows),
    }
