"""``ctcf evaluate --real-ct``: a cohort of real CTs with and without simulated effusions."""

import numpy as np
import pytest

from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.evaluation.cohort import BUNDLED_CT, load_item, real_effusion_cohort


def test_real_cohort_positives_are_the_negatives_plus_fluid():
    items = real_effusion_cohort([BUNDLED_CT], positives=2, seed=7)
    assert [(i.label, i.seed) for i in items] == [(1, 7), (1, 8), (0, None)]
    pos, pos2, neg = (load_item(i) for i in items)
    assert neg.mask is None and pos.mask is not None and pos.mask.any()
    assert pos.hu.shape == neg.hu.shape and pos.hu.shape[1:] == (128, 128)  # the models' grid
    assert np.array_equal(pos.hu != neg.hu, pos.mask)  # the only difference is the fluid
    assert not np.array_equal(pos.mask, pos2.mask)


def test_real_cohort_refuses_a_missing_ct(tmp_path):
    with pytest.raises(CTCFError, match="does not exist"):
        real_effusion_cohort([str(tmp_path / "missing.nii.gz")], positives=1)


def test_the_report_describes_a_real_cohort_as_such():
    from CTCounterfactualLib.evaluation.run import describe_cohort

    text = describe_cohort(real_effusion_cohort([BUNDLED_CT], positives=3, seed=7))
    assert text.startswith("3 positives: 1 real CT(s) (`bundled`)")
    assert "simulated pleural effusion of seed 7-9" in text and "1 negatives: the same CTs without fluid" in text


def _row(path, label, pred, cf=0.3, source="real"):
    return {
        "source": source,
        "path": path,
        "label": label,
        "input": pred,
        "cf": cf,
        "cf_joint": cf - 0.1,
        "threshold": 0.5,
    }


def test_the_report_splits_a_real_cohort_by_source_ct():
    from CTCounterfactualLib.evaluation.aggregate import by_ct
    from CTCounterfactualLib.evaluation.report_md import _by_ct

    rows = [
        _row("a", 1, 0.9),
        _row("a", 1, 0.4, cf=0.45),
        _row("a", 0, 0.6),
        _row("b", 1, 0.55, cf=0.2),
        _row("b", 0, 0.2),
    ]
    cts = by_ct(rows)
    assert list(cts) == ["a", "b"]
    a, b = cts["a"], cts["b"]
    assert a["positives"]["n"] == 2 and a["positives"]["mean"] == pytest.approx(0.65)
    assert a["negatives"]["mean"] == pytest.approx(0.6)
    assert a["above_every_negative"]["mean"] == pytest.approx(0.5)  # 0.9 above the CT's 0.6, 0.4 not
    assert a["positives_detected"] == 1 and a["flipped_below_threshold"]["mean"] == 1.0
    assert b["above_every_negative"]["mean"] == 1.0 and b["cf_joint"]["mean"] == pytest.approx(0.1)
    lines = _by_ct({"by_ct": cts})
    assert any(line.startswith("| `a` | 0.650 ± 0.250 (n = 2) | 0.600 ± 0.000 | 50 ± 50 %") for line in lines)
    # phantoms and CSV cohorts have one anatomy per volume: no per-CT table
    assert by_ct([_row("x", 1, 0.9, source="phantom")]) == {} and _by_ct({"by_ct": {}}) == []
