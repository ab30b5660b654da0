"""``ctcf evaluate`` end to end on a tiny phantom cohort and on a CSV cohort, plus its statistics."""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from CTCounterfactualLib.cli import main
from CTCounterfactualLib.data.phantom import make_phantom
from CTCounterfactualLib.data.volume_io import read_volume, write_volume
from CTCounterfactualLib.evaluation.saliency import eager_effusion_net
from CTCounterfactualLib.evaluation.stats import mann_whitney, wilcoxon_signed_rank
from CTCounterfactualLib.store.catalog import load_bundled_classifier
from CTCounterfactualLib.training.classifier import random_effusion_spec, roc_auc

SLICES = 8  # two chunks of 4: the sweep, the Table 1 CF and the composite each see more than one chunk
CHUNK = 4
EACH = 2  # positives and negatives: two of each give every table, test and figure its inputs
SECTIONS = (
    "## 1. Cohort",
    "## 2. Table 1",
    "## 3. Chunk-size sweep",
    "## 4. Localization",
    "## 5. Lung size",
    "## 6. Saliency",
    "## 7. Identity",
)
FIGURES = (
    "fig5a_chunk_sweep.png",
    "fig5b_distributions.png",
    "localization.png",
    "saliency.png",
    "lungsize.png",
    "identity.png",
)


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _score(clf, hu):
    with torch.no_grad():
        return float(clf.score(torch.as_tensor(hu), 0, clip=True))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "report"
    argv = [
        "evaluate",
        "--out",
        str(out),
        "--positives",
        str(EACH),
        "--negatives",
        str(EACH),
        "--seed",
        "40000",
        "--phantom-slices",
        str(SLICES),
        "--chunk-size",
        str(CHUNK),
        "--chunk-sizes",
        f"{CHUNK},joint",
        "--workers",
        "2",
        "--lungsize-volumes",
        "1",
        "--variants",
        "none",  # the variants beside the reference runs: the user's-cohort run (conftest.csv_cohort_run)
        "--sanity-volumes",
        "0",
        "--progress",
        "none",
    ]
    assert main(argv) == 0
    return out, json.loads((out / "evaluation.json").read_text(encoding="utf-8"))


def test_report_has_every_part_filled_from_the_run(tiny_run):
    out, doc = tiny_run
    text = (out / "report.md").read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert heading in text, heading
    t1 = doc["summary"]["table1"]["rows"]
    for key in ("positives:input", "negatives:input", "positives:cf", "negatives:cf"):
        assert t1[key]["n"] == EACH
        assert f"{t1[key]['mean']:.3f} ± {t1[key]['se']:.3f}" in text, key
    for name in FIGURES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no staging folder left


def test_per_volume_predictions_are_the_classifiers(tiny_run):
    out, doc = tiny_run
    rows = _rows(out / "volumes.csv")
    assert sorted(int(r["label"]) for r in rows) == [0] * EACH + [1] * EACH
    clf, _ = load_bundled_classifier()
    for r in rows:
        hu = make_phantom(random_effusion_spec(int(r["seed"]), r["label"] == "1", slices=SLICES)).hu
        assert float(r["input"]) == pytest.approx(_score(clf, hu), abs=1e-5), r["name"]
        cf, rec = float(r["cf"]), float(r["reconstruction"])
        assert cf <= rec + 1e-7  # the minimum over the sweep includes lambda = 0, D(E(x))
        if r["label"] == "1":
            assert cf < float(r["input"]), r["name"]
    sweep = _rows(out / "sweep.csv")
    assert len(sweep) == 2 * EACH * 2 and {s["entry"] for s in sweep} == {str(CHUNK), "joint"}
    assert all(s["n_chunks"] == "2" for s in sweep if s["entry"] == str(CHUNK))


def test_statistics_saliency_identity_and_lung_size(tiny_run):
    out, doc = tiny_run
    s = doc["summary"]
    for test in s["table1"]["tests"].values():
        assert 0.0 <= test["p"] <= 1.0
    loc = _rows(out / "localization.csv")
    methods = {r["method"] for r in loc}
    assert {"Saliency", "InputXGradient", "GuidedBackprop", "GradCAM"} <= methods
    # every positive has a mask: two reference Latent Shift maps and four baselines
    assert len(loc) == EACH * 6
    for r in loc:
        for key in ("share_in_mask", "share_in_dilated"):
            assert 0.0 <= float(r[key]) <= 1.0
        assert float(r["share_in_mask"]) <= float(r["share_in_dilated"])
    ident = s["identity"]["positives"]
    assert ident["composite_matches_engine_max_abs_hu"] < 1e-2  # the recomputed chunk CF is the engine's
    assert ident["scan:mean_abs_hu_outside_dilated"]["n"] == EACH
    ls = s["lungsize"]
    assert ls["n_volumes"] == 1 and ls["max_engine_target_mismatch"] < 1e-4
    assert ls["cf_target"]["mean"] <= ls["reconstruction_target"]["mean"]
    assert len(_rows(out / "lungsize.csv")) == 10


def test_csv_cohort_of_the_users_volumes(csv_cohort_run):
    cohort, out = csv_cohort_run
    clf, _ = load_bundled_classifier()
    rows = _rows(out / "volumes.csv")
    assert [r["source"] for r in rows] == ["file", "file"]
    assert [r["has_mask"] for r in rows] == ["True", "False"]
    for r, name in zip(rows, ("a.nrrd", "b.nii.gz"), strict=True):
        path = cohort.parent / "data" / name
        assert float(r["input"]) == pytest.approx(_score(clf, read_volume(path).array), abs=1e-5)
    assert {r["name"] for r in _rows(out / "localization.csv")} == {rows[0]["name"]}
    assert "## 5. Lung size" in (out / "report.md").read_text(encoding="utf-8")


def test_bad_cohorts_fail_in_one_line_naming_the_volume(tmp_path, capsys):
    ph = make_phantom(random_effusion_spec(5, True, slices=SLICES))
    write_volume(ph.hu, ph.geometry, tmp_path / "a.nrrd")
    write_volume(ph.hu[:4], dataclasses.replace(ph.geometry, size=(128, 128, 4)), tmp_path / "short.nrrd")
    (tmp_path / "bad_label.csv").write_text("path,label\na.nrrd,maybe\n", encoding="utf-8")
    assert main(["evaluate", "--out", str(tmp_path / "o"), "--cohort", str(tmp_path / "bad_label.csv")]) == 2
    assert "label 'maybe' is not 0/1" in capsys.readouterr().err
    (tmp_path / "bad_mask.csv").write_text("path,label,mask\na.nrrd,1,short.nrrd\n", encoding="utf-8")
    assert (
        main(
            ["evaluate", "--out", str(tmp_path / "o"), "--cohort", str(tmp_path / "bad_mask.csv"), "--progress", "none"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("ctcf: error: volume 001_a failed:") and "\n" not in err and "must match" in err
    assert not (tmp_path / "o").exists()


def test_eager_classifier_for_captum_equals_the_torchscript_one():
    clf, _ = load_bundled_classifier()
    net = eager_effusion_net(clf)
    x = clf.convention.to_model(torch.as_tensor(make_phantom(random_effusion_spec(3, True, slices=SLICES)).hu))
    with torch.no_grad():
        assert torch.allclose(net(x), clf.module(x), atol=1e-5)


def test_wilcoxon_exact_and_mann_whitney_auc():
    # all five differences positive: the exact two-sided p is 2 / 2^5
    assert wilcoxon_signed_rank([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])["p"] == pytest.approx(2 / 32)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert wilcoxon_signed_rank(x, y)["p"] == pytest.approx(wilcoxon_signed_rank(y, x)["p"])
    assert wilcoxon_signed_rank(x + 2, y)["p"] < 1e-4 < wilcoxon_signed_rank(x, y)["p"]
    scores, labels = rng.random(40), np.array([1, 0] * 20)
    mw = mann_whitney(scores[labels == 1], scores[labels == 0])
    assert mw["auc"] == pytest.approx(roc_auc(scores, labels)) and 0 <= mw["p"] <= 1
