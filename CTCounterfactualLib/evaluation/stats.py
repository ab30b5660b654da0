"""Summary statistics and tests for the report, in numpy only (scipy is not a dependency)."""

from __future__ import annotations

import math

import numpy as np


def mean_se(values) -> dict:
    """Mean, standard error of the mean (sample SD / sqrt(n)) and n, ignoring NaN/None."""
    x = np.array([v for v in values if v is not None], dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return {"mean": None, "se": None, "n": 0}
    se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
    return {"mean": float(x.mean()), "se": se, "n": n}


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``a``, ties sharing their average rank."""
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(len(a), dtype=float)
    sorted_a = a[order]
    i = 0
    while i < len(a):
        j = i
        while j + 1 < len(a) and sorted_a[j + 1] == sorted_a[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def wilcoxon_signed_rank(x, y) -> dict:
    """Two-sided Wilcoxon signed-rank test of paired samples x, y (H0: differences symmetric about 0).

    Zero differences are dropped (Wilcoxon's rule); ties share average ranks. The p-value is exact:
    under H0 each rank's sign is +/- with probability 1/2 independently, so the distribution of the
    positive-rank sum is a convolution we tabulate on doubled (hence integer) ranks. That is cheap
    for any cohort this tool runs (n(n+1) bins); beyond 2000 pairs the normal approximation is used.
    """
    d = np.asarray(x, float) - np.asarray(y, float)
    d = d[np.isfinite(d) & (d != 0)]
    n = int(d.size)
    if n == 0:
        return {"test": "wilcoxon signed-rank", "n": 0, "statistic": None, "p": 1.0, "method": "no nonzero pairs"}
    ranks = _average_ranks(np.abs(d))
    w_plus = float(ranks[d > 0].sum())
    if n <= 2000:
        r2 = np.rint(2 * ranks).astype(int)
        dist = np.zeros(int(r2.sum()) + 1)
        dist[0] = 1.0
        for r in r2:
            shifted = np.zeros_like(dist)
            shifted[r:] = dist[:-r]
            dist = 0.5 * (dist + shifted)
        k = int(round(2 * w_plus))
        p = 2 * min(float(dist[: k + 1].sum()), float(dist[k:].sum()))
        method = "exact"
    else:
        mu = n * (n + 1) / 4
        var = float((ranks**2).sum()) / 4  # tie-corrected
        z = (abs(w_plus - mu) - 0.5) / math.sqrt(var)
        p = 2 * _normal_sf(max(z, 0.0))
        method = "normal approximation"
    return {"test": "wilcoxon signed-rank", "n": n, "statistic": w_plus, "p": min(1.0, p), "method": method}


def mann_whitney(x, y) -> dict:
    """Two-sided Mann-Whitney U test (normal approximation, tie-corrected) and the AUC U / (n_x n_y)."""
    a, b = np.asarray(x, float), np.asarray(y, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return {"test": "mann-whitney U", "n": [int(n1), int(n2)], "statistic": None, "auc": None, "p": 1.0}
    ranks = _average_ranks(np.concatenate([a, b]))
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n = n1 + n2
    _, counts = np.unique(np.concatenate([a, b]), return_counts=True)
    var = n1 * n2 / 12 * ((n + 1) - float((counts**3 - counts).sum()) / (n * (n - 1)))
    p = 1.0 if var <= 0 else 2 * _normal_sf(max((abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var), 0.0))
    return {
        "test": "mann-whitney U",
        "n": [int(n1), int(n2)],
        "statistic": u,
        "auc": u / (n1 * n2),
        "p": min(1.0, p),
        "method": "normal approximation",
    }
