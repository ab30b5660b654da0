"""``ctcf evaluate``'s variant parts: COUT, the randomization check, held-out patients, and a run with only the
variants (no reference sweep)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
import torch

from CTCounterfactualLib.cli import main
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.evaluation.aggregate_variants import groups, variant_summary
from CTCounterfactualLib.evaluation.cohort import BUNDLED_CT, real_effusion_cohort
from CTCounterfactualLib.evaluation.cout import cout
from CTCounterfactualLib.evaluation.sanity import randomized, spearman
from CTCounterfactualLib.evaluation.variants import VARIANTS, parse_variants, region_of
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.store.catalog import load_bundled_classifier


class _OneVoxel(torch.nn.Module):
    """A 'classifier' that looks at one voxel of its [1, 1, D, H, W] input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[0, 0, 1, 2, 3] - 0.5).reshape(1) * 40.0


def test_cout_is_the_authors_area_difference_on_a_known_curve():
    clf = Classifier(_OneVoxel(), ["t"])
    x = np.zeros((3, 5, 6), np.float32)  # -> 0.5 in window units: p = 0.5
    x[1, 2, 3] = 600.0  # p = sigmoid(40 * 0.3) ~ 1
    cf = x.copy()
    cf[1, 2, 3] = -600.0  # the voxel that matters moves most: the first 1/50 of voxels flips the decision
    cf += np.where(cf == 0, 1.0, 0.0).astype(np.float32)  # every other voxel a little
    out = cout(clf, 0, x, cf)
    p_in, p_cf = out["curve_p"][0], out["curve_p"][-1]
    assert p_in > 0.99 and p_cf < 0.01 and all(v == p_cf for v in out["curve_p"][1:])
    auc_p = (p_in / 2 + 49 * p_cf + p_cf / 2) / 50
    assert out["aupc_p"] == pytest.approx(auc_p) and out["cout"] == pytest.approx((1 - auc_p) - auc_p)
    assert cout(clf, 0, x, x)["cout"] == pytest.approx(1 - 2 * p_in)  # nothing moves: the input's own margin


def test_randomized_classifier_and_spearman():
    clf, _ = load_bundled_classifier("demo-effusion")
    rand = randomized(clf)
    before = dict(clf.module.named_parameters())
    for name, p in rand.module.named_parameters():
        assert p.shape == before[name].shape and not torch.equal(p, before[name])
    assert torch.equal(
        next(iter(clf.module.parameters())), next(iter(load_bundled_classifier()[0].module.parameters()))
    )
    a = np.random.default_rng(0).random((4, 5, 6))
    region = np.ones(a.shape, bool)
    assert spearman(a, a * 3, region) == pytest.approx(1.0)
    assert spearman(a, -1 / (a + 1), region) == pytest.approx(-1.0)  # |.| reverses the order
    assert spearman(a, np.zeros_like(a), region) is None


def test_held_out_patients_are_marked_and_reported_apart():
    with pytest.raises(CTCFError, match="does not exist"):
        real_effusion_cohort([BUNDLED_CT], positives=4, held_out=("/no/such/ct.nii.gz",))
    items = real_effusion_cohort([], positives=3, seed=7, held_out=(BUNDLED_CT,))
    assert all(i.held_out for i in items) and [i.label for i in items] == [1, 1, 1, 0]
    rows = [
        {"label": 1, "held_out": h, "input": 0.8, "threshold": 0.5, "variants": {"detail-joint": _variant(cf)}}
        for h, cf in ((False, 0.3), (False, 0.6), (True, 0.2))
    ]
    assert list(groups(rows)) == ["positives", "positives, training patients", "positives, held-out patients"]
    s = variant_summary(rows, "detail-joint")
    assert s["positives"]["valid_if_detected"]["mean"] == pytest.approx(2 / 3)
    assert s["positives, held-out patients"]["valid_if_detected"]["mean"] == 1.0
    assert s["positives, training patients"]["n"] == 2


def _variant(cf: float) -> dict:
    loc = {"share_in_mask": 0.1, "share_in_dilated": 0.3, "pointing_hit": True, "chance_share_dilated": 0.04}
    return {
        "seconds": 1.0,
        "cf": cf,
        "valid": cf < 0.5,
        "proximity_hu": 5.0,
        "concentration": 0.2,
        "cout": 0.1,
        "outside_hu": 4.0,
        "finding_change_hu": -100.0,
        "discontinuity": {"adjacent_abs_delta_hu_inside_chunks": 1.0, "adjacent_abs_delta_hu_at_borders": 2.0},
        "loc_heatmap": loc,
        "loc_change": loc,
    }


def test_variant_names_and_regions():
    assert parse_variants("detail-joint, raise-joint") == ("detail-joint", "raise-joint")
    assert parse_variants("none") == ()
    with pytest.raises(CTCFError, match="--variants"):
        parse_variants("detail-joint,sideways")
    dilated = np.zeros((2, 3, 4), bool)
    dilated[:, :, 0] = True
    assert region_of(VARIANTS["region-joint"], dilated) is dilated
    assert region_of(VARIANTS["mirror-joint"], dilated)[:, :, 3].all()
    assert VARIANTS["raise-joint"].applies(0, False) and not VARIANTS["raise-joint"].applies(1, True)
    assert not VARIANTS["region-joint"].applies(1, False)


@pytest.fixture(scope="module")
def variants_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_variants") / "report"
    argv = ["evaluate", "--out", out, "--positives", "2", "--negatives", "1", "--phantom-slices", "8"]
    argv += ["--variants", "detail-joint,region-joint,mirror-joint,raise-joint", "--chunk-sizes", "none"]
    argv += ["--sanity-volumes", "1", "--lungsize-volumes", "0", "--workers", "1", "--progress", "none"]
    argv += ["--lambda-sweep-steps", "2"]  # no sweep decodes: the heatmap is |CF - start|
    assert main([str(a) for a in argv]) == 0
    return out, json.loads((out / "evaluation.json").read_text(encoding="utf-8"))


def test_a_variants_only_run_reports_every_variant_where_it_applies(variants_run):
    out, doc = variants_run
    text = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## 2. Table 1 analog (CF = the `detail-joint`", "## 8. Search variants", "## 9. Trade-off",
                    "## 10. Sanity check"):  # fmt: skip
        assert heading in text, heading
    assert "Not run (`--chunk-sizes none`)" in text
    assert "--lambda-sweep-steps 2" in doc["meta"]["command"]
    with open(out / "variants.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    by = {(r["name"], r["variant"]) for r in rows}
    assert {v for n, v in by if n.startswith("pos")} == {"detail-joint", "region-joint", "mirror-joint"}
    assert {v for n, v in by if n.startswith("neg")} == {"detail-joint", "raise-joint"}
    s = doc["summary"]
    assert s["variants"]["region-joint"]["positives"]["region_outside_hu"]["mean"] == 0.0  # only the region changes
    assert s["sanity"]["n_volumes"] == 1 and "spearman_saliency" in s["sanity"]
    vols = doc["volumes"]
    for r in vols:
        detail = r["variants"]["detail-joint"]
        assert r["cf"] == detail["cf_min"] and -1 <= detail["cout"] <= 1
    assert (out / "variants.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every figure the report shows was written (a run without reference chunk sizes has no saliency example)
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert "variants.png" in shown and all((out / name).is_file() for name in shown), shown
