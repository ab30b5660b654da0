"""``ctcf explain`` with the search variants: --region from a mask file, the per-run metrics in summary.json and
on the result line, and the one-line refusals."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from cli_runner import run_main

from CTCounterfactualLib.data.volume_io import read_volume, write_volume

pytestmark = pytest.mark.usefixtures("torch_on_one_thread")
QUICK = ("--max-steps", "200", "--lambda-sweep-steps", "3", "--progress", "none")


def _argv(ct, out, models, *extra):
    ae, clf = models
    return ["explain", ct, "--out", out, "--autoencoder", ae, "--classifier", clf, "--target", "effusion", *extra]


def test_region_run_changes_only_the_region_and_says_so(tmp_path, small_ct, tiny_model_files, capsys):
    vol = read_volume(small_ct)
    region = np.zeros(vol.array.shape, np.uint8)
    region[8:14, 16:48, 16:48] = 1
    write_volume(region, vol.geometry, tmp_path / "region.nrrd")
    out = tmp_path / "out"
    argv = _argv(small_ct, out, tiny_model_files, "--mode", "joint", "--region", tmp_path / "region.nrrd", *QUICK)
    assert run_main(argv) == 0
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    m = summary["metrics"]
    assert summary["search"]["region"] == str(tmp_path / "region.nrrd")
    assert m["region"]["voxels"] == int(region.sum()) and m["region"]["mean_abs_hu_outside"] == 0.0
    cf = read_volume(out / "counterfactual.nrrd").array
    assert np.array_equal(cf[region == 0], vol.array[region == 0])
    assert "region: changing only the region" in text
    assert f"{m['proximity_hu']:.1f} HU" in text and ("valid" in text)


def test_region_on_another_grid_is_one_line(tmp_path, small_ct, tiny_model_files, capsys):
    vol = read_volume(small_ct)
    geometry = dataclasses.replace(vol.geometry, size=(vol.geometry.size[0], vol.geometry.size[1], 3))
    write_volume(np.ones((3, *vol.array.shape[1:]), np.uint8), geometry, tmp_path / "short.nrrd")
    argv = _argv(small_ct, tmp_path / "out", tiny_model_files, "--region", tmp_path / "short.nrrd", *QUICK)
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctcf: error: the region mask short.nrrd is not on the input's grid") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_faithful_with_a_variant_is_one_line(tmp_path, small_ct, tiny_model_files, capsys):
    argv = _argv(small_ct, tmp_path / "out", tiny_model_files, "--faithful", "--sparse-fraction", "0.1", *QUICK)
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ctcf: error: --faithful reproduces the reference's straight shift; leave out --sparse-fraction"


def test_variant_options_reach_the_summary(tmp_path, small_ct, tiny_model_files, capsys):
    out = tmp_path / "out"
    extra = ("--mode", "joint", "--sparse-fraction", "0.2", "--relinearize-every", "2", "--counterfactual", "decoded")
    assert run_main(_argv(small_ct, out, tiny_model_files, *extra, *QUICK)) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["search"]["sparse_fraction"] == 0.2 and summary["search"]["relinearize_every"] == 2
    assert summary["counterfactual"] == "decoded" and summary["difference"] == "counterfactual - reconstruction"
    assert set(summary["metrics"]) >= {"valid", "proximity_hu", "concentration_top1pct", "threshold"}
