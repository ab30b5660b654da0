"""Per-volume rows -> the report's numbers: mean +- SE with n, rates and paired tests."""

from __future__ import annotations

import numpy as np

from CTCounterfactualLib.evaluation.aggregate_variants import summarize_variants
from CTCounterfactualLib.evaluation.saliency import METHODS
from CTCounterfactualLib.evaluation.stats import mann_whitney, mean_se, wilcoxon_signed_rank

MAP_METHODS = ("LatentShift scan", "LatentShift joint", *METHODS)  # the reference runs' maps and captum's
LOC_METRICS = ("share_in_mask", "share_in_dilated", "pointing_hit", "top_chunk_overlaps")


def _by_label(rows: list[dict]) -> dict[str, list[dict]]:
    return {"positives": [r for r in rows if r["label"] == 1], "negatives": [r for r in rows if r["label"] == 0]}


def _rate(flags: list[bool]) -> dict:
    return mean_se([float(f) for f in flags])


def table1(rows: list[dict], chunk_size: int) -> dict:
    """Predictions of inputs, reconstructions and CFs (minimum over chunks) per label, with tests."""
    g = _by_label(rows)
    pos, neg = g["positives"], g["negatives"]
    out: dict = {"chunk_size": chunk_size, "rows": {}}
    for label, rs in g.items():
        for what in ("input", "reconstruction", "cf"):
            out["rows"][f"{label}:{what}"] = mean_se([r[what] for r in rs])
    thr = rows[0]["threshold"]
    out["threshold"] = thr
    out["tests"] = {
        "positives_input_vs_cf": wilcoxon_signed_rank([r["input"] for r in pos], [r["cf"] for r in pos]),
        "positives_reconstruction_vs_cf": wilcoxon_signed_rank(
            [r["reconstruction"] for r in pos], [r["cf"] for r in pos]
        ),
        "negatives_input_vs_cf": wilcoxon_signed_rank([r["input"] for r in neg], [r["cf"] for r in neg]),
        "positives_vs_negatives_input": mann_whitney([r["input"] for r in pos], [r["input"] for r in neg]),
        "positives_cf_vs_negatives_input": mann_whitney([r["cf"] for r in pos], [r["input"] for r in neg]),
    }
    detected = [r for r in pos if r["input"] >= thr]
    out["positives_detected"] = len(detected)
    out["flipped_below_threshold"] = _rate([r["cf"] < thr for r in detected])
    out["negatives_flagged"] = sum(r["input"] >= thr for r in neg)
    return out


def sweep(rows: list[dict], entries: list[str]) -> dict:
    """Per sweep entry and label: CF prediction, reduction from the input and from D(E(x)), flip rate."""
    out: dict = {}
    for entry in entries:
        out[entry] = {}
        for label, rs in _by_label(rows).items():
            s = [r["sweep"][entry] for r in rs]
            detected = [(r, x) for r, x in zip(rs, s, strict=True) if r["input"] >= r["threshold"]]
            out[entry][label] = {
                "cf_min": mean_se([x["cf_min"] for x in s]),
                "reduction_from_input": mean_se([r["input"] - x["cf_min"] for r, x in zip(rs, s, strict=True)]),
                "reduction_from_reconstruction": mean_se([x["reconstruction"] - x["cf_min"] for x in s]),
                "below_threshold_if_detected": _rate([x["cf_min"] < r["threshold"] for r, x in detected]),
                "chunk_size": mean_se([x["chunk_size"] for x in s]),
                "n_chunks": mean_se([x["n_chunks"] for x in s]),
                "seconds": mean_se([x["seconds"] for x in s]),
            }
    return out


def map_names(rows: list[dict]) -> list[str]:
    """Every map scored against the masks, in the order the volumes list them."""
    return list(dict.fromkeys(m for r in rows for m in (r.get("localization") or {})))


def localization(rows: list[dict]) -> dict:
    with_mask = [r for r in rows if r.get("localization")]
    out: dict = {"n_volumes": len(with_mask)}
    if not with_mask:
        return out
    out["chance_share_dilated"] = mean_se(
        [next(iter(r["localization"].values()))["chance_share_dilated"] for r in with_mask]
    )
    for method in map_names(rows):
        have = [r["localization"][method] for r in with_mask if method in r["localization"]]
        out[method] = {m: mean_se([float(h[m]) for h in have]) for m in LOC_METRICS}
    return out


def identity(rows: list[dict]) -> dict:
    out: dict = {}
    for label, rs in _by_label(rows).items():
        ids = [r["identity"] for r in rs if r.get("identity")]
        if not ids:
            continue
        d = {
            f"{mode}:{k}": mean_se([i[mode][k] for i in ids])
            for mode in ("scan", "joint")
            for k in ("mean_abs_hu_outside_dilated", "mean_abs_hu_inside_mask")
        }
        d["reconstruction_error_outside_dilated"] = mean_se([i["reconstruction_error_outside_dilated"] for i in ids])
        d["composite_prediction"] = mean_se([i["composite_prediction"] for i in ids])
        d["cf_min_prediction"] = mean_se([r["cf"] for r in rs])
        d["composite_matches_engine_max_abs_hu"] = float(max(i["composite_matches_engine_max_abs_hu"] for i in ids))
        for which in ("composite", "joint"):
            c = [i[f"consistency_{which}"] for i in ids]
            b = [x["adjacent_abs_delta_hu_at_borders"] for x in c]
            n = [x["adjacent_abs_delta_hu_inside_chunks"] for x in c]
            d[f"{which}:at_borders"] = mean_se(b)
            d[f"{which}:inside_chunks"] = mean_se(n)
            pairs = [(x, y) for x, y in zip(b, n, strict=True) if x is not None and y is not None]
            d[f"{which}:borders_vs_inside_test"] = wilcoxon_signed_rank([p[0] for p in pairs], [p[1] for p in pairs])
        inside = [i["scan"]["mean_abs_hu_inside_mask"] for i in ids]
        outside = [i["scan"]["mean_abs_hu_outside_dilated"] for i in ids]
        pairs = [(x, y) for x, y in zip(inside, outside, strict=True) if x is not None and y is not None]
        if pairs:
            d["scan:inside_vs_outside_test"] = wilcoxon_signed_rank([p[0] for p in pairs], [p[1] for p in pairs])
        out[label] = d
    return out


def lungsize(rows: list[dict]) -> dict:
    ls = [r["lungsize"] for r in rows if r.get("lungsize")]
    out: dict = {"n_volumes": len(ls)}
    if not ls:
        return out
    cf_ml = np.array([x["sweep_lung_ml"][0] for x in ls])
    rec_ml = np.array([x["sweep_lung_ml"][-1] for x in ls])
    out["input_lung_ml"] = mean_se([x["input_lung_ml"] for x in ls])
    out["reconstruction_lung_ml"] = mean_se(rec_ml)
    out["cf_lung_ml"] = mean_se(cf_ml)
    out["relative_change"] = mean_se((cf_ml - rec_ml) / np.maximum(rec_ml, 1e-9))
    out["reconstruction_target"] = mean_se([x["sweep_targets"][-1] for x in ls])
    out["cf_target"] = mean_se([x["sweep_targets"][0] for x in ls])
    out["input_target"] = mean_se([x["input_target"] for x in ls])
    out["volume_fell"] = _rate([c < r for c, r in zip(cf_ml, rec_ml, strict=True)])
    # monotone: the lung volume never rises as lambda moves away from 0 (frames run CF -> D(E(x)))
    out["monotone"] = _rate(
        [all(a <= b for a, b in zip(x["sweep_lung_ml"], x["sweep_lung_ml"][1:], strict=False)) for x in ls]
    )
    out["test_reconstruction_vs_cf_ml"] = wilcoxon_signed_rank(rec_ml, cf_ml)
    out["stop_reasons"] = {}
    for x in ls:
        out["stop_reasons"][x["stop_reason"]] = out["stop_reasons"].get(x["stop_reason"], 0) + 1
    frames = np.array([x["sweep_lung_ml"] for x in ls]) / rec_ml[:, None]
    out["relative_ml_per_frame"] = [mean_se(frames[:, i]) for i in range(frames.shape[1])]
    out["max_engine_target_mismatch"] = float(
        max(max(abs(a - b) for a, b in zip(x["sweep_targets"], x["engine_sweep_targets"], strict=True)) for x in ls)
    )
    return out


def by_ct(rows: list[dict]) -> dict:
    """A real-CT cohort per source CT: its positives, its CT without fluid and the CFs (empty for other cohorts).

    A classifier can separate fluid on the patient it was trained on and not on another; the pooled Table 1
    hides that, this shows it.
    """
    real = [r for r in rows if r.get("source") == "real"]
    out: dict = {}
    for path in dict.fromkeys(r["path"] for r in real):
        g = _by_label([r for r in real if r["path"] == path])
        pos, neg = g["positives"], g["negatives"]
        detected = [r for r in pos if r["input"] >= r["threshold"]]
        out[path] = {
            "positives": mean_se([r["input"] for r in pos]),
            "negatives": mean_se([r["input"] for r in neg]),
            "cf": mean_se([r["cf"] for r in pos]),
            "cf_joint": mean_se([r["cf_joint"] for r in pos]),
            "above_every_negative": _rate([all(p["input"] > n["input"] for n in neg) for p in pos]) if neg else None,
            "positives_detected": len(detected),
            "flipped_below_threshold": _rate([r["cf"] < r["threshold"] for r in detected]),
        }
    return out


def summarize(rows: list[dict], chunk_size: int, entries: list[str], variants: tuple[str, ...] = ()) -> dict:
    return {
        **summarize_variants(rows, variants),
        "table1": table1(rows, chunk_size),
        "by_ct": by_ct(rows),
        "sweep": sweep(rows, entries),
        "localization": localization(rows),
        "identity": identity(rows),
        "lungsize": lungsize(rows),
        "seconds_per_volume": mean_se([r["seconds"] for r in rows]),
    }
