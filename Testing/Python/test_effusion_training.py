"""Training data of the effusion classifier: plausible acquisitions, batches whose labels follow the fluid a crop keeps,
held-out scores and the threshold rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from CTCounterfactualLib.data.effusion import draw_params
from CTCounterfactualLib.training.acquisition import (
    SOURCE_Z_MM,
    Acquisition,
    apply_acquisition,
    coverage_window,
    draw_acquisition,
    in_plane_affine,
    resample_thickness,
)
from CTCounterfactualLib.training.effusion_data import BUNDLED, fluid_sample, load_patient
from CTCounterfactualLib.training.effusion_eval import PatientScores, choose_threshold, summarize
from CTCounterfactualLib.training.effusion_train import make_batch

IDENTITY = Acquisition(SOURCE_Z_MM, None, 1.0, 0.0, (0.0, 0.0), 0.0, 0.0, 0.0, 0.0, 1.0, False)


@pytest.fixture(scope="module")
def patient():
    return load_patient(BUNDLED)


@pytest.fixture(scope="module")
def sample(patient):
    """A crescent without atelectasis: only fluid voxels change."""
    seed = next(s for s in range(10, 60) if draw_params(s, family="crescent").atelectasis_mm == 0)
    return fluid_sample(patient, seed=seed, family="crescent")


def test_patient_and_effusion_on_the_classifier_grid(patient, sample):
    assert patient.x.shape == (1, 56, 64, 64) and sample.x.shape == patient.x.shape
    assert sample.mask.shape == patient.x.shape
    assert 0 <= float(sample.mask.min()) and float(sample.mask.max()) <= 1
    changed = (sample.x != patient.x)[0]
    near = F.max_pool3d(sample.mask, (1, 3, 3), stride=1, padding=(0, 1, 1))[0] > 0
    assert changed.any() and not changed[~near].any()  # the pair differs only at (and beside) the fluid


def test_thinner_slices_interpolate_and_thicker_ones_average():
    x = torch.randn(2, 40, 8, 8)
    thin = resample_thickness(x, 2.5)
    ref = F.interpolate(x[None], size=(80, 8, 8), mode="trilinear", align_corners=False)[0]
    assert torch.allclose(thin, ref, atol=1e-5)
    thick = resample_thickness(x, 8.0)
    assert thick.shape == (2, 25, 8, 8)  # the same 200 mm at 8 mm
    assert thick.std() < 0.7 * x.std()  # a thick slice averages the noise of what it covers
    const = torch.full((1, 40, 4, 4), 0.3)
    assert torch.allclose(resample_thickness(const, 8.0), torch.full((1, 25, 4, 4), 0.3), atol=1e-6)


def test_identity_acquisition_changes_nothing(patient, sample):
    x = torch.cat([sample.x, sample.mask])
    out = apply_acquisition(x, IDENTITY, torch.Generator().manual_seed(0))
    assert torch.allclose(out, x, atol=1e-5)
    assert torch.allclose(in_plane_affine(x, 1.0, 0.0, (0.0, 0.0)), x, atol=1e-5)


def test_acquisitions_are_seeded_and_never_touch_the_mask_values(sample):
    x = torch.cat([sample.x, sample.mask])

    def draw(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return apply_acquisition(x, draw_acquisition(g), g)

    a, b, c = draw(7), draw(7), draw(8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    for out in (a, c):
        assert out[1].min() >= -1e-6 and out[1].max() <= 1 + 1e-6  # no noise, gain or offset on the mask


def test_coverage_windows_keep_the_lower_or_upper_chest():
    g = torch.Generator().manual_seed(0)
    assert coverage_window(60, None, g) == (0, 60)
    assert coverage_window(60, ("lower", 0.5), g) == (0, 30)  # slice 0 is caudal
    assert coverage_window(60, ("upper", 0.5), g) == (30, 60)
    a, b = coverage_window(60, ("any", 0.5), g)
    assert b - a == 30 and 0 <= a <= 30


def test_batch_labels_follow_the_fluid_the_crop_keeps(patient, sample):
    neg = (patient.x, torch.zeros_like(patient.x))
    b = make_batch([(sample.x, sample.mask), neg], torch.Generator().manual_seed(1), coverage_share=0.0)
    assert b.x.shape[0] == 2 and b.x.shape == b.masks.shape
    assert b.labels.tolist() == [1.0, 0.0] and b.weights.tolist() == [1.0, 1.0]
    # a crop of the top slices keeps none of this basal effusion: a CT without fluid
    top = sample.x[:, -12:], sample.mask[:, -12:]
    assert float(top[1].sum()) == 0
    b = make_batch([top, neg], torch.Generator().manual_seed(1), coverage_share=0.0)
    assert b.labels.tolist() == [0.0, 0.0] and b.weights.tolist() == [1.0, 1.0]
    # every batch volume has the same depth, whatever the patients' lengths
    short = (patient.x[:, :40], torch.zeros_like(patient.x[:, :40]))
    b = make_batch([(sample.x, sample.mask), short], torch.Generator().manual_seed(2), coverage_share=0.0)
    assert (
        b.x.shape[2]
        == resample_thickness(short[0], draw_acquisition(torch.Generator().manual_seed(2)).thickness_mm).shape[1]
    )


def _scores(pos, ml, neg, fam=None) -> PatientScores:
    fam = fam or ["crescent"] * len(pos)
    return PatientScores("p", fam, list(ml), list(pos), list(pos), 0.1, list(neg))


def test_threshold_is_halfway_between_negative_95th_and_large_effusion_5th_percentiles():
    neg = np.linspace(0.0, 0.4, 101)  # 95th percentile 0.38
    pos = np.linspace(0.6, 1.0, 101)  # 5th percentile 0.62
    small = [0.05] * 50  # effusions under 100 ml do not set the threshold
    s = _scores(list(pos) + small, [150.0] * 101 + [20.0] * 50, neg)
    assert choose_threshold([s]) == pytest.approx(0.5)


def test_summary_counts_sensitivity_and_specificity_at_the_threshold():
    s = _scores(
        [0.9, 0.8, 0.3, 0.7], [200, 150, 30, 80], [0.1, 0.2, 0.6, 0.4], ["crescent", "recess", "recess", "loculated"]
    )
    row = summarize(s, 0.5)
    assert row["sensitivity"] == 0.75 and row["sensitivity_100ml"] == 1.0 and row["n_100ml"] == 2
    assert row["specificity"] == 0.75 and row["negative_native_below"] and row["negative_max"] == 0.6
    assert row["auc"] == pytest.approx(14 / 16)
    assert row["families"]["recess"] == {"n": 2, "auc": 0.75, "sensitivity": 0.5, "median_ml": 90.0}
    assert "layering" not in row["families"]
    assert summarize(dataclasses.replace(s, negatives=[0.95] * 4), 0.5)["specificity"] == 0.0


def _crop_patient(patient, name: str, z0: int, z1: int):
    """A shorter 'patient' cut from ``patient`` (slices z0:z1), with its own lungs and confounders."""
    from CTCounterfactualLib.data.lungs import ChestLungs
    from CTCounterfactualLib.training.effusion_data import Patient, to_classifier_grid

    ct = dataclasses.replace(
        patient.ct,
        hu=patient.ct.hu[z0:z1],
        labels=patient.ct.labels[z0:z1],
        geometry=dataclasses.replace(patient.ct.geometry, size=(128, 128, z1 - z0)),
        name=name,
    )
    lungs = ChestLungs.of(ct.hu, ct.geometry, ct.labels)
    return Patient(name, ct, lungs, to_classifier_grid(ct.hu), [c[:, z0:z1] for c in patient.confounders[:2]])


def test_leave_one_patient_out_holds_out_each_chest_patient_once(patient):
    from CTCounterfactualLib.training.effusion_folds import FoldPlan, leave_one_patient_out
    from CTCounterfactualLib.training.effusion_report import compact, markdown
    from CTCounterfactualLib.training.effusion_train import EffusionTrainConfig

    patients = [_crop_patient(patient, n, a, b) for n, a, b in (("A", 0, 24), ("B", 4, 28), ("C", 2, 26))]
    plan = FoldPlan(train_seeds=2, threshold_seeds=5, threshold_acquisitions=2, heldout_seeds=5, heldout_acquisitions=3)
    cfg = EffusionTrainConfig(epochs=1, pairs_per_batch=2)
    lines: list[str] = []
    rows = leave_one_patient_out(patients, plan, cfg, log=lines.append, train_only=1)
    assert [r["patient"] for r in rows] == ["A", "B"]  # C trains in every fold and is never held out
    assert [r["trained_on"] for r in rows] == [["B", "C"], ["A", "C"]]
    for r in rows:
        assert r["n_effusions"] == 5 and r["n_acquisitions"] == 3
        assert 0 <= r["auc"] <= 1 and 0 < r["threshold"] < 1
        assert set(r["families"]) == {"crescent", "layering", "recess", "loculated", "bilateral"}
    assert any("epoch 0" in line for line in lines) and any("held out" in line for line in lines)
    summary = compact(rows, [])
    assert set(summary["leave_one_patient_out"]) == {"A", "B"}
    assert summary["targets"]["auc_min"] == min(r["auc"] for r in rows)
    page = markdown(rows, [], "ctcf train-classifier ...", {"patients": ["B", "C"], "heldout": "A", "threshold": 0.5})
    assert "| A |" in page and "| B |" in page and "| C |" not in page and "leaves out A" in page


@pytest.mark.parametrize("heldout", [[], ["a.nrrd", "b.nrrd"]])
def test_real_ct_training_needs_exactly_one_heldout_chest_ct(tmp_path, capfd, heldout):
    from cli_runner import run_main

    argv = ["train-classifier", "--real-ct", "--out", tmp_path / "clf.pt"]
    for h in heldout:
        argv += ["--heldout", h]
    assert run_main(argv) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [
        "ctcf: error: --real-ct needs exactly one --heldout chest CT (the patient the shipped model never sees)"
    ]
    assert not (tmp_path / "clf.pt").exists()


def test_soft_tissue_window_option_trains_a_two_channel_net_from_the_command_line(tmp_path, capfd, monkeypatch):
    from cli_runner import run_main

    import CTCounterfactualLib.training.real_recipes as recipes
    from CTCounterfactualLib.training.classifier import SOFT_TISSUE_WINDOW_HU

    seen = {}

    def record_config(out, also, heldout, plan, cfg, *rest, **kw) -> dict:
        seen["cfg"] = cfg
        return {}

    monkeypatch.setattr(recipes, "real_effusion_classifier", record_config)
    argv = ["train-classifier", "--real-ct", "--out", tmp_path / "clf.pt", "--heldout", "a.nrrd"]
    assert run_main([*argv, "--soft-tissue-window"]) == 0
    assert seen.pop("cfg").windows == (SOFT_TISSUE_WINDOW_HU,)
    assert run_main(argv) == 0 and seen.pop("cfg").windows == ()  # the bundled model's recipe: one channel
    capfd.readouterr()
    assert run_main(["train-classifier", "--out", tmp_path / "p.pt", "--soft-tissue-window"]) == 2
    assert capfd.readouterr().err.strip().splitlines() == [
        "ctcf: error: --soft-tissue-window applies to --real-ct training only"
    ]


def test_training_with_a_window_gives_the_net_that_window(patient, sample):
    from CTCounterfactualLib.training.classifier import SOFT_TISSUE_WINDOW_HU, hu_window_in_model_units
    from CTCounterfactualLib.training.effusion_train import EffusionTrainConfig, train_effusion_net

    cfg = EffusionTrainConfig(epochs=1, pairs_per_batch=1, windows=(SOFT_TISSUE_WINDOW_HU,))
    net = train_effusion_net([sample], {patient.name: patient}, cfg)
    assert net.input_windows.tolist() == [pytest.approx(list(hu_window_in_model_units(SOFT_TISSUE_WINDOW_HU)))]
    assert net.features[1].in_channels == 2
    with torch.no_grad():
        assert torch.isfinite(net(sample.x[None, :, :16])).all()
