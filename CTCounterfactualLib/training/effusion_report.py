"""The effusion classifier's held-out report: leave-one-patient-out and leave-one-family-out tables in Markdown, and
the compact summary its catalog entry carries."""

from __future__ import annotations

from CTCounterfactualLib.data.effusion import FAMILIES

TARGET_AUC = 0.95
TARGET_SPECIFICITY = 0.90
TARGET_SENSITIVITY_100ML = 0.90


def _f(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f} %"


def targets(lopo: list[dict]) -> dict:
    """Which held-out targets every patient meets: AUC, specificity under acquisitions, sensitivity at >= 100 ml."""
    return {
        "auc_min": min(r["auc"] for r in lopo),
        "specificity_min": min(r["specificity"] for r in lopo),
        "sensitivity_100ml_min": min(r["sensitivity_100ml"] for r in lopo if r["sensitivity_100ml"] is not None),
        "auc_met": all(r["auc"] >= TARGET_AUC for r in lopo),
        "specificity_met": all(r["specificity"] >= TARGET_SPECIFICITY for r in lopo),
        "sensitivity_100ml_met": all(
            r["sensitivity_100ml"] is None or r["sensitivity_100ml"] >= TARGET_SENSITIVITY_100ML for r in lopo
        ),
    }


def compact(lopo: list[dict], lofo: list[dict]) -> dict:
    """What the catalog entry keeps: per held-out patient and per held-out family, the headline numbers."""
    keys = ("auc", "sensitivity", "sensitivity_100ml", "specificity", "threshold", "negative_native")
    out: dict = {"leave_one_patient_out": {r["patient"]: {k: r[k] for k in keys} for r in lopo}}
    out["leave_one_patient_out_per_family"] = {
        f: {r["patient"]: r["families"].get(f, {}).get("sensitivity") for r in lopo} for f in FAMILIES
    }
    if lofo:
        out["leave_one_family_out"] = {
            r["family"]: {
                "heldout_patient_sensitivity": (r["heldout"] or {}).get("sensitivity"),
                "heldout_patient_auc": (r["heldout"] or {}).get("auc"),
                "training_patients_sensitivity": (r["training_patients"] or {}).get("sensitivity"),
            }
            for r in lofo
        }
    if lopo:
        out["targets"] = targets(lopo)
    return out


def markdown(lopo: list[dict], lofo: list[dict], command: str, final: dict) -> str:
    """The report page: how it was measured, then one table per question."""
    lines = [
        "# The bundled effusion classifier on patients and fluid it never saw",
        "",
        f"Made by `{command}` (numbers below are this file's; the command rewrites it).",
        "",
        "Each fold trains on every patient but one, picks its threshold on new effusions of its own training",
        "patients (halfway between the 95th percentile of their CTs without fluid and the 5th percentile of their",
        "effusions of at least 100 ml, all under plausible acquisitions), then measures the patient it left out:",
        "its effusions of every family under an acquisition each (slice thickness 1-8 mm, field of view, kernel,",
        "noise), against its CT without fluid under as many acquisitions, partial coverage included (lower or",
        "upper chest only). Specificity is the share of those acquisitions of the CT without fluid that stay at or",
        "below the threshold.",
        "",
        "## Leave one patient out",
        "",
        "| held-out patient | AUC | sensitivity | >= 100 ml (n) | specificity | CT without fluid | threshold |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in lopo:
        lines.append(
            f"| {r['patient']} | {_f(r['auc'])} | {_pct(r['sensitivity'])} | {_pct(r['sensitivity_100ml'])} "
            f"({r['n_100ml']}) | {_pct(r['specificity'])} | {_f(r['negative_native'])} | {_f(r['threshold'])} |"
        )
    lines += ["", "Sensitivity per fluid family (held-out patient, its fold's threshold):", ""]
    lines += ["| held-out patient | " + " | ".join(FAMILIES) + " |", "|---|" + "---:|" * len(FAMILIES)]
    for r in lopo:
        cells = [_pct(r["families"].get(f, {}).get("sensitivity")) for f in FAMILIES]
        lines.append(f"| {r['patient']} | " + " | ".join(cells) + " |")
    if lopo:
        t = targets(lopo)
        met = lambda key: "met" if t[key] else "not met"  # noqa: E731
        lines += [
            "",
            f"Targets on every held-out patient: AUC >= {TARGET_AUC} **{met('auc_met')}** (lowest "
            f"{_f(t['auc_min'])}); specificity >= {TARGET_SPECIFICITY:.0%} **{met('specificity_met')}** (lowest "
            f"{_pct(t['specificity_min'])}); effusions of at least 100 ml detected >= {TARGET_SENSITIVITY_100ML:.0%} "
            f"**{met('sensitivity_100ml_met')}** (lowest {_pct(t['sensitivity_100ml_min'])}).",
        ]
    if lofo:
        lines += [
            "",
            "## Leave one fluid family out",
            "",
            f"Each fold trains on every patient but {lofo[0]['heldout_patient']} without one family, and measures",
            "that family on the held-out patient and, as new effusions, on the training patients (patients seen,",
            "shape not).",
            "",
            "| family left out | held-out patient: AUC | sensitivity | training patients: sensitivity | threshold |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in lofo:
            h, s = r["heldout"] or {}, r["training_patients"] or {}
            lines.append(
                f"| {r['family']} | {_f(h.get('auc'))} | {_pct(h.get('sensitivity'))} | "
                f"{_pct(s.get('sensitivity'))} | {_f(r['threshold'])} |"
            )
    lines += [
        "",
        "## The shipped model",
        "",
        f"The fold that leaves out {final['heldout']}: trained on {', '.join(final['patients'])}; threshold "
        f"{_f(final['threshold'])} by the same rule on their new effusions. {final['heldout']} stays unseen by the",
        "shipped classifier, so that the explanation evaluation has a patient it never saw.",
        "",
    ]
    return "\n".join(lines)
