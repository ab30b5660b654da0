"""Writing an explanation to a folder: volumes, table, plot, summary - all or nothing.

Everything is written into a hidden staging folder beside DIR and moved in only when complete,
so an interrupted or failed run leaves DIR as it was.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from CTCounterfactualLib.atomic import chmod_default
from CTCounterfactualLib.data.volume_io import Geometry, write_volume
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.method.explain import ExplainResult
from CTCounterfactualLib.protocol import (
    CHUNK_COLUMNS,
    CHUNKS_CSV,
    OUTPUT_FILES,
    PREDICTIONS_PNG,
    SUMMARY_JSON,
    SWEEP_COLUMNS,
    SWEEP_CSV,
    SWEEP_DIR,
    VOLUME_FILES,
    sweep_frame_name,
)

# The output volumes are written without gzip: float32 CT gains about 17 % from it (LIDC-IDRI-0001's
# 512 x 512 x 133 counterfactual: 133 -> 110 MiB) at 5-6x the write time (2.3 s vs 0.4 s per volume) and
# 5x Slicer's read time.
COMPRESS_VOLUMES = False


def write_chunks_csv(result: ExplainResult, path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(CHUNK_COLUMNS)
        for c in result.chunks:
            w.writerow(
                [
                    c.start,
                    c.stop,
                    f"{c.prediction_before:.8g}",
                    f"{c.prediction_min:.8g}",
                    f"{c.lam:g}",
                    f"{c.prediction_cf:.8g}",
                    c.stop_reason,
                ]
            )


def read_chunks_csv(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def plot_predictions(result: ExplainResult, path: Path) -> None:
    """Per-chunk minimum prediction with the input's and the reconstruction's as reference lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    centers = [(c.start + c.stop - 1) / 2 for c in result.chunks]
    widths = [c.stop - c.start for c in result.chunks]
    mins = [c.prediction_min for c in result.chunks]
    ax.bar(
        centers,
        mins,
        width=[0.9 * w for w in widths],
        color="#4c72b0",
        alpha=0.75,
        label="counterfactual (min over sweep)",
    )
    ax.axhline(result.predictions["input"], color="#c44e52", lw=1.5, label="input")
    ax.axhline(result.predictions["reconstruction"], color="#55a868", lw=1.5, ls="--", label="reconstruction")
    chosen = result.chunks[result.chosen]
    ax.plot(
        [(chosen.start + chosen.stop - 1) / 2],
        [chosen.prediction_min],
        "v",
        color="black",
        label=f"output CF: slices {chosen.start}-{chosen.stop - 1}",
    )
    ax.set_xlabel("slice (chunk centre)")
    ax.set_ylabel(f"prediction: {result.target_name}")
    ax.set_xlim(result.slices[0] - 0.5, result.slices[1] - 0.5)
    ax.set_title(f"{result.mode}, chunk size {result.chunk_size}" if result.mode == "scan" else "joint")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def slab_geometry(geometry: Geometry, start: int, stop: int) -> Geometry:
    """Geometry of slices ``start:stop`` of a volume: same grid, origin moved to slice ``start``."""
    d = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(geometry.origin, dtype=float) + d[:, 2] * geometry.spacing[2] * start
    size = (geometry.size[0], geometry.size[1], stop - start)
    return Geometry(size, geometry.spacing, tuple(float(v) for v in origin), geometry.direction)


def write_sweep(result: ExplainResult, geometry: Geometry, folder: Path) -> None:
    """The output chunk's lambda sweep: one NRRD slab per frame (CF first, lambda 0 last) + sweep.csv."""
    chunk = result.chunks[result.chosen]
    slab = slab_geometry(geometry, chunk.start, chunk.stop)
    folder.mkdir()
    with open(folder / SWEEP_CSV, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(SWEEP_COLUMNS)
        for i, frame in enumerate(result.sweep):
            name = sweep_frame_name(i)
            write_volume(frame.slab_hu, slab, folder / name, compress=COMPRESS_VOLUMES)
            w.writerow([i, name, f"{frame.lam:g}", f"{frame.prediction:.8g}", chunk.start, chunk.stop])


def write_outputs(result: ExplainResult, geometry: Geometry, out_dir: str | os.PathLike, summary: dict) -> Path:
    """Write every output file of ``result`` into ``out_dir`` atomically; returns the folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CTCFError(f"output path {out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    chmod_default(stage, 0o777)  # mkdtemp's 0700 would otherwise become the folder's mode
    try:
        volumes = {
            "counterfactual": result.counterfactual_hu,
            "reconstruction": result.reconstruction_hu,
            "heatmap": result.heatmap.astype(np.float32),
            "difference": result.difference_hu.astype(np.float32),
        }
        for role, name in VOLUME_FILES.items():
            write_volume(volumes[role], geometry, stage / name, compress=COMPRESS_VOLUMES)
        write_chunks_csv(result, stage / CHUNKS_CSV)
        plot_predictions(result, stage / PREDICTIONS_PNG)
        if result.sweep:
            write_sweep(result, geometry, stage / SWEEP_DIR)
        (stage / SUMMARY_JSON).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        if not out.exists():
            os.replace(stage, out)
        else:
            if (out / SWEEP_DIR).is_dir():  # a previous run's sweep must not pass for this run's
                shutil.rmtree(out / SWEEP_DIR)
            if (stage / SWEEP_DIR).is_dir():
                os.replace(stage / SWEEP_DIR, out / SWEEP_DIR)
            # summary.json last: its presence marks a complete result
            for name in OUTPUT_FILES:
                os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out
