"""The bundled demo models: catalog SHA256, loading, and the demo end to end on a small phantom."""

import json
import shutil

import numpy as np
import pytest

from CTCounterfactualLib.data.phantom import PhantomSpec
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.jobs.demo import run_demo
from CTCounterfactualLib.models.checkpoints import sha256_of
from CTCounterfactualLib.store.catalog import CATALOG_PATH, read_catalog, verified_path


def test_catalog_entries_match_their_files_and_stay_small():
    entries = {name: e for name, e in read_catalog().items() if e.bundled}  # the published ones are downloaded
    assert {"demo-vqgan", "demo-effusion", "demo-lungsize"} <= set(entries)
    total = 0
    for e in entries.values():
        p = verified_path(e)
        assert sha256_of(p) == e.sha256 and p.stat().st_size == e.bytes
        total += e.bytes + p.with_suffix(".json").stat().st_size
    assert total < 20 * 2**20
    assert entries["demo-effusion"].targets == ["pleural effusion"]
    assert entries["demo-lungsize"].targets == ["lung size"]
    for e in entries.values():  # the input convention travels with the catalog entry
        sidecar = json.loads(e.path().with_suffix(".json").read_text())
        assert e.convention == sidecar["convention"] and e.convention["window"] == [-1000.0, 1000.0]


def test_damaged_model_file_is_refused(tmp_path):
    entry = read_catalog()["demo-effusion"]
    root = tmp_path / "models"
    root.mkdir()
    bad = root / entry.file
    shutil.copy(entry.path(), bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(CTCFError, match="does not match the catalog"):
        verified_path(entry, root)
    (root / entry.file).unlink()
    with pytest.raises(CTCFError, match="missing"):
        verified_path(entry, root)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    spec = PhantomSpec(seed=31, slices=32, effusion="right", effusion_depth_mm=35.0, effusion_extent=(0.1, 0.6))
    return out, run_demo(out, spec=spec, chunk_size=8)


def test_demo_prediction_falls_below_threshold(demo_run):
    out, r = demo_run
    for mode in ("scan", "joint"):
        p = r[mode]["predictions"]
        assert p["input"] > r["threshold"], mode
        assert p["counterfactual"] < r["threshold"], mode
        assert p["counterfactual"] < p["reconstruction"] - 0.3, mode
    # the fluid on the CF's slices moves towards lung density
    scan = r["scan"]
    assert scan["effusion_mean_hu_counterfactual"] < scan["effusion_mean_hu_reconstruction"]


def test_demo_heatmap_sits_on_the_effusion(demo_run):
    out, r = demo_run
    assert r["scan"]["output_chunk_overlaps_effusion"]
    for mode in ("scan", "joint"):
        share = r[mode]["heatmap_share_in_effusion_dilated_5mm"]
        # the heatmap is several times denser near the effusion than over the body as a whole
        assert share > 3 * r["effusion_dilated_share_of_body"], (mode, share)
        assert r[mode]["heatmap_share_in_effusion"] <= share
    summary = json.loads((out / "scan" / "summary.json").read_text())
    assert summary["demo"]["heatmap_share_in_effusion_dilated_5mm"] == pytest.approx(
        r["scan"]["heatmap_share_in_effusion_dilated_5mm"]
    )


def test_demo_writes_everything(demo_run):
    out, _ = demo_run
    for name in ("input.nrrd", "labels.nrrd", "report.png", "demo.json"):
        assert (out / name).is_file(), name
    for mode in ("scan", "joint"):
        for name in ("counterfactual.nrrd", "heatmap.nrrd", "chunks.csv", "predictions.png", "summary.json"):
            assert (out / mode / name).is_file(), (mode, name)
    assert CATALOG_PATH.is_file()
    assert np.isfinite(json.loads((out / "demo.json").read_text())["scan"]["predictions"]["input"])
