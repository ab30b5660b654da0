"""Simulated pleural effusion on the bundled real chest CT (LIDC-IDRI-0001): five fluid families and atelectasis."""

import dataclasses

import numpy as np
import pytest

from CTCounterfactualLib.data.demo_ct import LEFT_LUNG_LABELS, RIGHT_LUNG_LABELS, load_demo_ct
from CTCounterfactualLib.data.effusion import (
    DEPTH_MM_RANGES,
    FAMILIES,
    FLUID_HU_RANGE,
    HAEMOTHORAX_HU_RANGE,
    draw_params,
    family_of,
    fluid_fraction,
    simulate_effusion,
)
from CTCounterfactualLib.data.lungs import ChestLungs, computed_lung_mask, physical_axes


@pytest.fixture(scope="module")
def ct():
    return load_demo_ct()


@pytest.fixture(scope="module")
def lungs(ct):
    return ChestLungs.of(ct.hu, ct.geometry, ct.labels)


@pytest.fixture(scope="module")
def effusion(ct):
    return simulate_effusion(ct.hu, ct.geometry, seed=3, labels=ct.labels, family="crescent")


def _posterior_mm(ct, mask) -> float:
    """How far behind the lungs' mean y the fluid lies on average (LPS +y is posterior)."""
    lungs = np.isin(ct.labels, RIGHT_LUNG_LABELS + LEFT_LUNG_LABELS)
    _, y, _ = physical_axes(ct.geometry)
    y = np.broadcast_to(y, ct.hu.shape)
    return float(y[mask].mean() - y[lungs].mean())


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_replaces_only_lung_and_dependent_ones_lie_posterior(ct, lungs, family):
    e = simulate_effusion(ct.hu, ct.geometry, seed=11, labels=ct.labels, family=family, lungs=lungs)
    assert e.params.family == family
    assert e.mask.sum() > 50 and e.volume_ml > 2
    assert not (e.mask & ~lungs.both).any()  # never over ribs, muscle, mediastinum
    assert not (e.atelectasis & ~lungs.both).any() and not (e.atelectasis & e.mask).any()
    if family != "loculated":  # gravity: supine fluid lies at the back
        assert _posterior_mm(ct, e.mask) > 20
    assert (e.params.side == "both") == (family == "bilateral")


def test_a_run_of_seeds_cycles_through_the_families():
    assert [family_of(s) for s in range(10)] == list(FAMILIES) * 2
    assert [draw_params(s).family for s in range(5)] == list(FAMILIES)
    assert draw_params(7, family="recess").family == "recess"
    with pytest.raises(ValueError, match="family must be one of"):
        draw_params(7, family="pericardial")


def test_bilateral_fills_both_sides_unequally(ct, lungs):
    e = simulate_effusion(ct.hu, ct.geometry, seed=4, labels=ct.labels, lungs=lungs)
    assert e.params.family == "bilateral"
    right, left = (e.fraction * lungs.right).sum(), (e.fraction * lungs.left).sum()
    assert right > 0 and left > 0
    assert min(right, left) / max(right, left) < 0.999  # asymmetric


def test_layering_fluid_has_one_horizontal_level(ct, lungs):
    p = dataclasses.replace(draw_params(1, family="layering"), side="right", tilt_deg=0.0, top_fraction=0.6)
    frac = fluid_fraction(lungs, p, np.random.default_rng(0))
    full = frac >= 0.999
    rows = np.flatnonzero(full.any(axis=(1, 2)))
    assert len(rows) >= 5
    # where the lung reaches in front of the fluid, the fully filled fluid's front edge is one coronal plane on
    # every slice (to one voxel); on the lowest slices the lung lies wholly behind the level and fills entirely
    dy = ct.geometry.spacing[1]
    front = {k: lungs.y[k][full[k]].min() for k in rows}
    level = min(front.values())
    fronts = [front[k] for k in rows if lungs.y[k][lungs.right[k]].min() < level - 2 * dy]
    assert len(fronts) >= 5
    assert max(fronts) - min(fronts) <= dy * 1.01
    # and every lung voxel of that side behind the level holds fluid on those slices
    k = rows[len(rows) // 2]
    behind = lungs.right[k] & (lungs.y[k] > level + ct.geometry.spacing[1])
    assert behind.any() and full[k][behind].all()


def test_recess_fluid_stays_in_the_lowest_centimetres(ct, lungs):
    p = dataclasses.replace(draw_params(2, family="recess"), side="left")
    frac = fluid_fraction(lungs, p, np.random.default_rng(0))
    rows = np.flatnonzero((frac > 0).any(axis=(1, 2)))
    base = lungs.z[lungs.left.any(axis=(1, 2))].min()
    assert rows.size and lungs.z[rows].max() <= base + p.recess_mm + 1e-6
    lo, hi = DEPTH_MM_RANGES["recess"]
    assert lo <= p.depth_mm <= hi


def test_loculated_pocket_touches_the_chest_wall_away_from_the_mediastinum(ct, lungs):
    e = simulate_effusion(ct.hu, ct.geometry, seed=8, labels=ct.labels, lungs=lungs, side="right")
    assert e.params.family == "loculated"
    assert (e.fraction * (lungs.depth < 3)).sum() > 0  # it lies against the lung's outline
    x = np.broadcast_to(physical_axes(ct.geometry)[0], ct.hu.shape)
    mid = x[lungs.both].mean()
    assert np.abs(x[e.mask] - mid).mean() > np.abs(x[lungs.right] - mid).mean() * 0.9  # the lateral half


def test_changed_voxels_are_exactly_fluid_and_atelectasis_and_input_is_kept(ct, lungs):
    before = ct.hu.copy()
    seed = next(s for s in range(40) if draw_params(s).atelectasis_mm > 0)
    e = simulate_effusion(ct.hu, ct.geometry, seed, ct.labels, lungs=lungs)
    assert np.array_equal(ct.hu, before)
    assert np.array_equal(e.hu != ct.hu, e.mask | e.atelectasis)
    assert np.array_equal(e.mask, e.fraction > 0)
    assert e.atelectasis.sum() > 0
    # compressed lung is denser than the aerated lung it replaces
    assert e.hu[e.atelectasis].mean() > ct.hu[e.atelectasis].mean() + 50
    assert e.volume_ml == pytest.approx(float(e.fraction.sum() * np.prod(ct.geometry.spacing) / 1000))


def test_fluid_has_effusion_density_and_the_scans_noise(ct, effusion):
    full = effusion.fraction == 1
    assert full.sum() > 500
    lo, hi = HAEMOTHORAX_HU_RANGE if effusion.params.fluid_hu > FLUID_HU_RANGE[1] else FLUID_HU_RANGE
    assert lo - 3 <= effusion.hu[full & ~effusion.atelectasis].mean() <= hi + 3
    assert abs(effusion.hu[full].mean() - effusion.params.fluid_hu) < 2
    assert 5 < effusion.hu[full].std() < 40  # soft-tissue noise of this scan, not a flat fill
    edge = (effusion.fraction > 0) & (effusion.fraction < 1)
    assert edge.sum() > 0.1 * effusion.mask.sum()  # partial-volume rim


def test_some_draws_are_haemothorax():
    hu = [draw_params(s).fluid_hu for s in range(200)]
    assert all(FLUID_HU_RANGE[0] <= v <= HAEMOTHORAX_HU_RANGE[1] for v in hu)
    share = np.mean([v >= HAEMOTHORAX_HU_RANGE[0] for v in hu])
    assert 0.05 < share < 0.3


def test_deterministic_by_seed_and_seeds_differ(ct, effusion):
    same = simulate_effusion(ct.hu, ct.geometry, seed=3, labels=ct.labels, family="crescent")
    assert np.array_equal(same.hu, effusion.hu) and same.params == effusion.params
    other = simulate_effusion(ct.hu, ct.geometry, seed=4, labels=ct.labels, family="crescent")
    assert not np.array_equal(other.mask, effusion.mask)


def test_side_is_respected_and_cranio_caudal_extent_starts_at_the_base(ct):
    right = simulate_effusion(ct.hu, ct.geometry, seed=5, labels=ct.labels, side="right", family="crescent")
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


@pytest.mark.parametrize("kind", ["mass", "pleural_mass", "dependent_atelectasis"])
def test_confounders_change_only_lung_and_are_not_fluid(ct, lungs, kind):
    from CTCounterfactualLib.data.confounders import MASS_PLEURA_GAP_MM, simulate_confounder

    c = simulate_confounder(ct.hu, lungs, seed=1, kind=kind)
    assert c.mask.sum() > 50 and not (c.mask & ~lungs.both).any()
    assert np.array_equal(c.hu != ct.hu, c.mask)
    if kind == "mass":  # solid tissue inside the lung, clear of the pleura (where fluid would lie)
        solid = c.mask & (c.hu > -100)
        assert solid.sum() > 20 and lungs.depth[solid].min() >= MASS_PLEURA_GAP_MM - 2 * ct.geometry.spacing[0]
    elif kind == "pleural_mass":  # solid tissue bulging from the chest wall into the lung
        solid = c.mask & (c.hu > -100)
        assert solid.sum() > 20 and lungs.depth[solid].min() == 0 and lungs.depth[solid].max() > 5
    else:  # denser than lung, far less dense than fluid, at the back
        assert -700 < c.hu[c.mask].mean() < -150
        assert _posterior_mm(ct, c.mask) > 20
