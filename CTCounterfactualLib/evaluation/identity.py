"""Identity preservation: how much the CF changes away from the finding, and across chunk borders."""

from __future__ import annotations

import numpy as np


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def change_outside_inside(
    difference_hu: np.ndarray,
    body: np.ndarray,
    rows: tuple[int, int],
    dilated: np.ndarray | None,
    mask: np.ndarray | None,
) -> dict:
    """Mean |CF - reconstruction| (HU) on the CF's slices ``rows``: body outside the dilated finding, and inside it."""
    a, b = rows
    d = np.abs(difference_hu[a:b])
    body_ab = body[a:b]
    outside = body_ab if dilated is None else body_ab & ~dilated[a:b]
    return {
        "mean_abs_hu_outside_dilated": _mean_or_none(d[outside]),
        "mean_abs_hu_inside_mask": None if mask is None else _mean_or_none(d[mask[a:b]]),
    }


def slice_consistency(difference_hu: np.ndarray, body: np.ndarray, borders: list[int], rows: tuple[int, int]) -> dict:
    """Mean |difference[k+1] - difference[k]| over the body, for slice pairs across a chunk border vs inside chunks.

    ``borders`` are the first slices of chunks after the first; a pair (k-1, k) crosses a border when
    k is one. Chunks are made independently, so a jump at borders is the composite's inconsistency.
    """
    a, b = rows
    border_set = set(borders)
    at_border, inside = [], []
    for k in range(a + 1, b):
        region = body[k] | body[k - 1]
        if not region.any():
            continue
        step = float(np.abs(difference_hu[k] - difference_hu[k - 1])[region].mean())
        (at_border if k in border_set else inside).append(step)
    return {
        "adjacent_abs_delta_hu_at_borders": float(np.mean(at_border)) if at_border else None,
        "adjacent_abs_delta_hu_inside_chunks": float(np.mean(inside)) if inside else None,
    }
