"""The per-run numbers of summary.json's "metrics" in words, for the CLI's result and the Slicer results box
(torch-free: the module imports it)."""

from __future__ import annotations


def validity_text(metrics: dict, direction: str = "lower") -> str:
    """'valid: below the threshold 0.531' / 'not valid: ...' / '' for an output without a threshold."""
    threshold, valid = metrics.get("threshold"), metrics.get("valid")
    if threshold is None or valid is None:
        return ""
    side = "at or above" if direction == "raise" else "below"
    verdict = "valid" if valid else "NOT valid"
    return f"{verdict}: the counterfactual is {'' if valid else 'not '}{side} the threshold {threshold:.3f}"


def metrics_lines(summary: dict) -> list[str]:
    """Validity, proximity and concentration of the written CF; with a region, what changing it did."""
    m = summary.get("metrics")
    if not m:
        return []
    direction = summary.get("direction", "lower")
    parts = [validity_text(m, direction)]
    if m.get("proximity_hu") is not None:
        parts.append(f"mean change in the body on its slices {m['proximity_hu']:.1f} HU")
    if m.get("concentration_top1pct") is not None:
        parts.append(f"its top 1 % of voxels carry {m['concentration_top1pct']:.0%} of the change")
    lines = ["; ".join(p for p in parts if p)]
    region = m.get("region")
    if region:
        lines.append(region_text(region, m, direction))
    return [line for line in lines if line]


def region_text(region: dict, metrics: dict, direction: str = "lower") -> str:
    """Whether changing only the region moved the prediction, plainly."""
    before, after = region["prediction_before"], region["prediction_after"]
    moved = after > before if direction == "raise" else after < before
    verb = "raises" if direction == "raise" else "lowers"
    if not moved:
        return (
            f"region: changing only the region does not {verb[:-1]} the prediction ({before:.3f} -> {after:.3f}); "
            "the classifier's evidence is not in the region alone"
        )
    crossed = metrics.get("valid")
    tail = "" if crossed is None else (", across the threshold" if crossed else ", not across the threshold")
    outside = region["mean_abs_hu_outside"]
    return (
        f"region: changing only the region {verb} the prediction from {before:.3f} to {after:.3f}{tail} "
        f"(mean change outside it on the CF's slices {outside:.1f} HU)"
    )
