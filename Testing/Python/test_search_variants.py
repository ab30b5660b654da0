"""Search variants: sparse direction, re-linearized path, region, raise; and the per-run metrics."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.method.explain import ExplainConfig, direction, explain
from CTCounterfactualLib.method.latent_ops import decode_slices
from CTCounterfactualLib.method.metrics import is_valid, top_share
from CTCounterfactualLib.method.path import ChunkContext, ChunkShifter, LatentPath
from CTCounterfactualLib.method.prepare import Timer, prepare
from CTCounterfactualLib.method.search import ZERO_GRADIENT, next_lambda
from CTCounterfactualLib.method.shape import keep_top_positions
from CTCounterfactualLib.method.view import clip_changed
from CTCounterfactualLib.params import SearchParams
from CTCounterfactualLib.progress import noop_progress
from CTCounterfactualLib.training.tiny_models import center_classifier, tiny_autoencoder, tiny_classifier

DATA = Path(__file__).resolve().parents[1] / "Data"


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    return read_volume(DATA / "example_ct.nii.gz").array[84:108, 30:70, 37:85].astype(np.float32)


def _models(ct, dtype=torch.float32, prob=0.9):
    ae = tiny_autoencoder(seed=3).to("cpu", dtype)
    clf = tiny_classifier(seed=4, gain=2000.0).to("cpu", dtype)
    center_classifier(clf, ae, torch.as_tensor(ct, dtype=dtype), prob=prob)
    return ae, clf


def test_keep_top_positions_keeps_the_largest_per_slice_or_per_chunk():
    torch.manual_seed(0)
    g = torch.randn(3, 4, 6, 5)
    mag = g.pow(2).sum(1)
    for per_slice in (True, False):
        kept = keep_top_positions(g, 0.2, per_slice)
        on = kept.abs().sum(1) > 0
        assert torch.equal(kept[on[:, None].expand_as(g)], g[on[:, None].expand_as(g)])  # kept values unchanged
        if per_slice:
            k = math.ceil(0.2 * 30)
            assert on.sum(dim=(1, 2)).tolist() == [k] * 3
            for s in range(3):
                assert mag[s][on[s]].min() >= mag[s][~on[s]].max()
        else:
            assert int(on.sum()) == math.ceil(0.2 * 90)
            assert mag[on].min() >= mag[~on].max()
    assert keep_top_positions(g, 1.0, True) is g


def test_sparse_chunk_direction_decodes_and_changes_only_the_slices_it_keeps(ct):
    ae, clf = _models(ct)
    decoded: list[int] = []
    search = SearchParams(sparse_fraction=0.01, sparse_scope="chunk", max_steps=500)
    handle = ae.model.decoder.register_forward_hook(lambda m, i, o: decoded.append(o.shape[0]))
    try:
        r = explain(ct, ae, clf, ExplainConfig(target=0, mode="joint", search=search, batch_size=24))
    finally:
        handle.remove()
    moved = np.abs(r.counterfactual_hu - ct).reshape(len(ct), -1).max(1) > 0
    assert 0 < moved.sum() < len(ct)
    searched = decoded[2:]  # after D(z) and the direction's VJP pass
    assert searched and max(searched) == moved.sum()  # only the kept slices are decoded
    assert r.predictions["counterfactual"] < r.predictions["input"]


def test_relinearized_path_follows_the_line_then_the_new_gradient(ct):
    """Every 2 new lambdas the direction is recomputed at the last one: the path keeps the straight line up to
    there, and the new direction is the objective's exact gradient at the volume seen there."""
    ae, clf = _models(ct, torch.float64)
    cfg = ExplainConfig(target=0, mode="joint", dtype=torch.float64, search_resolution="input", batch_size=8)
    prep = prepare(ct, ae, clf, cfg, Timer(), noop_progress)
    d = direction(prep)
    ctx = ChunkContext(prep.ae, prep.view, prep.objective_score, prep.view.base.clone(), 8)
    unit = 1e-3 * float(d.z.pow(2).mean().sqrt()) / float(d.g.pow(2).mean().sqrt())
    line = LatentPath(d.z, d.g * unit)
    path = LatentPath(d.z, d.g * unit)
    shifter = ChunkShifter(ctx, path, 0, len(ct), every=2)
    lams = [next_lambda(0.0, 10.0)]
    for _ in range(3):
        lams.append(next_lambda(lams[-1], 10.0))
    for lam in lams:
        shifter(lam)
    assert path.segments == 2 and path.anchors[1][0] == lams[1]
    for lam in lams[:2]:
        assert torch.equal(path.at(lam), line.at(lam))
    assert not torch.allclose(path.at(lams[3]), line.at(lams[3]))
    # the second segment's direction: autograd of the objective at the detail CF of lambda = lams[1]
    hw = ct.shape[-2:]
    z = line.at(lams[1]).clone().requires_grad_(True)
    x = prep.view.x
    seen = clip_changed(x, x + (prep.ae.decode(z, hw) - prep.enc.x0), 0.0, 1.0)
    (g_ref,) = torch.autograd.grad(prep.objective_score(seen), z)
    g_new = path.anchors[1][2]
    assert float((g_new - g_ref).norm() / g_ref.norm()) < 1e-8


def test_relinearize_in_the_engine_records_its_segments(ct):
    ae, clf = _models(ct)
    cfg = dict(target=0, mode="joint", search_resolution="input")
    straight = explain(ct, ae, clf, ExplainConfig(**cfg, search=SearchParams(relinearize_every=1000)))
    bent = explain(ct, ae, clf, ExplainConfig(**cfg, search=SearchParams(relinearize_every=1)))
    assert straight.chunks[0].segments == 1 and bent.chunks[0].segments > 1
    plain = explain(ct, ae, clf, ExplainConfig(**cfg))
    assert np.array_equal(straight.counterfactual_hu, plain.counterfactual_hu)  # never re-linearized: the line
    with torch.no_grad():
        written = float(clf.score(torch.as_tensor(bent.counterfactual_hu), 0, clip=True))
    assert bent.predictions["counterfactual"] == pytest.approx(written, abs=1e-6)


def test_relinearized_sparse_search_keeps_every_new_direction_sparse(ct):
    """Re-linearizing recomputes the gradient over every latent; each new segment is cut to its top positions
    too, so the CF still changes only some slices (a dense new direction would move them all)."""
    ae, clf = _models(ct)
    search = SearchParams(relinearize_every=1, sparse_fraction=0.01, sparse_scope="chunk", max_steps=500)
    r = explain(ct, ae, clf, ExplainConfig(target=0, mode="joint", search=search, batch_size=24))
    assert r.chunks[0].segments > 1
    moved = np.abs(r.counterfactual_hu - ct).reshape(len(ct), -1).max(1) > 0
    assert 0 < moved.sum() < len(ct)
    assert r.predictions["counterfactual"] < r.predictions["input"]


def test_region_changes_only_the_region_and_says_what_that_did(ct):
    ae, clf = _models(ct)
    region = np.zeros(ct.shape, bool)
    region[6:11, 8:32, 10:34] = True
    cfg = ExplainConfig(target=0, slices=(0, 24), chunk_size=6, region_mask=region, search=SearchParams(region="m"))
    r = explain(ct, ae, clf, cfg)
    changed = r.counterfactual_hu != ct
    assert changed.any() and not changed[~region].any()
    reasons = {(c.start, c.stop): c.stop_reason for c in r.chunks}
    assert [reasons[k] == ZERO_GRADIENT for k in [(0, 6), (6, 12), (12, 18), (18, 24)]] == [True, False, True, True]
    info = r.metrics["region"]
    assert info["voxels"] == int(region.sum()) and info["mean_abs_hu_outside"] == 0.0
    assert info["prediction_after"] == r.predictions["counterfactual"] < info["prediction_before"]
    # the direction itself is zero on latent positions with no region voxel under them
    prep = prepare(ct, ae, clf, cfg, Timer(), noop_progress)
    assert prep.latent_mask[:6].sum() == 0 and prep.latent_mask[6:11].any()


def test_raise_pushes_a_negative_up_and_reports_predictions(ct):
    ae, clf = _models(ct, prob=0.2)
    cfg = dict(target=0, mode="joint", search_resolution="input")
    r = explain(ct, ae, clf, ExplainConfig(**cfg, search=SearchParams(direction="raise")))
    c = r.chunks[0]
    assert r.settings["direction"] == "raise"
    assert r.predictions["input"] < 0.5 and r.predictions["counterfactual"] > r.predictions["input"]
    assert c.prediction_before == pytest.approx(r.predictions["input"], abs=1e-5)  # probabilities, not 1 - p
    assert c.prediction_min == max(c.sweep_predictions)
    assert r.metrics["valid"] == (r.predictions["counterfactual"] >= clf.threshold)


def test_metrics_top_share_and_validity():
    spread = np.ones(1000)
    assert top_share(spread) == pytest.approx(0.01)
    peaked = np.zeros(1000)
    peaked[:10] = 5.0
    assert top_share(peaked) == 1.0
    assert top_share(np.zeros(10)) is None
    assert is_valid(0.4, 0.5, False) and not is_valid(0.6, 0.5, False)
    assert is_valid(0.6, 0.5, True) and is_valid(0.2, None, False) is None


def test_decoding_a_kept_subset_equals_decoding_everything(ct):
    """The shifter decodes only moved slices: a per-slice decoder, so the others are exactly what lambda 0 gives."""
    ae, _ = _models(ct)
    unit = ae.window.to_unit(torch.as_tensor(ct)).clamp(0, 1)
    z = ae.encode(unit[:4])
    all4 = decode_slices(ae, z, ct.shape[-2:], 4)
    two = decode_slices(ae, z[[1, 3]], ct.shape[-2:], 4)
    assert torch.allclose(all4[[1, 3]], two, atol=1e-6)
