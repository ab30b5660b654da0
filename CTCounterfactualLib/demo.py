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
import SimpleITK as sitk

from .catalog import load_bundled_autoencoder, load_bundled_classifier
from .explain import ExplainConfig
from .latent_ops import Progress, _noop
from .outputs import write_json_atomic
from .phantom import LABELS, PhantomSpec, make_phantom
from .pipeline import explain_file
from .volume_io import Geometry, image_from_array, read_volume, write_volume

DEMO_SPEC = PhantomSpec(seed=2024, effusion="right", effusion_depth_mm=35.0, effusion_extent=(0.1, 0.55), nodules=1)


def dilated_mask(mask: np.ndarray, geometry: Geometry, mm: float) -> np.ndarray:
    """``mask`` dilated by a ball of ``mm`` millimetres (per-axis radius from the spacing)."""
    img = image_from_array(mask.astype(np.uint8), geometry)
    radius = [max(1, int(round(mm / s))) for s in geometry.spacing]
    out = sitk.BinaryDilate(img, radius, sitk.sitkBall)
    return sitk.GetArrayFromImage(out).astype(bool)


def heatmap_share(heatmap: np.ndarray, mask: np.ndarray) -> float:
    total = float(heatmap.sum())
    return float(heatmap[mask].sum() / total) if total > 0 else 0.0


def run_demo(
    out_dir: str | os.PathLike, progress: Progress = _noop, spec: PhantomSpec = DEMO_SPEC, chunk_size: int = 8
) -> dict:
    """Run the whole demo into ``out_dir``; returns the numbers it checks (also in demo.json)."""
    out = Path(out_dir)
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
    from .report import write_report

    write_report(out, phantom, results)
    write_json_atomic(out / "demo.json", results)
    return results
