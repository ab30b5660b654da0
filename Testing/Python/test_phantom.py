"""Chest phantom: deterministic, labels consistent with HU, effusion where it belongs."""

import numpy as np
import pytest

from CTCounterfactualLib.data.phantom import LABELS, PhantomSpec, make_phantom


@pytest.fixture(scope="module")
def effusion_phantom():
    return make_phantom(PhantomSpec(seed=7, effusion="right", nodules=2))


def test_same_seed_same_volume_other_seed_other_volume():
    a = make_phantom(PhantomSpec(seed=3, effusion="both"))
    b = make_phantom(PhantomSpec(seed=3, effusion="both"))
    c = make_phantom(PhantomSpec(seed=4, effusion="both"))
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


@pytest.mark.parametrize(
    "name,low,high",
    [
        ("right_lung", -900, -800),
        ("left_lung", -900, -800),
        ("effusion", 0, 20),
        ("heart", 30, 60),
        ("spine", 300, 1000),
        ("ribs", 300, 1000),
        ("body", -120, 60),
        ("background", -1010, -990),
    ],
)
def test_labels_consistent_with_hu(effusion_phantom, name, low, high):
    m = effusion_phantom.labels == LABELS[name]
    assert m.sum() > 20, name
    assert low <= float(np.median(effusion_phantom.hu[m])) <= high


def test_effusion_is_posterior_in_the_right_pleural_space(effusion_phantom):
    p = effusion_phantom
    eff = p.labels == LABELS["effusion"]
    a, b = p.effusion_slices
    assert 0 <= a < b <= p.hu.shape[0]
    assert not eff[:a].any() and not eff[b:].any()
    _, rows, cols = np.nonzero(eff)
    _, lrows, _ = np.nonzero(p.labels == LABELS["right_lung"])
    assert rows.mean() > lrows.mean() + 10  # dependent: larger row = posterior
    assert cols.mean() < p.hu.shape[2] / 2  # patient's right = image left in LPS


def test_no_effusion_when_not_asked():
    p = make_phantom(PhantomSpec(seed=7, effusion="none"))
    assert p.effusion_slices is None
    assert not (p.labels == LABELS["effusion"]).any()


def test_size_spacing_and_geometry():
    p = make_phantom(PhantomSpec(seed=1, slices=20, size=96, spacing_mm=(3.0, 3.0, 4.0)))
    assert p.hu.shape == (20, 96, 96) and p.hu.dtype == np.float32
    assert p.geometry.size == (96, 96, 20) and p.geometry.spacing == (3.0, 3.0, 4.0)
