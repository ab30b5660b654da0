"""Draw docs/effusion.png: three slices of the demo chest CT before / after its simulated effusion, mask outlined."""

from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from CTCounterfactualLib.data.demo_ct import load_demo_ct  # noqa: E402
from CTCounterfactualLib.jobs.demo import make_demo_input  # noqa: E402
from CTCounterfactualLib.params import DEMO_EFFUSION_SEED  # noqa: E402


def main() -> None:
    ct = load_demo_ct()
    demo = make_demo_input(DEMO_EFFUSION_SEED)
    rows = np.flatnonzero(demo.effusion.any(axis=(1, 2)))
    picks = [int(rows[len(rows) * q // 6]) for q in (1, 3, 5)]
    fig, axs = plt.subplots(2, 3, figsize=(12, 8.4), dpi=80)
    for j, k in enumerate(picks):
        for i, (img, title) in enumerate(((ct.hu[k], "LIDC-IDRI-0001"), (demo.hu[k], "+ simulated effusion"))):
            ax = axs[i, j]
            ax.imshow(img, cmap="gray", vmin=-1000, vmax=400)
            if i == 1:
                ax.contour(demo.effusion[k], levels=[0.5], colors="#00d0ff", linewidths=0.8)
                title += f", fluid {demo.hu[k][demo.effusion[k]].mean():.0f} HU"
            ax.set_title(f"slice {k}: {title}", fontsize=10)
            ax.axis("off")
    fig.tight_layout()
    out = Path(__file__).resolve().parent / "effusion.png"
    fig.savefig(out)
    print(out)


if __name__ == "__main__":
    main()
