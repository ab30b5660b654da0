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

from .errors import CTCFError
from .explain import ExplainResult
from .volume_io import Geometry, write_volume

OUTPUT_FILES = (
    "counterfactual.nrrd",
    "reconstruction.nrrd",
    "heatmap.nrrd",
    "difference.nrrd",
    "chunks.csv",
    "predictions.png",
    "summary.json",
)
CHUNK_COLUMNS = (
    "chunk_start",
    "chunk_end",
    "prediction_before",
    "prediction_min",
    "lambda",
    "prediction_cf",
    "stop_reason",
)
SWEEP_DIR = "sweep"  # optional (--sweep): frame_NN.nrrd slabs of the output chunk + sweep.csv
SWEEP_COLUMNS = ("frame", "file", "lambda", "prediction", "slice_start", "slice_end")


def _chmod_default(path: str | os.PathLike, mode: int) -> None:
    """Give ``path`` the mode a plain create would have had under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def write_chunks_csv(result: ExplainResult, path: Path) -> None:
    with open(path, "w", newline="") as f:
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
    with open(path, newline="") as f:
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
    with open(folder / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SWEEP_COLUMNS)
        for i, frame in enumerate(result.sweep):
            name = f"frame_{i:02d}.nrrd"
            write_volume(frame.slab_hu, slab, folder / name)
            w.writerow([i, name, f"{frame.lam:g}", f"{frame.prediction:.8g}", chunk.start, chunk.stop])


def write_outputs(result: ExplainResult, geometry: Geometry, out_dir: str | os.PathLike, summary: dict) -> Path:
    """Write every output file of ``result`` into ``out_dir`` atomically; returns the folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CTCFError(f"output path {out} exists and is not a folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    _chmod_default(stage, 0o777)  # mkdtemp's 0700 would otherwise become the folder's mode
    try:
        write_volume(result.counterfactual_hu, geometry, stage / "counterfactual.nrrd")
        write_volume(result.reconstruction_hu, geometry, stage / "reconstruction.nrrd")
        write_volume(result.heatmap.astype(np.float32), geometry, stage / "heatmap.nrrd")
        write_volume(result.difference_hu.astype(np.float32), geometry, stage / "difference.nrrd")
        write_chunks_csv(result, stage / "chunks.csv")
        plot_predictions(result, stage / "predictions.png")
        if result.sweep:
            write_sweep(result, geometry, stage / SWEEP_DIR)
        (stage / "summary.json").write_text(json.dumps(summary, indent=2))
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


def write_json_atomic(path: str | os.PathLike, obj) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
        _chmod_default(tmp, 0o666)  # mkstemp's 0600 would otherwise become the file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
