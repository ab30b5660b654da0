"""Training data of the real-anatomy effusion classifier: pairs that differ only by fluid, scans of different
lengths, and the scanner augmentation."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from CTCounterfactualLib.data.chest_grid import resample_chest
from CTCounterfactualLib.data.demo_ct import load_demo_ct
from CTCounterfactualLib.training.classifier import EFFUSION_CONVENTION
from CTCounterfactualLib.training.effusion_real import effusion_pairs, scanner_augment


@pytest.fixture(scope="module")
def scans():
    demo = load_demo_ct()
    full = resample_chest(demo.hu, demo.geometry, demo.labels, name="full")
    # a second, shorter scan: the same patient without its top 10 slices (its geometry keeps the first slice)
    short = dataclasses.replace(full, hu=full.hu[:-10], labels=full.labels[:-10], name="short")
    short = dataclasses.replace(short, geometry=dataclasses.replace(full.geometry, size=(128, 128, len(short.hu))))
    return full, short


def test_pairs_differ_only_by_fluid_and_keep_every_slice(scans):
    full, short = scans
    x, y, masks = effusion_pairs([full, short], [3, 4], EFFUSION_CONVENTION)
    assert x.shape[0] == 4 and x.shape[2] == full.hu.shape[0]  # the longest scan's depth: nothing cropped
    assert y.tolist() == [1.0, 0.0, 1.0, 0.0]
    for pos in (0, 2):
        changed = (x[pos] != x[pos + 1]).any(0)
        assert changed.any()
        # the classes differ only where there is fluid (the classifier's in-plane resize spreads a change by up to
        # one voxel of its grid beyond the area-resampled mask)
        near_fluid = torch.nn.functional.max_pool3d(masks[pos][None], (1, 3, 3), stride=1, padding=(0, 1, 1))[0, 0]
        assert not changed[near_fluid == 0].any()
        assert masks[pos + 1].abs().sum() == 0  # the negative's mask is empty
    # the short scan (pair 2) is extended at its cranial end by repeating its top slice, with no fluid there
    n = short.hu.shape[0]
    assert torch.equal(x[3, :, n:], x[3, :, n - 1 : n].expand_as(x[3, :, n:]))
    assert masks[2, :, n:].abs().sum() == 0


def test_scanner_augment_is_seeded_and_leaves_masks_as_masks(scans):
    x, _, masks = effusion_pairs([scans[0]], [3, 4], EFFUSION_CONVENTION)
    xb = torch.cat([x, masks], 1)
    a = scanner_augment(xb, torch.Generator().manual_seed(7))
    b = scanner_augment(xb, torch.Generator().manual_seed(7))
    c = scanner_augment(xb, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == xb.shape
    m = a[:, 1]
    assert m.min() >= -1e-6 and m.max() <= 1 + 1e-6  # no intensity change or noise on the mask channel
    assert m[1].abs().max() < 1e-6 and m[0].sum() > 0  # the negative stays without fluid, the positive keeps it
    assert not torch.equal(a[:, 0], xb[:, 0])
