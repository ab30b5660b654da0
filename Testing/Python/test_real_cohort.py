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
