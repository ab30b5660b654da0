"""A warm engine's reuse: the second explain() on the same input takes the encoding and the gradient from the first,
and gives exactly what a fresh call gives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.method.explain import ExplainConfig, explain
from CTCounterfactualLib.method.reuse import ENCODING, GRADIENT, Reuse
from CTCounterfactualLib.params import SearchParams
from CTCounterfactualLib.training.tiny_models import center_classifier, tiny_autoencoder, tiny_classifier

DATA = Path(__file__).resolve().parents[1] / "Data"
SEARCH = SearchParams(step_size=1e4, max_steps=1e9, lambda_scale="reference")


@pytest.fixture(scope="module")
def setup():
    ct = read_volume(DATA / "example_ct.nii.gz").array[84:108, 30:70, 37:85].copy()
    ae = tiny_autoencoder(seed=3)
    clf = tiny_classifier(seed=4, gain=2000.0)
    center_classifier(clf, ae, torch.as_tensor(ct, dtype=torch.float32), prob=0.9)
    return ct, ae, clf


def _same(a, b) -> None:
    for name in ("counterfactual_hu", "reconstruction_hu", "heatmap", "difference_hu"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.predictions == b.predictions
    assert [c.__dict__ for c in a.chunks] == [c.__dict__ for c in b.chunks]


def test_another_chunk_size_reuses_encoding_and_gradient_and_equals_a_fresh_run(setup):
    ct, ae, clf = setup
    reuse = Reuse()
    first_cfg = ExplainConfig(target=0, slices=(4, 20), chunk_size=4, search=SEARCH, batch_size=5)
    first = explain(ct, ae, clf, first_cfg, reuse=reuse)
    assert reuse.reused == [] and "encode" in first.timings
    second_cfg = replace(first_cfg, chunk_size=8)
    events = []
    second = explain(ct.copy(), ae, clf, second_cfg, lambda *a, **k: events.append(a[0]), reuse=reuse)
    assert reuse.reused == [ENCODING, GRADIENT]
    assert "encode" not in second.timings and "decode" not in second.timings
    assert "encode" not in events and "gradient" not in events and "search" in events
    _same(second, explain(ct, ae, clf, second_cfg))  # exactly a fresh run's result
    third = explain(ct, ae, clf, first_cfg, reuse=reuse)
    _same(third, first)


def test_another_range_reuses_the_encoding_only(setup):
    ct, ae, clf = setup
    reuse = Reuse()
    cfg = ExplainConfig(target=0, slices=(4, 20), chunk_size=4, search=SEARCH, batch_size=5)
    explain(ct, ae, clf, cfg, reuse=reuse)
    other = replace(cfg, slices=(8, 16))
    result = explain(ct, ae, clf, other, reuse=reuse)
    assert reuse.reused == [ENCODING]
    _same(result, explain(ct, ae, clf, other))


def test_nothing_is_reused_for_another_volume_target_or_model(setup):
    ct, ae, clf = setup
    reuse = Reuse()
    cfg = ExplainConfig(target=0, slices=(4, 20), chunk_size=4, search=SEARCH, batch_size=5)
    explain(ct, ae, clf, cfg, reuse=reuse)
    changed = ct.copy()
    changed[10, 20, 20] += 100.0  # one voxel
    explain(changed, ae, clf, cfg, reuse=reuse)
    assert reuse.reused == []
    explain(changed, ae, clf, replace(cfg, batch_size=3), reuse=reuse)
    assert reuse.reused == []
    other_ae = tiny_autoencoder(seed=3)
    explain(changed, other_ae, clf, replace(cfg, batch_size=3), reuse=reuse)
    assert reuse.reused == []
    explain(changed, other_ae, clf, replace(cfg, batch_size=3), reuse=reuse)
    assert reuse.reused == [ENCODING, GRADIENT]


def test_a_request_the_volume_does_not_allow_is_still_refused(setup):
    from CTCounterfactualLib.errors import CTCFError

    ct, ae, clf = setup
    reuse = Reuse()
    cfg = ExplainConfig(target=0, slices=(4, 20), chunk_size=4, search=SEARCH, batch_size=5)
    explain(ct, ae, clf, cfg, reuse=reuse)
    with pytest.raises(CTCFError, match="chunk size"):
        explain(ct, ae, clf, replace(cfg, chunk_size=40), reuse=reuse)


@pytest.mark.parametrize(
    "change",
    [{"counterfactual": "decoded"}, {"direction": "raise"}, {"region": "mask"}],
    ids=["counterfactual", "direction", "region"],
)
def test_another_cf_kind_direction_or_region_takes_nothing_and_equals_a_fresh_run(setup, change):
    """The direction is the gradient of another objective, at another volume or under another mask: nothing kept
    from a run without the change may serve it."""
    ct, ae, clf = setup
    reuse = Reuse()
    cfg = ExplainConfig(target=0, slices=(4, 20), chunk_size=4, search=SEARCH, batch_size=5)
    explain(ct, ae, clf, cfg, reuse=reuse)
    region = np.zeros(ct.shape, bool)
    region[6:14, 10:30, 10:30] = True
    other = replace(cfg, search=replace(SEARCH, **change), region_mask=region if "region" in change else None)
    result = explain(ct, ae, clf, other, reuse=reuse)
    assert reuse.reused == []
    _same(result, explain(ct, ae, clf, other))
    explain(ct, ae, clf, other, reuse=reuse)
    assert reuse.reused == [ENCODING, GRADIENT]
