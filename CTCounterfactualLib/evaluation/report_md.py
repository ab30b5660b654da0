"""``report.md``: the seven parts of the evaluation as Markdown tables (mean ± SE, n, p-values)."""

from __future__ import annotations

from CTCounterfactualLib.evaluation.report_fmt import fmt, fmt_p, n_of
from CTCounterfactualLib.evaluation.report_variants import render_variants
from CTCounterfactualLib.evaluation.saliency import METHODS
from CTCounterfactualLib.evaluation.settings import WHOLE

FIGURES = {
    "sweep": "fig5a_chunk_sweep.png",
    "distributions": "fig5b_distributions.png",
    "localization": "localization.png",
    "saliency": "saliency.png",
    "lungsize": "lungsize.png",
    "identity": "identity.png",
    "variants": "variants.png",
}


def _table1(s: dict) -> list[str]:
    t = s["table1"]
    rows, tests = t["rows"], t["tests"]
    out = [
        f"## 2. Table 1 analog (chunk size {t['chunk_size']}, CF = minimum prediction over chunks)"
        if not t.get("cf_from")
        else f"## 2. Table 1 analog (CF = the `{t['cf_from']}` variant's, minimum over its sweep)",
        "",
        "| group | model prediction (mean ± SE) | n |",
        "|---|---:|---:|",
    ]
    names = {
        "positives:input": "Positive examples",
        "negatives:input": "Negative examples",
        "positives:cf": "CFs for positive examples",
        "negatives:cf": "CFs for negative examples",
        "positives:reconstruction": "D(E(x)) of positive examples",
        "negatives:reconstruction": "D(E(x)) of negative examples",
    }
    for key, name in names.items():
        out.append(f"| {name} | {fmt(rows[key])} | {n_of(rows[key])} |")
    named = [
        ("positives vs their CFs (Wilcoxon signed-rank)", "positives_input_vs_cf"),
        ("D(E(x)) of positives vs their CFs (Wilcoxon signed-rank)", "positives_reconstruction_vs_cf"),
        ("negatives vs their CFs (Wilcoxon signed-rank)", "negatives_input_vs_cf"),
        ("positives vs negatives (Mann-Whitney U)", "positives_vs_negatives_input"),
        ("CFs of positives vs negatives (Mann-Whitney U)", "positives_cf_vs_negatives_input"),
    ]
    out += ["", "| test | statistic | n | p |", "|---|---:|---:|---:|"]
    for name, key in named:
        test = tests[key]
        stat = "–" if test["statistic"] is None else f"{test['statistic']:g}"
        if test.get("auc") is not None:
            stat += f" (AUC {test['auc']:.3f})"
        n = "+".join(map(str, test["n"])) if isinstance(test["n"], list) else str(test["n"])
        out.append(f"| {name} | {stat} | {n} | {fmt_p(test)} ({test.get('method', '')}) |")
    out += [
        "",
        f"Positives the classifier detects (input ≥ {t['threshold']:.3f}): {t['positives_detected']}; of those, the CF "
        f"falls below the threshold in {fmt(t['flipped_below_threshold'], 1, pct=True)} "
        f"(n = {n_of(t['flipped_below_threshold'])}). Negatives flagged positive: {t['negatives_flagged']}.",
        "",
    ]
    return out


def _by_ct(s: dict) -> list[str]:
    """Table 1 per source CT of a real-CT cohort (nothing for phantoms or a CSV cohort)."""
    cts = s.get("by_ct") or {}
    if not cts:
        return []
    out = [
        "By source CT (each CT's positives against the same CT without fluid):",
        "",
        "| CT | positives | its CT without fluid | positives above it | CFs of positives (chunk) | CFs (joint) "
        "| detected → CF below threshold |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path, d in cts.items():
        out.append(
            f"| `{path}` | {fmt(d['positives'])} (n = {n_of(d['positives'])}) | {fmt(d['negatives'])} | "
            f"{fmt(d['above_every_negative'], 0, pct=True)} | {fmt(d['cf'])} | {fmt(d['cf_joint'])} | "
            f"{d['positives_detected']} → {fmt(d['flipped_below_threshold'], 0, pct=True)} |"
        )
    return out + [""]


def _sweep(s: dict) -> list[str]:
    if not s["sweep"]:
        return ["## 3. Chunk-size sweep", "", "Not run (`--chunk-sizes none`).", ""]
    out = [
        "## 3. Chunk-size sweep (paper Fig. 5A) and distributions (Fig. 5B)",
        "",
        "| chunk size | chunks | positives: CF | reduction from input | from D(E(x)) | CF < threshold | "
        "negatives: CF | reduction from input | s / run |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry, v in s["sweep"].items():
        p, n = v["positives"], v["negatives"]
        label = f"{entry} (whole range)" if entry in WHOLE else entry
        out.append(
            f"| {label} | {fmt(p['n_chunks'] if p['n_chunks']['n'] else n['n_chunks'], 1)} | {fmt(p['cf_min'])} | "
            f"{fmt(p['reduction_from_input'])} | {fmt(p['reduction_from_reconstruction'])} | "
            f"{fmt(p['below_threshold_if_detected'], 0, pct=True)} | {fmt(n['cf_min'])} | "
            f"{fmt(n['reduction_from_input'])} | {fmt(p['seconds'] if p['seconds']['n'] else n['seconds'], 1)} |"
        )
    out += [
        "",
        "Reduction = prediction of the input (or of D(E(x))) minus the CF's (minimum over chunks and sweep frames); "
        "'CF < threshold' counts detected positives only. In this engine a scan with one chunk over the whole range "
        "is the joint mode (same gradient, same search), so `all` and `joint` are one computation; chunk sizes above "
        "the number of slices are capped at it.",
        "",
        f"![chunk sweep]({FIGURES['sweep']})",
        "",
        f"![distributions]({FIGURES['distributions']})",
        "",
    ]
    return out


def _loc_row(name: str, d: dict) -> str:
    return (
        f"| {name} | {fmt(d['share_in_mask'], 1, pct=True)} | {fmt(d['share_in_dilated'], 1, pct=True)} | "
        f"{fmt(d['pointing_hit'], 0, pct=True)} | {fmt(d['top_chunk_overlaps'], 0, pct=True)} | "
        f"{n_of(d['share_in_mask'])} |"
    )


HEADER = [
    "| map | mass in finding | within 5 mm | pointing game | top chunk on finding | n |",
    "|---|---:|---:|---:|---:|---:|",
]


def _latent_shift_maps(loc: dict) -> list[str]:
    return [m for m, v in loc.items() if isinstance(v, dict) and "share_in_mask" in v and m not in METHODS]


def _localization(s: dict) -> list[str]:
    loc = s["localization"]
    out = ["## 4. Localization (paper Fig. 3B, measured against the effusions' masks)", ""]
    if not loc["n_volumes"]:
        return out + ["No volume has a finding mask: nothing to measure.", ""]
    out += HEADER
    for m in _latent_shift_maps(loc):
        out.append(_loc_row(m, loc[m]))
    out += [
        "",
        "LatentShift scan / joint: the reference runs of part 3 (raw-gradient lambda, decoded CF); `<variant> "
        "heatmap` / `<variant> change`: a search variant's heatmap.nrrd and |CF − input| (part 8). "
        f"Chance level: the 5 mm mask is {fmt(loc['chance_share_dilated'], 1, pct=True)} of the body. Pointing game: "
        "the map's maximum inside the body lies within 5 mm of the finding. Top chunk: for the scan, the chunk whose "
        "CF has the lowest prediction (the engine's output chunk); for every other map, the chunk with the most map "
        "mass.",
        "",
        f"![localization]({FIGURES['localization']})",
        "",
    ]
    return out


def _saliency(s: dict, example_name: str | None) -> list[str]:
    loc = s["localization"]
    out = ["## 6. Saliency baselines (paper Fig. 4), scored like the CF heatmap", ""]
    if not loc["n_volumes"] or not any(m in loc for m in METHODS):
        return out + ["Not computed (no volume with a finding mask).", ""]
    out += HEADER
    for m in [*_latent_shift_maps(loc), *METHODS]:
        if m in loc:
            out.append(_loc_row(m, loc[m]))
    out += [
        "",
        "captum on the input volume (window clipped, as the engine scores inputs): Saliency = |gradient|, "
        "InputXGradient, GuidedBackprop (the guided rule applied at the classifier's SiLU activations), Grad-CAM on "
        "the last 3×3×3 convolution (upsampled trilinearly to the classifier's input, then through the inverse of "
        "its input convention); absolute values. Latent Shift rows repeated from part 4.",
        "",
    ]
    if example_name:
        out += [f"![saliency]({FIGURES['saliency']})", ""]
    return out


def _lungsize(s: dict) -> list[str]:
    ls = s["lungsize"]
    out = ["## 5. Lung size (paper Fig. 2)", ""]
    if not ls["n_volumes"]:
        return out + ["Not computed.", ""]
    t = ls["test_reconstruction_vs_cf_ml"]
    out += [
        "Target 'lung size' (1 − mean P(no lung) of the bundled 2D lung segmentation net), explained in joint mode; "
        "every sweep frame segmented with the same net (P(lung) > 0.5).",
        "",
        "| | input | D(E(x)) | CF | n |",
        "|---|---:|---:|---:|---:|",
        f"| target value | {fmt(ls['input_target'])} | {fmt(ls['reconstruction_target'])} | {fmt(ls['cf_target'])} | "
        f"{ls['n_volumes']} |",
        f"| segmented lung (mL) | {fmt(ls['input_lung_ml'], 0)} | {fmt(ls['reconstruction_lung_ml'], 0)} | "
        f"{fmt(ls['cf_lung_ml'], 0)} | {ls['n_volumes']} |",
        "",
        f"Lung volume change CF vs D(E(x)): {fmt(ls['relative_change'], 1, pct=True)} (Wilcoxon {fmt_p(t)}); it fell "
        f"in {fmt(ls['volume_fell'], 0, pct=True)} of volumes and fell monotonically along the sweep in "
        f"{fmt(ls['monotone'], 0, pct=True)}. Search stops: "
        + ", ".join(f"{k}: {v}" for k, v in ls["stop_reasons"].items())
        + f". Largest |target recomputed − engine's sweep prediction|: {ls['max_engine_target_mismatch']:.2g}.",
        "",
        f"![lung size]({FIGURES['lungsize']})",
        "",
    ]
    return out


def _identity(s: dict) -> list[str]:
    ident = s["identity"]
    if not ident:
        return [
            "## 7. Identity preservation and slice-to-slice consistency",
            "",
            "Reference runs not made (`--chunk-sizes none`); each variant's change outside the fluid and across "
            "slices is in part 8.",
            "",
        ]
    out = [
        "## 7. Identity preservation and slice-to-slice consistency",
        "",
        "| | " + " | ".join(ident) + " |",
        "|---|" + "---:|" * len(ident),
    ]
    rows = [
        (
            "scan CF: mean abs(CF − D(E(x))) outside the 5 mm mask, on the CF's slices (HU)",
            "scan:mean_abs_hu_outside_dilated",
        ),
        ("scan CF: same, inside the finding (HU)", "scan:mean_abs_hu_inside_mask"),
        ("joint CF: outside the 5 mm mask, all slices (HU)", "joint:mean_abs_hu_outside_dilated"),
        ("joint CF: inside the finding (HU)", "joint:mean_abs_hu_inside_mask"),
        ("for scale: abs(D(E(x)) − input) outside the 5 mm mask (HU)", "reconstruction_error_outside_dilated"),
        (
            "composite of all scan chunks' CFs: adjacent-slice abs(Δ) of CF − D(E(x)) at chunk borders (HU)",
            "composite:at_borders",
        ),
        ("composite: same, inside chunks (HU)", "composite:inside_chunks"),
        ("joint CF: same slice pairs as the borders (HU)", "joint:at_borders"),
        ("joint CF: inside (HU)", "joint:inside_chunks"),
        ("prediction of the composite CF", "composite_prediction"),
        ("prediction of the scan CF (one chunk moved)", "cf_min_prediction"),
    ]
    for name, key in rows:
        out.append(
            f"| {name} | " + " | ".join(f"{fmt(ident[g][key], 2)} (n={n_of(ident[g][key])})" for g in ident) + " |"
        )
    tests = [
        ("composite: borders vs inside (Wilcoxon)", "composite:borders_vs_inside_test"),
        ("joint: border pairs vs inside (Wilcoxon)", "joint:borders_vs_inside_test"),
        ("scan CF: inside finding vs outside 5 mm (Wilcoxon)", "scan:inside_vs_outside_test"),
    ]
    for name, key in tests:
        out.append(f"| {name} | " + " | ".join(fmt_p(ident[g][key]) if key in ident[g] else "–" for g in ident) + " |")
    worst = max(ident[g]["composite_matches_engine_max_abs_hu"] for g in ident)
    out += [
        "",
        "The composite puts every scan chunk's CF into one volume (the paper's 'combining CF chunks' case); its "
        f"chosen chunk matches the engine's CF to {worst:.2g} HU.",
        "",
        f"![identity]({FIGURES['identity']})",
        "",
    ]
    return out


def render(meta: dict, summary: dict) -> str:
    """The whole report."""
    c = meta["cohort"]
    models = ", ".join(f"`{m['name']}` ({m['sha256'][:12]})" for m in meta["models"].values())
    lines = [
        "# ctcf evaluate: counterfactual explanations on a cohort",
        "",
        f"Command: `{meta['command']}`",
        "",
        "## 1. Cohort",
        "",
        f"{c['description']}. Models: {models}. Workers: {meta['workers']}; "
        f"{meta['elapsed_s']:.0f} s wall time, {fmt(summary['seconds_per_volume'], 1)} s per volume "
        f"(one thread each). ctcf {meta['ctcf_version']}, torch {meta['torch_version']}.",
        "",
        "Every number below comes from this run; per-volume rows are in `volumes.csv`, `sweep.csv`, "
        "`localization.csv`, `lungsize.csv`, all numbers and seeds in `evaluation.json`. "
        "Mean ± standard error (SD/√n).",
        "",
    ]
    lines += _table1(summary)
    lines += _by_ct(summary)
    lines += _sweep(summary)
    lines += _localization(summary)
    lines += _lungsize(summary)
    lines += _saliency(summary, meta.get("example"))
    lines += _identity(summary)
    lines += render_variants(meta, summary)
    return "\n".join(lines) + "\n"
