"""``DIR/results.csv`` of a batch: one row per finished volume, rewritten atomically after each one."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from CTCounterfactualLib.atomic import chmod_default
from CTCounterfactualLib.protocol import BATCH_OK, BATCH_RESULTS_CSV, RESULTS_COLUMNS


def _g(value) -> str:
    if value is None:
        return ""
    return f"{value:.8g}" if isinstance(value, float) else str(value)


def row_from_summary(summary: dict) -> dict:
    """The results.csv fields that ``ctcf explain``'s summary.json holds."""
    p, oc, m = summary["predictions"], summary["output_chunk"], summary.get("metrics", {})
    return {
        "status": BATCH_OK,
        "target": summary["target"]["name"],
        "prediction_input": _g(p["input"]),
        "prediction_reconstruction": _g(p["reconstruction"]),
        "prediction_counterfactual": _g(p["counterfactual"]),
        "prediction_counterfactual_min": _g(p["counterfactual_min"]),
        "lambda": _g(float(oc["lambda"])),
        "chunk_start": str(oc["start"]),
        "chunk_end": str(oc["end"]),
        "valid": _g(m.get("valid")),
        "proximity_hu": _g(m.get("proximity_hu")),
        "concentration_top1pct": _g(m.get("concentration_top1pct")),
        "peak_memory_mb": _g(float(summary["peak_memory_mb"])),
    }


def read_results(out_dir: str | os.PathLike) -> dict[str, dict]:
    """The rows of ``out_dir/results.csv`` by id; empty if there is none yet."""
    path = Path(out_dir) / BATCH_RESULTS_CSV
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8", newline="") as f:
        return {r["id"]: r for r in csv.DictReader(f) if r.get("id")}


def write_results(out_dir: str | os.PathLike, rows: list[dict]) -> None:
    """Replace ``out_dir/results.csv`` with ``rows`` in one rename, so a crash never leaves half a file."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=RESULTS_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in RESULTS_COLUMNS})
    path = Path(out_dir) / BATCH_RESULTS_CSV
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    chmod_default(tmp, 0o666)
    os.replace(tmp, path)
