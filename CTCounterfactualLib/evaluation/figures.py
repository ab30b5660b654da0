"""The report's PNG figures (matplotlib, Agg): chunk sweep, distributions, localization, saliency,
lung size, identity preservation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

COLORS = {"positives": "#c44e52", "negatives": "#4c72b0"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ms(d: dict) -> tuple[float, float]:
    return (np.nan, 0.0) if d["mean"] is None else (d["mean"], d["se"])


def chunk_sweep(summary: dict, path: Path) -> None:
    """Paper Fig. 5A: CF prediction and its reduction per chunk size, mean +- SE."""
    plt = _plt()
    entries = list(summary["sweep"])
    x = np.arange(len(entries))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    t1 = summary["table1"]["rows"]
    for j, label in enumerate(("positives", "negatives")):
        color, off = COLORS[label], (j - 0.5) * 0.15
        cf = [_ms(summary["sweep"][e][label]["cf_min"]) for e in entries]
        red = [_ms(summary["sweep"][e][label]["reduction_from_input"]) for e in entries]
        axes[0].errorbar(
            x + off, [c[0] for c in cf], [c[1] for c in cf], fmt="o-", color=color, capsize=3, label=f"CFs of {label}"
        )
        m, _ = _ms(t1[f"{label}:input"])
        axes[0].axhline(m, color=color, ls=":", lw=1, label=f"{label}: input")
        axes[1].errorbar(
            x + off, [r[0] for r in red], [r[1] for r in red], fmt="o-", color=color, capsize=3, label=label
        )
    axes[0].axhline(summary["table1"]["threshold"], color="gray", lw=0.8, ls="--", label="threshold")
    axes[0].set_ylabel("prediction (min over chunks)")
    axes[1].set_ylabel("input prediction - CF prediction")
    axes[1].axhline(0, color="gray", lw=0.8)
    for ax in axes:
        ax.set_xticks(x, entries)
        ax.set_xlabel("chunk size")
        ax.legend(fontsize=7)
    fig.suptitle("Chunk-size sweep (mean ± standard error)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def distributions(rows: list[dict], chunk_size: int, path: Path) -> None:
    """Paper Fig. 5B: predictions of positives, negatives and their CFs."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    bins = np.linspace(0, 1, 26)
    groups = [
        ("positives: input", [r["input"] for r in rows if r["label"] == 1], COLORS["positives"], "-"),
        ("negatives: input", [r["input"] for r in rows if r["label"] == 0], COLORS["negatives"], "-"),
        ("CFs of positives", [r["cf"] for r in rows if r["label"] == 1], "#dd8452", "--"),
        ("CFs of negatives", [r["cf"] for r in rows if r["label"] == 0], "#55a868", "--"),
    ]
    for name, vals, color, ls in groups:
        if vals:
            ax.hist(vals, bins=bins, histtype="step", lw=2, color=color, ls=ls, label=f"{name} (n={len(vals)})")
    ax.set_xlabel(f"prediction (CF: chunk size {chunk_size}, min over chunks)")
    ax.set_ylabel("volumes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def localization(summary: dict, path: Path) -> None:
    """Heatmap mass near the finding, pointing game and top-chunk hit rate per method."""
    plt = _plt()
    loc = summary["localization"]
    methods = [m for m, v in loc.items() if isinstance(v, dict) and "share_in_mask" in v]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), dpi=100)
    x = np.arange(len(methods))
    for off, metric, name in ((-0.2, "share_in_mask", "in mask"), (0.2, "share_in_dilated", "within 5 mm")):
        v = [_ms(loc[m][metric]) for m in methods]
        axes[0].bar(x + off, [a for a, _ in v], 0.38, yerr=[b for _, b in v], capsize=3, label=name)
    axes[0].axhline(_ms(loc["chance_share_dilated"])[0], color="k", ls=":", label="chance (5 mm mask / body)")
    axes[0].set_ylabel("share of map mass")
    for off, metric, name in ((-0.2, "pointing_hit", "pointing game"), (0.2, "top_chunk_overlaps", "top chunk")):
        v = [_ms(loc[m][metric]) for m in methods]
        axes[1].bar(x + off, [a for a, _ in v], 0.38, yerr=[b for _, b in v], capsize=3, label=name)
    axes[1].set_ylabel("hit rate")
    axes[1].set_ylim(0, 1.05)
    for ax in axes:
        ax.set_xticks(x, [m.replace("LatentShift ", "LS ") for m in methods], rotation=20, fontsize=8)
        ax.legend(fontsize=7)
    fig.suptitle(f"Localization on {loc['n_volumes']} volumes with a finding mask (mean ± SE)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _outline(ax, mask, color):
    if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors=color, linewidths=0.8)


def saliency(example: dict, name: str, path: Path) -> None:
    """Paper Fig. 4: every map on the same slice, each scaled to its own 99.5th percentile."""
    plt = _plt()
    maps = [k for k in example if k.startswith("heat_")]
    panels = [
        ("input", example["input"]),
        ("reconstruction", example["reconstruction"]),
        ("CF (scan)", example["counterfactual_scan"]),
        ("CF (joint)", example["counterfactual_joint"]),
    ]
    cols = 4
    nrows = 1 + (len(maps) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 3.1 * nrows), dpi=90)
    axes = np.atleast_2d(axes)
    for ax in axes.flat:
        ax.axis("off")
    for j, (title, img) in enumerate(panels):
        ax = axes[0, j]
        ax.imshow(img, cmap="gray", vmin=-1000, vmax=400)
        _outline(ax, example["mask"], "#00d0ff")
        ax.set_title(title, fontsize=9)
    for i, key in enumerate(maps):
        ax = axes[1 + i // cols, i % cols]
        m = example[key]
        vmax = float(np.percentile(m, 99.5)) or 1.0
        ax.imshow(example["input"], cmap="gray", vmin=-1000, vmax=400)
        ax.imshow(np.ma.masked_less(m, 0.05 * vmax), cmap="hot", vmin=0, vmax=vmax, alpha=0.75)
        _outline(ax, example["dilated"], "#00d0ff")
        ax.set_title(key[5:], fontsize=9)
    a, b = example["chosen"]
    fig.suptitle(
        f"{name}, slice {example['slice']} (scan CF chunk: slices {a}-{b - 1}); cyan: finding "
        "(top) and finding + 5 mm (maps)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def lungsize(summary: dict, example: dict | None, name: str, path: Path) -> None:
    """Paper Fig. 2: the lung volume along the sweep, and an input/CF pair with lung mask outlines."""
    plt = _plt()
    ls = summary["lungsize"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), dpi=100)
    rel = ls["relative_ml_per_frame"]
    n = len(rel)
    frac = np.linspace(1, 0, n)  # lambda / lambda_CF
    axes[0].errorbar(frac, [r["mean"] for r in rel], [r["se"] for r in rel], fmt="o-", capsize=3)
    axes[0].set_xlabel("lambda / lambda of the CF  (0 = D(E(x)), 1 = CF)")
    axes[0].set_ylabel("lung volume / lung volume of D(E(x))")
    axes[0].set_title(f"segmented lung (P > 0.5), n={ls['n_volumes']}", fontsize=9)
    if example is not None:
        for ax, key, title in ((axes[1], "input", "input"), (axes[2], "counterfactual", "counterfactual")):
            ax.imshow(example[key], cmap="gray", vmin=-1000, vmax=400)
            _outline(ax, example["p_lung_input"] > 0.5, "red")
            if key == "counterfactual":
                _outline(ax, example["p_lung_counterfactual"] > 0.5, "yellow")
            ax.set_title(f"{name} slice {example['slice']}: {title}", fontsize=9)
            ax.axis("off")
        axes[2].text(2, 8, "red: input's lung mask, yellow: CF's", color="w", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _grouped_bars(ax, ident: dict, labels: list[str], bars: list[tuple[str, str]], ylabel: str, title: str) -> None:
    """Mean ± SE of each (key, name) in ``bars`` for each cohort label, side by side."""
    x = np.arange(len(labels))
    for i, (key, name) in enumerate(bars):
        v = [_ms(ident[lab][key]) for lab in labels]
        ax.bar(x + (i - 1.5) * 0.2, [a for a, _ in v], 0.19, yerr=[b for _, b in v], capsize=3, label=name)
    ax.set_xticks(x, labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)


def identity(summary: dict, path: Path) -> None:
    """Change away from the finding, and adjacent-slice jumps at chunk borders vs inside chunks."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    ident = summary["identity"]
    labels = [lab for lab in ("positives", "negatives") if lab in ident]
    change = [
        ("scan:mean_abs_hu_outside_dilated", "scan CF, outside 5 mm"),
        ("scan:mean_abs_hu_inside_mask", "scan CF, inside finding"),
        ("joint:mean_abs_hu_outside_dilated", "joint CF, outside 5 mm"),
        ("reconstruction_error_outside_dilated", "|D(E(x)) - x|, outside 5 mm"),
    ]
    _grouped_bars(axes[0], ident, labels, change, "mean |Δ| (HU)", "change vs D(E(x)) on the CF's slices")
    jumps = [
        ("composite:at_borders", "composite of scan CFs: at chunk borders"),
        ("composite:inside_chunks", "composite: inside chunks"),
        ("joint:at_borders", "joint CF: same slice pairs as borders"),
        ("joint:inside_chunks", "joint CF: inside"),
    ]
    _grouped_bars(
        axes[1], ident, labels, jumps, "mean |diff[k+1] - diff[k]| (HU)", "slice-to-slice consistency of CF - D(E(x))"
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def variants(example: dict, name: str, path: Path) -> None:
    """Each variant's CF and heatmap on the slice with the most fluid in its CF, beside the input."""
    plt = _plt()
    names = list(example["variants"])
    fig, axes = plt.subplots(2, len(names) + 1, figsize=(3 * (len(names) + 1), 6.2), dpi=90)
    axes = np.asarray(axes).reshape(2, -1)
    for ax in axes.flat:
        ax.axis("off")
    window = dict(cmap="gray", vmin=-1000, vmax=400)
    axes[0, 0].imshow(example["input"], **window)
    _outline(axes[0, 0], example["mask"], "#00d0ff")
    axes[0, 0].set_title(f"input, slice {example['slice']}", fontsize=9)
    for j, v in enumerate(names, start=1):
        cf, heat = example["variants"][v]["counterfactual"], example["variants"][v]["heatmap"]
        axes[0, j].imshow(cf, **window)
        axes[0, j].set_title(f"{v}: CF", fontsize=9)
        vmax = float(np.percentile(heat, 99.5)) or 1.0
        axes[1, j].imshow(example["input"], **window)
        axes[1, j].imshow(np.ma.masked_less(heat, 0.05 * vmax), cmap="hot", vmin=0, vmax=vmax, alpha=0.75)
        _outline(axes[1, j], example["dilated"], "#00d0ff")
        axes[1, j].set_title(f"{v}: heatmap", fontsize=9)
    fig.suptitle(f"{name}: each variant on one slice (lung window); cyan: fluid (+5 mm on the heatmaps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
