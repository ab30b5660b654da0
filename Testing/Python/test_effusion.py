"""Simulated pleural effusion on the bundled real chest CT (LIDC-IDRI-0001)."""

import numpy as np
import pytest

from CTCounterfactualLib.data.demo_ct import LEFT_LUNG_LABELS, RIGHT_LUNG_LABELS, load_demo_ct
from CTCounterfactualLib.data.effusion import (
    FLUID_HU_RANGE,
    computed_lung_mask,
    physical_axes,
    simulate_effusion,
)


@pytest.fixture(scope="module")
def ct():
    return load_demo_ct()


@pytest.fixture(scope="module")
def effusion(ct):
    return simulate_effusion(ct.hu, ct.geometry, seed=3, labels=ct.labels)


def test_fluid_replaces_only_posterior_lung(ct, effusion):
    lungs = np.isin(ct.labels, RIGHT_LUNG_LABELS + LEFT_LUNG_LABELS)
    assert effusion.mask.sum() > 1000
    assert not (effusion.mask & ~lungs).any()  # never over ribs, muscle, mediastinum
    _, y, _ = physical_axes(ct.geometry)
    y = np.broadcast_to(y, ct.hu.shape)
    assert y[effusion.mask].mean() > y[lungs].mean() + 20  # LPS +y is posterior: the fluid lies dependent


def test_mask_is_exactly_the_changed_voxels_and_input_is_kept(ct, effusion):
    before = ct.hu.copy()
    again = simulate_effusion(ct.hu, ct.geometry, seed=3, labels=ct.labels)
    assert np.array_equal(ct.hu, before)
    assert np.array_equal(again.hu != ct.hu, effusion.mask)
    assert np.array_equal(effusion.mask, effusion.fraction > 0)


def test_fluid_has_effusion_density_and_the_scans_noise(ct, effusion):
    full = effusion.fraction == 1
    assert full.sum() > 500
    lo, hi = FLUID_HU_RANGE
    assert lo - 3 <= effusion.hu[full].mean() <= hi + 3
    assert abs(effusion.hu[full].mean() - effusion.params.fluid_hu) < 2
    assert 5 < effusion.hu[full].std() < 40  # soft-tissue noise of this scan, not a flat fill
    edge = (effusion.fraction > 0) & (effusion.fraction < 1)
    assert edge.sum() > 0.1 * effusion.mask.sum()  # partial-volume rim


def test_deterministic_by_seed_and_seeds_differ(ct, effusion):
    same = simulate_effusion(ct.hu, ct.geometry, seed=3, labels=ct.labels)
    assert np.array_equal(same.hu, effusion.hu) and same.params == effusion.params
    other = simulate_effusion(ct.hu, ct.geometry, seed=4, labels=ct.labels)
    assert not np.array_equal(other.mask, effusion.mask)


def test_side_is_respected_and_cranio_caudal_extent_starts_at_the_base(ct):
    right = simulate_effusion(ct.hu, ct.geometry, seed=5, labels=ct.labels, side="right")
    assert right.mask.any() and not (right.mask & np.isin(ct.labels, LEFT_LUNG_LABELS)).any()
    lung_rows = np.flatnonzero(np.isin(ct.labels, RIGHT_LUNG_LABELS).any(axis=(1, 2)))
    assert right.slices[0] <= lung_rows[0] + 2 and right.slices[1] < lung_rows[-1]  # base, not apex (z up)


def test_without_labels_the_lungs_are_computed_on_the_ct(ct):
    lungs = np.isin(ct.labels, RIGHT_LUNG_LABELS + LEFT_LUNG_LABELS)
    computed = computed_lung_mask(ct.hu, ct.geometry)
    dice = 2 * (computed & lungs).sum() / (computed.sum() + lungs.sum())
    assert dice > 0.9
    e = simulate_effusion(ct.hu, ct.geometry, seed=3)
    assert e.mask.sum() > 1000 and not (e.mask & ~computed).any()
