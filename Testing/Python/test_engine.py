"""The engine's core promises: exact streamed gradient, fast path == paper-faithful path, search rules."""

from pathlib import Path

import numpy as np
import pytest
import torch

from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.method.explain import ExplainConfig, chunk_bounds, explain
from CTCounterfactualLib.method.latent_ops import (
    decode_slices,
    encode_volume,
    faithful_chunk_gradient,
    latent_gradient,
    volume_gradient,
)
from CTCounterfactualLib.method.search import ZERO_GRADIENT
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.params import SearchParams
from CTCounterfactualLib.training.tiny_models import center_classifier, tiny_autoencoder, tiny_classifier

# a search that does real work on the random tiny models: big steps, no lambda cap; the reference's decoded CF
ACTIVE_SEARCH = SearchParams(step_size=1e4, max_steps=1e9, lambda_scale="reference", counterfactual="decoded")
# the fast path at the input's resolution with the reference's output map: what must equal --faithful
EXACT = dict(search_resolution="input", output_map="reference")


DATA = Path(__file__).resolve().parents[1] / "Data"


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    """24 real CT slices, 40 x 48 in-plane: small but not square."""
    return read_volume(DATA / "example_ct.nii.gz").array[84:108, 30:70, 37:85].copy()


def _models(ct: np.ndarray, dtype=torch.float32, gain: float = 2000.0):
    ae = tiny_autoencoder(seed=3).to("cpu", dtype)
    clf = tiny_classifier(seed=4, gain=gain).to("cpu", dtype)
    center_classifier(clf, ae, torch.as_tensor(ct, dtype=dtype), prob=0.9)
    return ae, clf


def test_streamed_gradient_equals_autograd_through_every_slice(ct):
    ae, clf = _models(ct, torch.float64)
    hw = ct.shape[-2:]
    unit = ae.window.to_unit(torch.as_tensor(ct, dtype=torch.float64)).clamp(0, 1)
    z = encode_volume(ae, unit, batch=5)

    def score(u):
        return clf.score(ae.window.to_hu(u), 0)

    # reference: plain autograd through the decoder of every slice at once
    zz = z.clone().requires_grad_(True)
    pred_ref = score(ae.decode(zz, hw))
    (g_ref,) = torch.autograd.grad(pred_ref, zz)

    x0 = decode_slices(ae, z, hw, batch=7)
    pred, gvol = volume_gradient(score, x0)
    for batch in (1, 5, 24):
        g = latent_gradient(ae, z, gvol, 0, z.shape[0], batch)
        rel = float((g - g_ref).norm() / g_ref.norm())
        assert rel < 1e-5, (batch, rel)
    assert abs(pred - float(pred_ref.detach())) < 1e-10
    assert float(g_ref.abs().max()) > 0


def test_chunk_gradient_is_the_full_gradient_masked(ct):
    ae, clf = _models(ct, torch.float64)
    hw = ct.shape[-2:]
    unit = ae.window.to_unit(torch.as_tensor(ct, dtype=torch.float64)).clamp(0, 1)
    z = encode_volume(ae, unit, batch=8)
    x0 = decode_slices(ae, z, hw, batch=8)

    def score(u):
        return clf.score(ae.window.to_hu(u), 0)

    _, gvol = volume_gradient(score, x0)
    g = latent_gradient(ae, z, gvol, 0, z.shape[0], 8)
    for a, b in [(0, 6), (10, 17), (20, 24)]:
        _, g_chunk = faithful_chunk_gradient(ae, score, z, hw, a, b, batch=8)
        assert not g_chunk[:a].any() and not g_chunk[b:].any()
        rel = float((g_chunk[a:b] - g[a:b]).norm() / g[a:b].norm())
        assert rel < 1e-8, (a, b, rel)


@pytest.mark.parametrize("mode,chunk", [("scan", 6), ("joint", 24)])
def test_fast_path_matches_paper_faithful(ct, mode, chunk):
    ae, clf = _models(ct)
    cfg = dict(target="effusion", chunk_size=chunk, mode=mode, search=ACTIVE_SEARCH, batch_size=4)
    fast = explain(ct, ae, clf, ExplainConfig(**cfg, **EXACT))
    slow = explain(ct, ae, clf, ExplainConfig(**cfg, faithful=True))
    assert [c.lam for c in fast.chunks] == [c.lam for c in slow.chunks]
    assert any(c.lam != 0 for c in fast.chunks)
    for f, s in zip(fast.chunks, slow.chunks, strict=True):
        assert f.stop_reason == s.stop_reason
        assert np.allclose(f.sweep_predictions, s.sweep_predictions, atol=1e-5, rtol=0)
        assert abs(f.prediction_min - s.prediction_min) < 1e-5
    for k in ("reconstruction", "counterfactual"):
        assert abs(fast.predictions[k] - slow.predictions[k]) < 1e-5
    assert fast.chosen == slow.chosen
    assert np.abs(fast.counterfactual_hu - slow.counterfactual_hu).max() / 2000 < 1e-4
    assert np.abs(fast.heatmap - slow.heatmap).max() / 2000 < 1e-4
    # the CF really moved and the prediction fell
    assert np.abs(fast.difference_hu).max() > 1.0
    assert fast.predictions["counterfactual_min"] < fast.predictions["reconstruction"]


def test_scan_changes_only_the_output_chunk_and_heatmaps_stay_in_their_chunks(ct):
    ae, clf = _models(ct)
    r = explain(ct, ae, clf, ExplainConfig(target=0, slices=(2, 20), chunk_size=5, search=ACTIVE_SEARCH))
    assert [(c.start, c.stop) for c in r.chunks] == [(2, 7), (7, 12), (12, 17), (17, 20)]
    best = r.chunks[r.chosen]
    assert best.prediction_min == min(c.prediction_min for c in r.chunks)
    moved = np.abs(r.difference_hu).reshape(len(ct), -1).max(1) > 0
    assert moved[best.start : best.stop].any()
    assert not moved[: best.start].any() and not moved[best.stop :].any()
    heat = r.heatmap.reshape(len(ct), -1).max(1)
    assert (r.heatmap >= 0).all()
    assert heat[:2].max() == 0 and heat[20:].max() == 0
    assert np.array_equal(r.counterfactual_hu - r.reconstruction_hu, r.difference_hu) or np.allclose(
        r.counterfactual_hu - r.reconstruction_hu, r.difference_hu, atol=1e-3
    )


def test_slices_the_classifier_ignores_are_not_searched_and_not_changed(ct):
    """A classifier blind to slices 8 on (its input is zeroed there) has an exactly zero gradient on them: the
    fast path stops those chunks at once, the reference walks them to the lambda limit, and both leave them be."""
    ae, clf = _models(ct)
    blind = Classifier(
        lambda x: clf.module(x * (torch.arange(x.shape[2]) < 8).to(x.dtype).view(1, 1, -1, 1, 1)),
        clf.targets,
        clf.convention,
        name="blind",
    )
    cfg = dict(target=0, chunk_size=8, search=SearchParams(max_steps=200, counterfactual="decoded"), batch_size=8)
    fast = explain(ct, ae, blind, ExplainConfig(**cfg, **EXACT))
    slow = explain(ct, ae, blind, ExplainConfig(**cfg, faithful=True))
    assert [c.stop_reason == ZERO_GRADIENT for c in fast.chunks] == [False, True, True]
    assert all("lambda reached" in c.stop_reason for c in slow.chunks[1:])
    for f, s in zip(fast.chunks[1:], slow.chunks[1:], strict=True):
        assert f.lam == 0.0 and f.prediction_min == pytest.approx(s.prediction_min, abs=1e-5)
        assert f.sweep_predictions == [f.prediction_min] * len(f.sweep_predictions)


def test_search_decodes_only_the_moved_slices(ct):
    ae, clf = _models(ct)
    decoded: list[int] = []
    handle = ae.model.decoder.register_forward_hook(lambda m, i, o: decoded.append(o.shape[0]))
    try:
        r = explain(
            ct, ae, clf, ExplainConfig(target=0, slices=(6, 12), chunk_size=6, search=ACTIVE_SEARCH, batch_size=24)
        )
    finally:
        handle.remove()
    # one full decode for D(z), one VJP pass over the range, then only 6-slice decodes
    assert decoded[0] == len(ct)
    assert decoded[1] == 6
    assert set(decoded[2:]) == {6}
    c = r.chunks[0]
    evaluated = {lam for lam in c.sweep_lambdas if lam != 0.0}
    assert len(decoded[2:]) >= len(evaluated)


@pytest.mark.parametrize("faithful", [False, True])
def test_joint_search_progress_counts_decodes_up_to_an_exact_end(ct, faithful):
    """One chunk (joint): the bar counts evaluated lambdas against the most still possible, so it has a time left."""
    ae, clf = _models(ct)
    events: list[tuple[str, int, int]] = []
    # at most 12 search steps + 2 sweep frames
    search = SearchParams(max_steps=200, lambda_sweep_steps=4, counterfactual="decoded")
    cfg = ExplainConfig(target=0, mode="joint", search=search, faithful=faithful, **({} if faithful else EXACT))
    r = explain(ct, ae, clf, cfg, progress=lambda stage, done, total, msg: events.append((stage, done, total)))
    counted = [(d, t) for stage, d, t in events if stage == "search"][1:-1]  # between "started" and "done"
    steps = len(r.chunks[0].sweep_lambdas) - 2 + sum(1 for _ in _schedule_until(r.chunks[0].lam, search.step_size))
    assert [d for d, _ in counted] == list(range(1, steps + 1))
    assert all(d <= t for d, t in counted) and counted[-1] == (steps, steps)
    assert counted[0][1] == 14  # 12 + 2 while the search may still go on


def _schedule_until(lam: float, step: float):
    """The reference schedule's lambdas from its first step down to ``lam``."""
    from CTCounterfactualLib.method.search import next_lambda

    cur = next_lambda(0.0, step)
    while cur >= lam:
        yield cur
        cur = next_lambda(cur, step)


def test_chunk_bounds():
    assert chunk_bounds(0, 10, 4, "scan") == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(3, 9, 3, "scan") == [(3, 6), (6, 9)]
    assert chunk_bounds(3, 9, 3, "joint") == [(3, 9)]
