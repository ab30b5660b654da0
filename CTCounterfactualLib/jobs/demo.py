"""``ctcf demo``: the bundled real chest CT with a simulated pleural effusion, explained with the bundled models.

Writes ``input.nrrd`` (LIDC-IDRI-0001 + effusion seed ``DEMO_EFFUSION_SEED``) and ``labels.nrrd``
(1 = simulated fluid), runs ``scan`` (into ``scan/``) and ``joint`` (into ``joint/``) for the
effusion target, then records what a user should see: the predictions of input, reconstruction and
CF against the classifier's threshold, whether the scan's output chunk overlaps the effusion, the
heatmap's share within 5 mm of the fluid against that region's share of the body, and the fluid's
mean HU in the input, the reconstruction and the CF.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from CTCounterfactualLib.atomic import write_json_atomic
from CTCounterfactualLib.data.demo_ct import load_demo_ct
from CTCounterfactualLib.data.effusion import simulate_effusion
from CTCounterfactualLib.data.masks import dilated_mask, heatmap_share
from CTCounterfactualLib.data.volume_io import Geometry, image_from_array, read_volume, write_volume
from CTCounterfactualLib.jobs.explain_file import explain_file
from CTCounterfactualLib.method.explain import ExplainConfig
from CTCounterfactualLib.params import DEMO_EFFUSION_SEED
from CTCounterfactualLib.paths import check_writable_folder
from CTCounterfactualLib.progress import Progress, noop_progress
from CTCounterfactualLib.store.catalog import load_bundled_autoencoder, load_bundled_classifier

DEMO_EFFUSION_SIDE: str | None = None  # the seed's own side (DEMO_EFFUSION_DESCRIPTION says which)


@dataclass
class DemoInput:
    """The demo CT with its simulated effusion (``slices``: a z range of it)."""

    hu: np.ndarray
    effusion: np.ndarray
    body: np.ndarray
    geometry: Geometry
    name: str
    side: str


def make_demo_input(seed: int = DEMO_EFFUSION_SEED, slices: tuple[int, int] | None = None) -> DemoInput:
    """The bundled real chest CT plus simulated effusion ``seed`` on the demo's side."""
    ct = load_demo_ct()
    sim = simulate_effusion(ct.hu, ct.geometry, seed, ct.labels, side=DEMO_EFFUSION_SIDE)
    hu, effusion, body, geometry = sim.hu, sim.mask, ct.hu > -500, ct.geometry
    if slices is not None:
        z0, z1 = slices
        hu, effusion, body = hu[z0:z1], effusion[z0:z1], body[z0:z1]
        origin = image_from_array(ct.hu, geometry).TransformIndexToPhysicalPoint((0, 0, z0))
        geometry = Geometry((geometry.size[0], geometry.size[1], z1 - z0), geometry.spacing, origin, geometry.direction)
    return DemoInput(hu, effusion, body, geometry, ct.name, sim.params.side)


def run_demo(
    out_dir: str | os.PathLike,
    progress: Progress = noop_progress,
    seed: int = DEMO_EFFUSION_SEED,
    chunk_size: int = 8,
    slices: tuple[int, int] | None = None,
) -> dict:
    """Run the whole demo into ``out_dir`` (``slices``: a z range of the CT, for quick tests); returns its numbers."""
    out = Path(out_dir)
    check_writable_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    ae, ae_path = load_bundled_autoencoder()
    clf, clf_path = load_bundled_classifier()
    demo = make_demo_input(seed, slices)
    hu, effusion, body, geometry = demo.hu, demo.effusion, demo.body, demo.geometry
    write_volume(hu, geometry, out / "input.nrrd")
    write_volume(effusion.astype(np.uint8), geometry, out / "labels.nrrd")
    rows = np.flatnonzero(effusion.any(axis=(1, 2)))
    e0, e1 = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
    near = dilated_mask(effusion, geometry, 5.0)
    results: dict = {
        "source": {
            "ct": demo.name,
            "effusion_seed": seed,
            "effusion": demo.side,
            "effusion_ml": float(effusion.sum() * np.prod(geometry.spacing) / 1000),
            "effusion_slices": [e0, e1],
        },
        "threshold": clf.threshold,
        # what a heatmap spread evenly over the body would put near the effusion
        "effusion_dilated_share_of_body": float((near & body).sum() / body.sum()),
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
            "effusion_mean_hu_input": float(hu[in_chunk].mean()) if in_chunk.any() else None,
            "effusion_mean_hu_reconstruction": float(rec_hu[in_chunk].mean()) if in_chunk.any() else None,
            "effusion_mean_hu_counterfactual": float(cf_hu[in_chunk].mean()) if in_chunk.any() else None,
            "timings_s": summary["timings_s"],
        }
        summary["demo"] = results[mode] | {"effusion_slices": [e0, e1]}
        write_json_atomic(out / mode / "summary.json", summary)
    from CTCounterfactualLib.jobs.demo_report import write_report

    write_report(out, hu, effusion, results)
    write_json_atomic(out / "demo.json", results)
    return results
