"""Writes the evaluation folder (report.md, figures, CSVs, evaluation.json) all at once, like ``write_outputs``."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from CTCounterfactualLib.atomic import chmod_default
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.evaluation import figures
from CTCounterfactualLib.evaluation.report_md import FIGURES, render

CSV_FILES = ("volumes.csv", "sweep.csv", "localization.csv", "lungsize.csv", "variants.csv")
VARIANT_COLUMNS = (
    "cf",
    "cf_min",
    "valid",
    "proximity_hu",
    "concentration",
    "cout",
    "outside_hu",
    "finding_change_hu",
    "lambda",
    "stop_reason",
    "segments",
    "seconds",
)


def _plain(obj):
    """JSON-safe copy: numpy scalars to Python, arrays dropped (they are only for figures)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if not isinstance(v, np.ndarray)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _g(v, digits: int = 6):
    return "" if v is None else (f"{v:.{digits}g}" if isinstance(v, float) else v)


def write_csvs(stage: Path, rows: list[dict]) -> None:
    vol_cols = [
        "name",
        "label",
        "source",
        "seed",
        "slices",
        "path",
        "mask",
        "depth",
        "has_mask",
        "input",
        "reconstruction",
        "cf",
        "cf_joint",
        "seconds",
    ]
    id_cols = [
        ("scan", "mean_abs_hu_outside_dilated"),
        ("scan", "mean_abs_hu_inside_mask"),
        ("joint", "mean_abs_hu_outside_dilated"),
        ("joint", "mean_abs_hu_inside_mask"),
    ]
    cons = [
        ("consistency_composite", "adjacent_abs_delta_hu_at_borders"),
        ("consistency_composite", "adjacent_abs_delta_hu_inside_chunks"),
        ("consistency_joint", "adjacent_abs_delta_hu_at_borders"),
        ("consistency_joint", "adjacent_abs_delta_hu_inside_chunks"),
    ]
    header = (
        vol_cols
        + [f"{a}_{b}" for a, b in id_cols]
        + ["reconstruction_error_outside_dilated", "composite_prediction"]
        + [f"{a}_{b}" for a, b in cons]
    )
    out = []
    for r in rows:
        i = r["identity"] or {a: {} for a, _ in id_cols + cons}
        out.append(
            [_g(r.get(c)) for c in vol_cols]
            + [_g(i[a].get(b)) for a, b in id_cols]
            + [_g(i.get("reconstruction_error_outside_dilated")), _g(i.get("composite_prediction"))]
            + [_g(i[a].get(b)) for a, b in cons]
        )
    _write_csv(stage / "volumes.csv", header, out)

    header = [
        "name",
        "label",
        "entry",
        "chunk_size",
        "n_chunks",
        "input",
        "reconstruction",
        "cf_min",
        "cf_at_lambda",
        "chosen_start",
        "chosen_end",
        "lambda",
        "stop_reasons",
        "seconds",
    ]
    out = [
        [
            r["name"],
            r["label"],
            e,
            s["chunk_size"],
            s["n_chunks"],
            _g(r["input"]),
            _g(s["reconstruction"]),
            _g(s["cf_min"]),
            _g(s["cf_at_lambda"]),
            s["chosen"][0],
            s["chosen"][1],
            _g(s["lambda"]),
            json.dumps(s["stop_reasons"]),
            _g(s["seconds"], 4),
        ]
        for r in rows
        for e, s in r["sweep"].items()
    ]
    _write_csv(stage / "sweep.csv", header, out)

    header = [
        "name",
        "method",
        "share_in_mask",
        "share_in_dilated",
        "chance_share_dilated",
        "pointing_hit",
        "top_chunk_overlaps",
    ]
    out = [
        [
            r["name"],
            m,
            _g(v["share_in_mask"]),
            _g(v["share_in_dilated"]),
            _g(v["chance_share_dilated"]),
            int(v["pointing_hit"]),
            int(v["top_chunk_overlaps"]),
        ]
        for r in rows
        for m, v in (r.get("localization") or {}).items()
    ]
    _write_csv(stage / "localization.csv", header, out)

    header = ["name", "label", "frame", "lambda", "target", "lung_ml"]
    out = [
        [r["name"], r["label"], k, _g(lam), _g(t), _g(ml)]
        for r in rows
        if r.get("lungsize")
        for k, (lam, t, ml) in enumerate(
            zip(
                r["lungsize"]["sweep_lambdas"],
                r["lungsize"]["sweep_targets"],
                r["lungsize"]["sweep_lung_ml"],
                strict=True,
            )
        )
    ]
    _write_csv(stage / "lungsize.csv", header, out)

    header = ["name", "label", "held_out", "variant", *VARIANT_COLUMNS, "heatmap_share_in_dilated", "heatmap_pointing"]
    out = []
    for r in rows:
        for n, v in (r.get("variants") or {}).items():
            loc = v.get("loc_heatmap")
            place = [_g(loc["share_in_dilated"]), int(loc["pointing_hit"])] if loc else ["", ""]
            out.append(
                [
                    r["name"],
                    r["label"],
                    int(bool(r.get("held_out"))),
                    n,
                    *(_g(v.get(c)) for c in VARIANT_COLUMNS),
                    *place,
                ]
            )
    _write_csv(stage / "variants.csv", header, out)


def write_figures(stage: Path, rows: list[dict], summary: dict, meta: dict) -> dict:
    """Every figure the run's numbers allow; returns ``meta`` as the report should see it (no saliency example when
    no volume kept the slices its figure needs, as in a run without reference chunk sizes)."""
    if summary["sweep"]:
        figures.chunk_sweep(summary, stage / FIGURES["sweep"])
        figures.distributions(rows, meta["settings"]["chunk_size"], stage / FIGURES["distributions"])
    if summary["identity"]:
        figures.identity(summary, stage / FIGURES["identity"])
    shown = next((r for r in rows if r.get("figure_variants")), None)
    if shown is not None:
        figures.variants(shown["figure_variants"], shown["name"], stage / FIGURES["variants"])
    if summary["localization"]["n_volumes"]:
        figures.localization(summary, stage / FIGURES["localization"])
    example = next((r for r in rows if r.get("figure")), None)
    if example is not None and example["figure"].get("mask") is not None:
        figures.saliency(example["figure"], example["name"], stage / FIGURES["saliency"])
    else:
        meta = meta | {"example": None}
    if summary["lungsize"]["n_volumes"]:
        lung_example = next((r for r in rows if r.get("lungsize", {}).get("example")), None)
        figures.lungsize(
            summary,
            lung_example["lungsize"]["example"] if lung_example else None,
            lung_example["name"] if lung_example else "",
            stage / FIGURES["lungsize"],
        )
    return meta


def write_evaluation(out_dir: str | os.PathLike, rows: list[dict], summary: dict, meta: dict) -> Path:
    """Stage every file beside ``out_dir`` and move them in only when all are written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CTCFError(f"output path {out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    chmod_default(stage, 0o777)
    try:
        shown = write_figures(stage, rows, summary, meta)
        write_csvs(stage, rows)
        (stage / "report.md").write_text(render(shown, summary), encoding="utf-8")
        doc = {"meta": meta, "summary": summary, "volumes": rows}
        (stage / "evaluation.json").write_text(json.dumps(_plain(doc), indent=1), encoding="utf-8")
        if not out.exists():
            os.replace(stage, out)
        else:
            names = sorted(p.name for p in stage.iterdir() if p.name != "evaluation.json")
            for name in names + ["evaluation.json"]:  # evaluation.json last: it marks a complete report
                os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out
