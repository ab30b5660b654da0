"""How the report writes a number: mean ± SE, percentages, p-values, n."""

from __future__ import annotations


def fmt(d: dict | None, digits: int = 3, pct: bool = False) -> str:
    if not d or d.get("mean") is None:
        return "–"
    k = 100.0 if pct else 1.0
    unit = " %" if pct else ""
    return f"{d['mean'] * k:.{digits}f} ± {d['se'] * k:.{digits}f}{unit}"


def fmt_p(t: dict) -> str:
    if t.get("statistic") is None:
        return "– (no pairs)"
    p = t["p"]
    return f"p = {p:.2g}" if p >= 1e-4 else f"p = {p:.1e}"


def n_of(d: dict | None) -> str:
    return str(d["n"]) if d else "0"
