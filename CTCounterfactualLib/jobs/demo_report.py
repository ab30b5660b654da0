"""``report.png`` of the demo: input, reconstruction, CF and heatmap on the most changed slices, and
the chunk plot. The reconstruction row is there because the CF is a decoded volume: the fluid's fade
shows against D(E(x)), not against the sharper input; each title gives the fluid's mean HU."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.jobs.outputs import read_chunks_csv


def write_report(out: Path, hu: np.ndarray, effusion: np.ndarray, results: dict, n_slices: int = 3) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scan = out / "scan"
    cf = read_volume(scan / "counterfactual.nrrd").array
    rec = read_volume(scan / "reconstruction.nrrd").array
    heat = read_volume(scan / "heatmap.nrrd").array
    a, b = results["scan"]["output_chunk"]
    per_slice = heat[a:b].reshape(b - a, -1).sum(1)
    picks = sorted(a + int(i) for i in np.argsort(per_slice)[::-1][:n_slices])
    fig = plt.figure(figsize=(3.2 * n_slices, 15.8), dpi=90)
    grid = fig.add_gridspec(5, n_slices, height_ratios=[1, 1, 1, 1, 0.9])
    vmax = float(np.percentile(heat[heat > 0], 99.5)) if (heat > 0).any() else 1.0
    for j, k in enumerate(picks):
        fluid = effusion[k]
        panels = ((hu[k], "input"), (rec[k], "reconstruction"), (cf[k], "counterfactual"))
        for i, (img, title) in enumerate(panels):
            ax = fig.add_subplot(grid[i, j])
            ax.imshow(img, cmap="gray", vmin=-1000, vmax=400)
            ax.contour(fluid, levels=[0.5], colors="#00d0ff", linewidths=0.8)
            fluid_hu = f": fluid {img[fluid].mean():.0f} HU" if fluid.any() else ""  # not `hu`: that is the input
            ax.set_title(f"{title}, slice {k}{fluid_hu}", fontsize=9)
            ax.axis("off")
        ax = fig.add_subplot(grid[3, j])
        ax.imshow(cf[k], cmap="gray", vmin=-1000, vmax=400)
        ax.imshow(np.ma.masked_less(heat[k], vmax * 0.05), cmap="hot", vmin=0, vmax=vmax, alpha=0.7)
        ax.set_title(f"heatmap (|dHU|), slice {k}", fontsize=9)
        ax.axis("off")
    ax = fig.add_subplot(grid[4, :])
    rows = read_chunks_csv(scan / "chunks.csv")
    centers = [(int(r["chunk_start"]) + int(r["chunk_end"]) - 1) / 2 for r in rows]
    ax.bar(
        centers,
        [float(r["prediction_min"]) for r in rows],
        width=0.9 * (int(rows[0]["chunk_end"]) - int(rows[0]["chunk_start"])),
        color="#4c72b0",
        label="CF per chunk",
    )
    p = results["scan"]["predictions"]
    ax.axhline(p["input"], color="#c44e52", label=f"input {p['input']:.2f}")
    ax.axhline(p["reconstruction"], color="#55a868", ls="--", label=f"reconstruction {p['reconstruction']:.2f}")
    ax.axhline(results["threshold"], color="gray", ls=":", label="threshold")
    e0, e1 = results["source"]["effusion_slices"]
    ax.axvspan(e0 - 0.5, e1 - 0.5, color="#00d0ff", alpha=0.15, label="effusion slices")
    ax.set_xlabel("slice")
    ax.set_ylabel("P(pleural effusion)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    jp = results["joint"]["predictions"]
    ax.set_title(
        f"scan: chunks of {rows[0]['chunk_end']} slices; joint CF prediction {jp['counterfactual']:.3f}", fontsize=9
    )
    fig.tight_layout()
    path = out / "report.png"
    fig.savefig(path)
    plt.close(fig)
    return path
