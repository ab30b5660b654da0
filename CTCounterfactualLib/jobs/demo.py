"""``ctcf demo``: a chest CT phantom with a pleural effusion, explained with the bundled models.

Writes ``input.nrrd`` (+ ``labels.nrrd``), runs ``scan`` (into ``scan/``) and ``joint`` (into
``joint/``) for the effusion target, then checks and records what a user should see: the CF's
prediction falls below the classifier's threshold, the scan's lowest chunk overlaps the effusion,
and most heatmap mass lies on the effusion (mask dilated by 5 mm).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from CTCounterfactualLib.atomic import write_json_atomic
from CTCounterfactualLib.data.masks import dilated_mask, heatmap_share
from CTCounterfactualLib.data.phantom import LABELS, PhantomSpec, make_phantom
from CTCounterfactualLib.data.volume_io import read_volume, write_volume
from CTCounterfactualLib.jobs.explain_file import explain_file
from CTCounterfactualLib.method.explain import ExplainConfig
from CTCounterfactualLib.paths import check_writable_folder
from CTCounterfactualLib.progress import Progress, noop_progress
from CTCounterfactualLib.store.catalog import load_bundled_autoencoder, load_bundled_classifier

DEMO_SPEC = PhantomSpec(seed=2024, effusion="right", effusion_depth_mm=35.0, effusion_extent=(0.1, 0.55), nodules=1)


def run_demo(
    out_dir: str | os.PathLike, progress: Progress = noop_progress, spec: PhantomSpec = DEMO_SPEC, chunk_size: int = 8
) -> dict:
    """Run the whole demo into ``out_dir``; returns the numbers it checks (also in demo.json)."""
    out = Path(out_dir)
    check_writable_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    ae, ae_path = load_bundled_autoencoder()
    clf, clf_path = load_bundled_classifier()
    phantom = make_phantom(spec)
    write_volume(phantom.hu, phantom.geometry, out / "input.nrrd")
    write_volume(phantom.labels, phantom.geometry, out / "labels.nrrd")
    effusion = phantom.labels == LABELS["effusion"]
    near = dilated_mask(effusion, phantom.geometry, 5.0)
    results: dict = {
        "phantom": {"seed": spec.seed, "effusion": spec.effusion, "effusion_slices": list(phantom.effusion_slices)},
        "threshold": clf.threshold,
        # what a heatmap spread evenly over the body would put near the effusion
        "effusion_dilated_share_of_body": float(near.sum() / (phantom.labels > 0).sum()),
    }
    for mode in ("scan", "joint"):
        cfg = ExplainConfig(target="pleural effusion", chunk_size=chunk_size, mode=mode)
        summary = explain_file(
            out / "input.nrrd",
            out / mode,
            cfg,
            autoencoder=ae,
            classifier=clf,
            autoencoder_path=ae_path,
            classifier_path=clf_path,
            progress=progress,
        )
        heat = read_volume(out / mode / "heatmap.nrrd").array
        oc = summary["output_chunk"]
        e0, e1 = phantom.effusion_slices
        in_chunk = np.zeros_like(effusion)
        in_chunk[oc["start"] : oc["end"]] = effusion[oc["start"] : oc["end"]]
        cf_hu = read_volume(out / mode / "counterfactual.nrrd").array
        rec_hu = read_volume(out / mode / "reconstruction.nrrd").array
        results[mode] = {
            "predictions": summary["predictions"],
            "output_chunk": [oc["start"], oc["end"]],
            "output_chunk_overlaps_effusion": oc["start"] < e1 and e0 < oc["end"],
            "heatmap_share_in_effusion": heatmap_share(heat, effusion),
            "heatmap_share_in_effusion_dilated_5mm": heatmap_share(heat, near),
            # does the fluid fade? mean HU inside the effusion on the CF's slices (lung is about -850)
            "effusion_mean_hu_reconstruction": float(rec_hu[in_chunk].mean()) if in_chunk.any() else None,
            "effusion_mean_hu_counterfactual": float(cf_hu[in_chunk].mean()) if in_chunk.any() else None,
            "timings_s": summary["timings_s"],
        }
        summary["demo"] = results[mode] | {"effusion_slices": [e0, e1]}
        write_json_atomic(out / mode / "summary.json", summary)
    from CTCounterfactualLib.jobs.demo_report import write_report

    write_report(out, phantom, results)
    write_json_atomic(out / "demo.json", results)
    return results
