"""``ctcf explain --sweep``: the output chunk's lambda sweep, written as slabs placed in the input's space."""

from __future__ import annotations

import csv
import json

import numpy as np
import SimpleITK as sitk

from CTCounterfactualLib.data.volume_io import read_volume


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def test_sweep_frames_match_the_outputs(swept_run, small_ct):
    rows = _rows(swept_run / "sweep" / "sweep.csv")
    assert len(rows) == 4  # --lambda-sweep-steps
    summary = json.loads((swept_run / "summary.json").read_text(encoding="utf-8"))
    chunk = summary["output_chunk"]
    a, b = chunk["start"], chunk["end"]
    assert all((int(r["slice_start"]), int(r["slice_end"])) == (a, b) for r in rows)
    lambdas = [float(r["lambda"]) for r in rows]
    assert lambdas[0] == float(chunk["lambda"]) and lambdas[-1] == 0.0
    assert lambdas == sorted(lambdas)  # from the CF's lambda (negative) up to 0
    cf = sitk.GetArrayFromImage(sitk.ReadImage(str(swept_run / "counterfactual.nrrd")))
    # lambda 0 is what the CF is compared with: the input (detail CF) or the reconstruction (decoded CF)
    start = small_ct if summary["counterfactual"] == "detail" else swept_run / "reconstruction.nrrd"
    recon = sitk.GetArrayFromImage(sitk.ReadImage(str(start)))
    first = sitk.GetArrayFromImage(sitk.ReadImage(str(swept_run / "sweep" / rows[0]["file"])))
    last = sitk.GetArrayFromImage(sitk.ReadImage(str(swept_run / "sweep" / rows[-1]["file"])))
    np.testing.assert_allclose(first, cf[a:b], atol=1e-3)
    np.testing.assert_allclose(last, recon[a:b], atol=1e-2)
    assert np.abs(first - last).max() > 1.0  # the sweep moves
    assert float(rows[0]["prediction"]) < float(rows[-1]["prediction"])


def test_sweep_slabs_sit_where_their_slices_are(swept_run, small_ct):
    rows = _rows(swept_run / "sweep" / "sweep.csv")
    a = int(rows[0]["slice_start"])
    image = sitk.ReadImage(str(small_ct))
    slab = read_volume(swept_run / "sweep" / rows[0]["file"]).geometry
    np.testing.assert_allclose(slab.origin, image.TransformIndexToPhysicalPoint((0, 0, a)), atol=1e-4)
    assert slab.spacing == tuple(image.GetSpacing()) and slab.direction == tuple(image.GetDirection())
    assert slab.size[:2] == image.GetSize()[:2]
