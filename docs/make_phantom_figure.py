"""Draw docs/phantom.png: four slices of the demo phantom with the effusion outlined."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from CTCounterfactualLib.data.phantom import LABELS, PhantomSpec, make_phantom  # noqa: E402

# the demo phantom of docs/demo_classifier_experiments.md, parts 1 and 2
DEMO_SPEC = PhantomSpec(seed=2024, effusion="right", effusion_depth_mm=35.0, effusion_extent=(0.1, 0.55), nodules=1)


def main() -> None:
    p = make_phantom(DEMO_SPEC)
    e0, e1 = p.effusion_slices
    picks = [e0 + 2, (e0 + e1) // 2, e1 - 2, p.hu.shape[0] - 8]
    fig, axs = plt.subplots(1, 4, figsize=(14, 3.4), dpi=80)
    for ax, k in zip(axs, picks, strict=True):
        ax.imshow(p.hu[k], cmap="gray", vmin=-1000, vmax=400)
        ax.contour(p.labels[k] == LABELS["effusion"], levels=[0.5], colors="#00d0ff", linewidths=1)
        ax.set_title(f"slice {k}" + (" (effusion)" if e0 <= k < e1 else ""), fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    out = Path(__file__).resolve().parent / "phantom.png"
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    main()
