"""``report.md``'s parts on the search variants: per-variant tables, the trade-off table with the targets, and the
model-randomization check."""

from __future__ import annotations

from CTCounterfactualLib.evaluation.report_fmt import fmt
from CTCounterfactualLib.evaluation.variants import describe

TARGETS = {
    "valid": 0.90,  # CF below the threshold, share of detected positives
    "near": 0.40,  # heatmap mass within 5 mm of the finding
    "baseline_factor": 2.0,  # ... and this many times the best captum map's
    "pointing": 0.90,
    "outside_hu": 10.0,  # mean |CF - input| outside 5 mm on the CF's slices
    "darken_hu": -150.0,  # mean CF - input inside the finding
}


def _pct(d: dict | None) -> str:
    return fmt(d, 0, pct=True)


def _variant_tables(s: dict) -> list[str]:
    out = []
    for group in dict.fromkeys(g for v in s["variants"].values() for g in v):
        out += [
            f"**{group}**",
            "",
            "| variant | n | CF | CF past threshold (detected) | heatmap ≤ 5 mm | pointing | change ≤ 5 mm | "
            "change pointing | COUT | proximity (HU) | top-1 % share | outside 5 mm (HU) | in finding (HU) | "
            "adjacent-slice Δ in / at edges (HU) | s / run |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for name, by_group in s["variants"].items():
            d = by_group.get(group)
            if not d:
                continue
            h, c = d["loc_heatmap"], d["loc_change"]
            out.append(
                f"| `{name}` | {d['n']} | {fmt(d['cf'])} | {_pct(d['valid_if_detected'])} "
                f"(n = {d['valid_if_detected']['n']}) | {fmt(h['share_in_dilated'], 1, pct=True)} | "
                f"{_pct(h['pointing_hit'])} | {fmt(c['share_in_dilated'], 1, pct=True)} | {_pct(c['pointing_hit'])} | "
                f"{fmt(d['cout'], 2)} | {fmt(d['proximity_hu'], 1)} | {_pct(d['concentration'])} | "
                f"{fmt(d['outside_hu'], 1)} | {fmt(d['finding_change_hu'], 0)} | "
                f"{fmt(d['discontinuity_inside_hu'], 1)} / {fmt(d['discontinuity_borders_hu'], 1)} | "
                f"{fmt(d['seconds'], 0)} |"
            )
        out.append("")
    return out


def _regions(s: dict) -> list[str]:
    """'Is the evidence here?': the region variants beside the unrestricted ones, on the positives."""
    rows = [(n, g["positives"]) for n, g in s["variants"].items() if "positives" in g]
    if not any("region_lowered" in d for _, d in rows):
        return []
    out = [
        "Is the evidence in a region? The CF restricted to the fluid (dilated 5 mm) or to its left-right mirror, "
        "beside the unrestricted variants (positives):",
        "",
        "| variant | CF | past threshold (detected) | lowered at all | change outside the region (HU) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, d in rows:
        lowered = _pct(d["region_lowered"]) if "region_lowered" in d else "–"
        outside = fmt(d["region_outside_hu"], 1) if "region_outside_hu" in d else "–"
        out.append(f"| `{name}` | {fmt(d['cf'])} | {_pct(d['valid_if_detected'])} | {lowered} | {outside} |")
    return out + [""]


def _best_baseline(baselines: dict) -> tuple[str, float | None, float | None]:
    if not baselines:
        return "–", None, None
    name, d = max(baselines.items(), key=lambda kv: kv[1]["share_in_dilated"]["mean"] or 0.0)
    return name, d["share_in_dilated"]["mean"], d["pointing_hit"]["mean"]


def _tradeoff(s: dict) -> list[str]:
    out = []
    for group in dict.fromkeys(g for v in s["variants"].values() for g in v):
        if group == "negatives":
            continue
        base, base_near, base_point = _best_baseline(s["baselines"].get(group, {}))
        out += [
            f"**{group}** (best captum map by mass within 5 mm: {base}, "
            f"{'–' if base_near is None else f'{base_near:.1%}'} within 5 mm, pointing "
            f"{'–' if base_point is None else f'{base_point:.0%}'})",
            "",
            "| variant | validity (≥ 90 %) | heatmap ≤ 5 mm (≥ 40 %, ≥ 2× captum) | pointing (≥ 90 %) | "
            "outside 5 mm (≤ 10 HU) | fluid change (≤ −150 HU) | s / run |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, by_group in s["variants"].items():
            d = by_group.get(group)
            if not d or not d["loc_heatmap"]["share_in_dilated"]["n"]:
                continue
            near = d["loc_heatmap"]["share_in_dilated"]["mean"]
            ratio = f", {near / base_near:.1f}× captum" if base_near else ""
            out.append(
                f"| `{name}` | {_mark(d['valid_if_detected'], TARGETS['valid'])} | "
                f"{_mark(d['loc_heatmap']['share_in_dilated'], TARGETS['near'], digits=1)}{ratio} | "
                f"{_mark(d['loc_heatmap']['pointing_hit'], TARGETS['pointing'])} | "
                f"{_mark(d['outside_hu'], TARGETS['outside_hu'], below=True)} | "
                f"{_mark(d['finding_change_hu'], TARGETS['darken_hu'], below=True)} | {fmt(d['seconds'], 0)} |"
            )
        out.append("")
    return out


def _mark(d: dict | None, target: float, below: bool = False, digits: int = 0) -> str:
    """The value with ✓ when it meets ``target`` (at least; at most with ``below``)."""
    if not d or d.get("mean") is None:
        return "–"
    pct = not below
    text = fmt(d, digits if pct else 1, pct=pct)
    met = d["mean"] <= target if below else d["mean"] >= target
    return f"{text} {'✓' if met else '✗'}"


def _sanity(s: dict) -> list[str]:
    c = s["sanity"]
    out = ["## 10. Sanity check: randomized classifier (Adebayo et al., NeurIPS 2018)", ""]
    if not c["n_volumes"]:
        return out + ["Not run (`--sanity-volumes 0`).", ""]
    out += [
        f"Every weight of a copy of the classifier redrawn at random (each tensor's mean and spread, all layers); "
        f"{c['n_volumes']} positives. Spearman rank correlation of |map| over the body, trained vs randomized "
        "(1 = the map ignores what the classifier learned; a map that became zero counts as changed):",
        "",
        "| map | Spearman ρ | randomized map zero |",
        "|---|---:|---:|",
        f"| `{c['variant']}` heatmap | {fmt(c['spearman_heatmap'], 2)} | {c['spearman_heatmap_constant']} |",
        f"| `{c['variant']}` change (CF − input) | {fmt(c['spearman_change'], 2)} | {c['spearman_change_constant']} |",
        f"| captum Saliency | {fmt(c['spearman_saliency'], 2)} | {c['spearman_saliency_constant']} |",
        "",
        f"The randomized classifier's prediction of the inputs: {fmt(c['random_input'])}; its heatmap puts "
        f"{fmt(c['random_heatmap_share_in_dilated'], 1, pct=True)} of its mass within 5 mm of the fluid.",
        "",
    ]
    return out


def render_variants(meta: dict, s: dict) -> list[str]:
    if not s.get("variants"):
        return []
    names = list(s["variants"])
    out = ["## 8. Search variants, measured on the volume the user gets", ""]
    out += [f"- {describe(n)}" for n in names]
    steps = meta.get("settings", {}).get("sweep_steps")
    if steps is not None:
        out += [
            "",
            f"Every variant ran with `--lambda-sweep-steps {steps}` (the engine's default is 10): the heatmap is "
            "built from that many sweep frames, and the times below leave out the default sweep's extra decodes.",
        ]
    out += [
        "",
        "CF: the written counterfactual's prediction. Past threshold: below it (above it for `raise`), among the "
        "inputs the classifier calls positive (negative for `raise`). Heatmap: heatmap.nrrd; change: |CF − input|. "
        "≤ 5 mm: share of the map's mass within 5 mm of the fluid (mass outside the body counts in the total); "
        "pointing: the map's maximum in the body lies there. COUT: Khorram & Fuxin's transition score, the CF's "
        "voxels inserted into the input by |CF − input|, 50 steps, in [−1, 1]. Proximity: mean |CF − input| in the "
        "body on the CF's slices; top-1 % share: how much of that change its top 1 % of voxels carry. Outside 5 mm: "
        "mean |CF − input| in the body beyond 5 mm of the fluid on the CF's slices; in finding: mean CF − input "
        "inside the fluid (negative = darker). Adjacent-slice Δ: mean |change(k+1) − change(k)| in the body, inside "
        "the CF's slices / across their edges. s / run: wall time of `explain` (one thread).",
        "",
    ]
    out += _variant_tables(s)
    out += _regions(s)
    if meta.get("variant_figure"):
        out += [f"![variants]({meta['variant_figure']})", ""]
    out += ["## 9. Trade-off and targets", "", "✓ / ✗: the target in the column's header met or not.", ""]
    out += _tradeoff(s)
    out += _sanity(s)
    return out
