"""Per-run quality numbers of a counterfactual, about the volumes the user gets (HU, full size).

- validity: the CF's prediction is on the other side of the classifier's threshold (below it; at or above it
  with ``--direction raise``); None for a regression output, which has no threshold;
- proximity: mean |CF - input| (HU) over the body on the CF's slices;
- concentration: the share of the total |CF - input| there that its top ``TOP_SHARE`` of voxels carry (the
  "top 1 %"): 1 % for a change spread evenly, 100 % for a change confined to 1 % of the voxels;
- region (with ``--region``): whether changing only the region moved the prediction across the threshold, and
  how much the CF changed outside it.
"""

from __future__ import annotations

import math

import numpy as np

TOP_SHARE = 0.01


def top_share(change: np.ndarray, share: float = TOP_SHARE) -> float | None:
    """The fraction of ``change.sum()`` carried by its ``share`` largest values (None for no change)."""
    values = np.asarray(change, dtype=np.float64).ravel()
    total = float(values.sum())
    if values.size == 0 or total <= 0:
        return None
    k = max(1, math.ceil(share * values.size))
    return float(np.partition(values, values.size - k)[values.size - k :].sum() / total)


def is_valid(prediction: float, threshold: float | None, raise_: bool) -> bool | None:
    if threshold is None:
        return None
    return bool(prediction >= threshold) if raise_ else bool(prediction < threshold)


def run_metrics(
    input_hu: np.ndarray,
    cf_hu: np.ndarray,
    body: np.ndarray,
    rows: tuple[int, int],
    prediction: float,
    threshold: float | None,
    raise_: bool = False,
) -> dict:
    """validity, proximity and concentration of a CF on its slices ``rows`` (see the module docstring)."""
    a, b = rows
    change = np.abs(cf_hu[a:b].astype(np.float64) - input_hu[a:b])[body[a:b]]
    return {
        "threshold": threshold,
        "valid": is_valid(prediction, threshold, raise_),
        "proximity_hu": float(change.mean()) if change.size else None,
        "concentration_top1pct": top_share(change),
        "cf_slices": [a, b],
    }


def region_metrics(
    input_hu: np.ndarray, cf_hu: np.ndarray, region: np.ndarray, rows: tuple[int, int], before: float, after: float
) -> dict:
    """What changing (mostly) the region did: the prediction before and after, and the change outside it."""
    a, b = rows
    outside = ~region[a:b]
    change = np.abs(cf_hu[a:b].astype(np.float64) - input_hu[a:b])
    return {
        "voxels": int(region.sum()),
        "prediction_before": before,
        "prediction_after": after,
        "mean_abs_hu_outside": float(change[outside].mean()) if outside.any() else 0.0,
        "mean_abs_hu_inside": float(change[~outside].mean()) if (~outside).any() else 0.0,
    }
