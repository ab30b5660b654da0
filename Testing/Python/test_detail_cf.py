"""The detail-preserving counterfactual x + (D(z') - D(z)): its exact latent direction, untouched voxels, and
predictions that are the written volume's."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.errors import CTCFError
from CTCounterfactualLib.method.explain import ExplainConfig, direction, explain
from CTCounterfactualLib.method.prepare import Timer, prepare
from CTCounterfactualLib.method.view import clip_changed
from CTCounterfactualLib.models.conventions import VolumeConvention
from CTCounterfactualLib.params import SearchParams
from CTCounterfactualLib.progress import noop_progress
from CTCounterfactualLib.training.tiny_models import center_classifier, tiny_autoencoder, tiny_classifier

DATA = Path(__file__).resolve().parents[1] / "Data"
ACTIVE = SearchParams(step_size=1e4, max_steps=1e9, lambda_scale="reference")


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    """24 real CT slices, 40 x 48 in-plane, with bone above and air below the 2000 HU window."""
    hu = read_volume(DATA / "example_ct.nii.gz").array[84:108, 30:70, 37:85].astype(np.float32)
    assert hu.max() > 1000 and hu.min() < -1000
    return hu


def _models(ct, dtype=torch.float32, prob=0.9, size=None):
    """Tiny random models; with ``size`` both resize slices to it (so the search runs on that grid)."""
    ae = tiny_autoencoder(seed=3, size=size).to("cpu", dtype)
    clf = tiny_classifier(seed=4, gain=2000.0)
    clf = dataclasses.replace(clf, convention=VolumeConvention(size=size)).to("cpu", dtype)
    center_classifier(clf, ae, torch.as_tensor(ct, dtype=dtype), prob=prob)
    return ae, clf


def _region(ct) -> np.ndarray:
    region = np.zeros(ct.shape, bool)
    region[6:14, 10:30, 8:28] = True
    return region


@pytest.mark.parametrize("masked,raise_", [(False, False), (True, False), (False, True)])
def test_detail_direction_is_the_gradient_of_the_volume_the_search_scores(ct, masked, raise_):
    """J_D(z)^T (M * grad p(x)), the streamed direction, equals autograd of p(x + M (D(z') - D(z))) at z' = z,
    clip included (float64); for --direction raise, of 1 - p."""
    ae, clf = _models(ct, torch.float64)
    search = SearchParams(direction="raise" if raise_ else "lower")
    cfg = ExplainConfig(
        target=0, search=search, search_resolution="input", dtype=torch.float64, batch_size=5,
        region_mask=_region(ct) if masked else None,
    )  # fmt: skip
    prep = prepare(ct, ae, clf, cfg, Timer(), noop_progress)
    d = direction(prep)
    window, hw = prep.ae.window, ct.shape[-2:]
    x = window.to_unit(torch.as_tensor(ct, dtype=torch.float64))
    m = torch.as_tensor(_region(ct), dtype=torch.float64) if masked else 1.0
    z = prep.enc.z.clone().requires_grad_(True)
    seen = clip_changed(x, x + m * (prep.ae.decode(z, hw) - prep.enc.x0), 0.0, 1.0)
    p = clf.score(window.to_hu(seen), 0, clip=True)
    (g_ref,) = torch.autograd.grad(1 - p if raise_ else p, z)
    assert float(g_ref.abs().max()) > 0
    rel = float((d.g - g_ref).norm() / g_ref.norm())
    assert rel < 1e-8, rel
    # the starting point is the input's own prediction, not the reconstruction's
    assert d.prediction == pytest.approx(1 - prep.input_pred if raise_ else prep.input_pred, abs=1e-9)


@pytest.mark.parametrize("size", [None, 16])
def test_detail_cf_is_the_input_where_nothing_changed_and_scores_as_written(ct, size):
    """Off and on the model's grid: slices outside the output chunk are the input bit for bit (bone and air
    beyond the window too); changed voxels stay within [min(x, low), max(x, high)]; the reported predictions are
    the input's and the written CF's."""
    ae, clf = _models(ct, size=size)
    r = explain(ct, ae, clf, ExplainConfig(target=0, slices=(2, 20), chunk_size=6))
    assert r.settings["counterfactual"] == "detail" and r.settings["difference"] == "counterfactual - input"
    c = r.chunks[r.chosen]
    a, b = c.start, c.stop
    cf = r.counterfactual_hu
    outside = np.ones(len(ct), bool)
    outside[a:b] = False
    assert np.array_equal(cf[outside], ct[outside])
    assert np.abs(cf[a:b] - ct[a:b]).max() > 1.0  # the chunk did move
    low, high = ae.window.low, ae.window.high
    assert (cf >= np.minimum(ct, low)).all() and (cf <= np.maximum(ct, high)).all()
    assert np.array_equal(r.difference_hu, cf - ct)
    with torch.no_grad():
        score = lambda v: float(clf.score(torch.as_tensor(v), 0, clip=True))  # noqa: E731
        assert r.predictions["input"] == pytest.approx(score(ct), abs=1e-6)
        assert r.predictions["counterfactual"] == pytest.approx(score(cf), abs=1e-6)
    assert r.predictions["counterfactual"] < r.predictions["input"]
    if size is None:  # off the grid the search scored this very volume, from the input's prediction
        assert c.prediction_before == pytest.approx(r.predictions["input"], abs=1e-5)
        assert c.prediction_cf == pytest.approx(r.predictions["counterfactual"], abs=1e-5)
    else:
        assert r.settings["search_resolution"] == "model" and "input_search" in r.predictions


def test_decoded_cf_stays_selectable_and_differs_from_the_detail_cf(ct):
    ae, clf = _models(ct)
    cfg = dict(target=0, mode="joint", search_resolution="input")
    decoded = explain(ct, ae, clf, ExplainConfig(**cfg, search=SearchParams(counterfactual="decoded", max_steps=200)))
    detail = explain(ct, ae, clf, ExplainConfig(**cfg, search=SearchParams(max_steps=200)))
    assert decoded.settings["counterfactual"] == "decoded"
    assert np.allclose(decoded.difference_hu, decoded.counterfactual_hu - decoded.reconstruction_hu, atol=1e-3)
    # the decoded CF re-renders every voxel; the detail CF is the input plus the decoder's (small) change
    off_decoded, off_detail = np.abs(decoded.counterfactual_hu - ct), np.abs(detail.counterfactual_hu - ct)
    assert (off_decoded > 0).mean() > 0.99
    assert off_detail.mean() < off_decoded.mean() / 5
    assert detail.metrics["proximity_hu"] < decoded.metrics["proximity_hu"] / 5
    assert decoded.chunks[0].prediction_before == pytest.approx(decoded.predictions["reconstruction"], abs=1e-5)


def test_faithful_takes_no_variant_and_keeps_the_decoded_cf(ct):
    ae, clf = _models(ct)
    for search in (
        SearchParams(sparse_fraction=0.5),
        SearchParams(direction="raise"),
        SearchParams(relinearize_every=2),
    ):
        with pytest.raises(CTCFError, match="--faithful"):
            explain(ct, ae, clf, ExplainConfig(target=0, faithful=True, search=search))
    r = explain(ct, ae, clf, ExplainConfig(target=0, faithful=True, chunk_size=12, search=SearchParams(max_steps=20)))
    assert r.settings["counterfactual"] == "decoded"
