"""``ctcf demo``: the bundled demo, explained in both modes, with its report."""

from __future__ import annotations

import argparse
from contextlib import closing
from pathlib import Path

from CTCounterfactualLib.params import DEMO_EFFUSION_DESCRIPTION, DEMO_EFFUSION_SEED, PROGRESS_KINDS
from CTCounterfactualLib.progress import make_progress


def add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="explain a real chest CT with a simulated pleural effusion using the bundled models",
        description=f"Add a simulated pleural effusion (seed {DEMO_EFFUSION_SEED}: {DEMO_EFFUSION_DESCRIPTION}) to the "
        "bundled real chest CT (LIDC-IDRI-0001) "
        "(OUT/input.nrrd, OUT/labels.nrrd: 1 = fluid), explain it with the bundled VQ-GAN and effusion "
        "classifier in scan mode (OUT/scan/) and joint mode (OUT/joint/), and write OUT/report.png and "
        "OUT/demo.json with the numbers it measures.",
    )
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--progress", choices=PROGRESS_KINDS, default="bar")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from CTCounterfactualLib.jobs.demo import run_demo

    with closing(make_progress(args.progress)) as progress:
        r = run_demo(args.out, progress)
    src = r["source"]
    e0, e1 = src["effusion_slices"]
    print(
        f"{src['ct']} with a simulated {src['effusion']} pleural effusion (seed {src['effusion_seed']}, "
        f"{src['effusion_ml']:.0f} ml) on slices {e0}-{e1 - 1}; threshold {r['threshold']:.3f}"
    )
    for mode in ("scan", "joint"):
        m = r[mode]
        p = m["predictions"]
        a, b = m["output_chunk"]
        print(
            f"{mode:5s}: P(effusion) input {p['input']:.3f}, reconstruction {p['reconstruction']:.3f}, "
            f"counterfactual {p['counterfactual']:.3f}; CF slices {a}-{b - 1} "
            f"(overlaps effusion: {m['output_chunk_overlaps_effusion']}); heatmap mass in effusion "
            f"{m['heatmap_share_in_effusion']:.1%}, within 5 mm {m['heatmap_share_in_effusion_dilated_5mm']:.1%} "
            f"(that region is {r['effusion_dilated_share_of_body']:.1%} of the body)"
        )
        if m["effusion_mean_hu_counterfactual"] is not None:
            print(
                f"       effusion on the CF slices: {m['effusion_mean_hu_input']:.0f} HU in the input -> "
                f"{m['effusion_mean_hu_counterfactual']:.0f} HU in the CF (reconstruction "
                f"{m['effusion_mean_hu_reconstruction']:.0f} HU; lung is about -850)"
            )
    print(f"report: {Path(args.out) / 'report.png'}")
    return 0
