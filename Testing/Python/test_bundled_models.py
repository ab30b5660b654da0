"""The bundled demo models: catalog SHA256, what they were trained on, and the demo end to end on the real chest CT."""

import json
import shutil

import numpy as np
import pytest
import torch

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.jobs.demo import make_demo_input
from CTCounterfactualLib.models.checkpoints import sha256_of
from CTCounterfactualLib.store.catalog import CATALOG_PATH, load_bundled_classifier, read_catalog, verified_path


def test_catalog_entries_match_their_files_and_stay_small():
    entries = {name: e for name, e in read_catalog().items() if e.bundled}  # the published ones are downloaded
    assert {"demo-vqgan", "demo-vqgan-256", "demo-effusion", "demo-lungsize"} <= set(entries)
    total = 0
    for e in entries.values():
        p = verified_path(e)
        assert sha256_of(p) == e.sha256 and p.stat().st_size == e.bytes
        total += e.bytes + p.with_suffix(".json").stat().st_size
    assert total < 20 * 2**20
    assert entries["demo-effusion"].targets == ["pleural effusion"]
    assert entries["demo-lungsize"].targets == ["lung size"]
    for e in entries.values():  # the input convention travels with the catalog entry
        sidecar = json.loads(e.path().with_suffix(".json").read_text(encoding="utf-8"))
        assert e.convention == sidecar["convention"] and e.convention["window"] == [-1000.0, 1000.0]


def test_the_256_vqgan_reconstructs_the_chest_ct_closer_than_the_128_one():
    from CTCounterfactualLib.data.demo_ct import load_demo_ct
    from CTCounterfactualLib.evaluation.localization import body_mask
    from CTCounterfactualLib.store.catalog import load_bundled_autoencoder
    from CTCounterfactualLib.training.ae_grids import REAL_GRID_NAMES
    from CTCounterfactualLib.training.autoencoder import reconstruction_fit_hu

    hu = load_demo_ct().hu[20:26]  # six slices through the lungs, the heart and the chest wall
    fits = {}
    for size, name in REAL_GRID_NAMES.items():
        ae, _ = load_bundled_autoencoder(name)
        assert ae.convention.size == size, name
        fits[size] = reconstruction_fit_hu(ae, hu, body_mask(hu))
    assert fits[256]["mae_hu_body"] < 0.7 * fits[128]["mae_hu_body"], fits
    assert 0.85 <= fits[256]["slope"] <= 1.15, fits


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
def demo_run(wheel_demo):
    """The demo exactly as ``make demo`` runs it (the installed wheel's ``ctcf demo``, made once per test run for
    the CLI's and the wheel's tests too): its folder and demo.json, which holds what ``run_demo`` returned."""
    proc, folder = wheel_demo
    assert proc.returncode == 0, proc.stderr
    out = folder / "demo"
    return out, json.loads((out / "demo.json").read_text(encoding="utf-8"))


def test_bundled_models_are_trained_on_real_anatomy():
    entries = read_catalog()
    vq = json.loads(entries["demo-vqgan"].path().with_suffix(".json").read_text(encoding="utf-8"))
    assert vq["convention"]["size"] == 128 and vq["training"]["real_cts"] == ["ct.nii.gz", "example_ct.nii.gz"]
    heldout = vq["training"]["heldout_lung_pet_ct_dx_A0001"]
    assert set(heldout) == {"mae_hu_body", "slope", "intercept_hu"}
    clf = entries["demo-effusion"].training
    # every real chest CT but the held-out patient trains it; each chest CT was held out once, and its numbers kept
    assert clf["heldout_patient"] == "lung_pet_ct_dx_A0001" and clf["heldout_patient"] not in clf["patients"]
    assert {"LIDC-IDRI-0001", "lung1_image", "lung2_image", "example_ct"} <= set(clf["patients"])
    lopo = clf["leave_one_patient_out"]
    assert set(lopo) == {"LIDC-IDRI-0001", "lung1_image", "lung2_image", "lung_pet_ct_dx_A0001"}
    assert all(0.5 < lopo[p]["auc"] <= 1 for p in lopo), lopo  # better than chance on every unseen patient
    assert set(clf["leave_one_family_out"]) == {"crescent", "layering", "recess", "loculated", "bilateral"}
    assert entries["demo-effusion"].path().with_suffix(".json").is_file()


def test_demo_prediction_falls_below_threshold(demo_run):
    out, r = demo_run
    for mode in ("scan", "joint"):
        p = r[mode]["predictions"]
        assert p["input"] > r["threshold"], mode
        assert p["counterfactual"] < r["threshold"], mode
        assert p["counterfactual"] < p["reconstruction"], mode
    # the fluid on the CF's slices darkens (towards lung density) from the input the CF starts at
    for mode in ("scan", "joint"):
        drop = r[mode]["effusion_mean_hu_input"] - r[mode]["effusion_mean_hu_counterfactual"]
        assert drop > 10, (mode, drop)


def test_bundled_classifier_gradient_over_the_fluid_has_no_slice_to_slice_checkerboard():
    """The gradient over the fluid keeps its sign from one slice to the next, flipping at most twice over the
    effusion (a strided classifier's gradient alternated on every slice, and its CF brightened the fluid on every
    other slice), and the classifier looks at the fluid: its gradient there is far denser than over the body."""
    demo = make_demo_input()
    clf, _ = load_bundled_classifier()
    hu = torch.tensor(demo.hu, dtype=torch.float32, requires_grad=True)
    clf.score(hu, clf.target_index("pleural effusion")).backward()
    grad, fluid = hu.grad.numpy(), demo.effusion
    rows = [z for z in range(len(fluid)) if fluid[z].sum() >= 700]
    assert len(rows) >= 10
    per_slice = np.array([grad[z][fluid[z]].mean() for z in rows])
    signs = np.sign(per_slice[np.abs(per_slice) > 0.05 * np.abs(per_slice).max()])
    flips = int((signs[1:] != signs[:-1]).sum())
    assert flips <= 2, dict(zip(rows, per_slice, strict=True))
    density_fluid = np.abs(grad[fluid]).mean()
    assert density_fluid > 3 * np.abs(grad[demo.body]).mean()


def test_demo_heatmap_sits_on_the_effusion(demo_run):
    out, r = demo_run
    assert r["scan"]["output_chunk_overlaps_effusion"]
    for mode in ("scan", "joint"):
        share = r[mode]["heatmap_share_in_effusion_dilated_5mm"]
        # the heatmap is denser near the effusion than over the body as a whole
        assert share > r["effusion_dilated_share_of_body"], (mode, share)
        assert r[mode]["heatmap_share_in_effusion"] <= share
    summary = json.loads((out / "scan" / "summary.json").read_text(encoding="utf-8"))
    assert summary["demo"]["heatmap_share_in_effusion_dilated_5mm"] == pytest.approx(
        r["scan"]["heatmap_share_in_effusion_dilated_5mm"]
    )


def test_demo_help_says_which_effusion_the_demo_draws(demo_run, capsys):
    from CTCounterfactualLib.cli import main
    from CTCounterfactualLib.data.effusion import family_of
    from CTCounterfactualLib.params import DEMO_EFFUSION_DESCRIPTION, DEMO_EFFUSION_SEED

    _, r = demo_run
    src = r["source"]
    assert src["effusion_seed"] == DEMO_EFFUSION_SEED
    drawn = f"a {src['effusion']} {family_of(DEMO_EFFUSION_SEED)} of {src['effusion_ml']:.0f} ml"
    assert drawn == DEMO_EFFUSION_DESCRIPTION
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert DEMO_EFFUSION_DESCRIPTION in " ".join(capsys.readouterr().out.split())


def test_demo_writes_everything(demo_run):
    out, _ = demo_run
    for name in ("input.nrrd", "labels.nrrd", "report.png", "demo.json"):
        assert (out / name).is_file(), name
    for mode in ("scan", "joint"):
        for name in ("counterfactual.nrrd", "heatmap.nrrd", "chunks.csv", "predictions.png", "summary.json"):
            assert (out / mode / name).is_file(), (mode, name)
    assert CATALOG_PATH.is_file()
    assert np.isfinite(json.loads((out / "demo.json").read_text(encoding="utf-8"))["scan"]["predictions"]["input"])
