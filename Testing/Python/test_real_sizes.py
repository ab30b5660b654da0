"""Real sizes: the search on the model's grid, the fitted output map with its fidelity check, the scale-free lambda."""

from pathlib import Path

import numpy as np
import pytest
import torch

from CTCounterfactualLib.data.volume_io import read_volume
from CTCounterfactualLib.jobs.demo import make_demo_input
from CTCounterfactualLib.method.explain import ExplainConfig, explain
from CTCounterfactualLib.method.search import next_lambda
from CTCounterfactualLib.models.autoencoder import PUBLISHED_CT_CONVENTION, SliceAutoencoder
from CTCounterfactualLib.models.classifier import Classifier
from CTCounterfactualLib.models.conventions import SliceConvention, VolumeConvention
from CTCounterfactualLib.params import SearchParams
from CTCounterfactualLib.store.catalog import load_bundled_autoencoder, load_bundled_classifier
from CTCounterfactualLib.training.tiny_models import TinyVolumeNet, center_classifier, tiny_autoencoder

DATA = Path(__file__).resolve().parents[1] / "Data"
REFERENCE = SearchParams(step_size=1e4, max_steps=1e9, lambda_scale="reference", counterfactual="decoded")


@pytest.fixture(scope="module")
def ct() -> np.ndarray:
    """16 real CT slices, 40 x 48 in-plane (the autoencoder's 16 x 16 grid is smaller)."""
    return read_volume(DATA / "example_ct.nii.gz").array[88:104, 30:70, 37:85].copy()


def _sized_models(ct):
    ae = tiny_autoencoder(seed=3, size=16).to("cpu", torch.float32)
    torch.manual_seed(4)
    net = TinyVolumeNet(2, 4).eval()
    with torch.no_grad():
        net.head.weight.mul_(2000.0)
    clf = Classifier(net, ["effusion", "lung size"], VolumeConvention(size=16)).to("cpu", torch.float32)
    center_classifier(clf, ae, torch.as_tensor(ct), prob=0.9)
    return ae, clf


def test_grid_slices_resized_equal_decoding_at_full_size():
    conv = SliceConvention(size=16, rot90_k=1, flip=True)
    out = torch.randn(3, 1, 16, 16)
    for hw in [(40, 48), (48, 40), (64, 64)]:
        full = conv.from_model(out, hw)
        assert torch.equal(conv.resample(conv.from_model(out, (16, 16)), hw), full), hw


def test_search_on_the_model_grid_decodes_small_and_stays_close_to_the_input_resolution(ct):
    ae, clf = _sized_models(ct)
    shapes: list[tuple[int, ...]] = []
    cfg = dict(target=0, mode="joint", search=REFERENCE, output_map="reference", batch_size=16)
    handle = ae.model.decoder.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[-2:])))
    try:
        grid = explain(ct, ae, clf, ExplainConfig(**cfg))
    finally:
        handle.remove()
    full = explain(ct, ae, clf, ExplainConfig(**cfg, search_resolution="input"))
    assert grid.settings["search_resolution"] == "model" and full.settings["search_resolution"] == "input"
    assert set(shapes) == {(16, 16)}  # the decoder's own grid; the 40 x 48 slices come from resizes
    assert grid.counterfactual_hu.shape == ct.shape and grid.heatmap.shape == ct.shape
    assert grid.chunks[0].lam != 0 and np.abs(grid.difference_hu).max() > 1.0
    # the written reconstruction is the full-size decode: rescored at full size it scores as the input path's
    assert grid.predictions["reconstruction"] == pytest.approx(full.predictions["reconstruction"], abs=1e-5)
    assert np.abs(grid.reconstruction_hu - full.reconstruction_hu).max() < 0.05
    # the search itself saw the grid: its prediction of D(z) is recorded beside the full-size one
    assert abs(grid.predictions["reconstruction_search"] - grid.predictions["reconstruction"]) < 0.05


class _Identity(torch.nn.Module):
    """A perfect "autoencoder": encode and decode are the identity."""

    def encode(self, x):
        return x

    def decode(self, z):
        return z


def _body_volume() -> np.ndarray:
    """4 slices of 256 x 256 (the published size, so nothing is resized): air, a body, lungs, bone."""
    y, x = np.mgrid[:256, :256].astype(np.float32)
    hu = np.full((4, 256, 256), -1000.0, dtype=np.float32)
    body = (y - 128) ** 2 / 100**2 + (x - 128) ** 2 / 115**2 < 1
    lungs = ((y - 120) ** 2 / 60**2 + (np.abs(x - 128) - 50) ** 2 / 35**2) < 1
    hu[:, body] = 40.0 + 20.0 * np.sin(x[body] / 9.0)
    hu[:, lungs] = -850.0 + 30.0 * np.cos(y[lungs] / 7.0)
    hu[:, (y - 200) ** 2 + (x - 128) ** 2 < 12**2] = 700.0
    return hu


@pytest.mark.parametrize("output_map", ["reference", "calibrated"])
def test_identity_autoencoder_under_the_published_convention(output_map):
    hu = _body_volume()
    ae = SliceAutoencoder(_Identity(), PUBLISHED_CT_CONVENTION, name="identity")
    clf = Classifier(TinyVolumeNet(1, 2).eval(), ["t"], VolumeConvention(size=16))
    cfg = ExplainConfig(target=0, mode="joint", output_map=output_map, search=SearchParams(max_steps=30.0))
    r = explain(hu, ae, clf, cfg)
    fid = r.fidelity
    assert fid["output_map"] == output_map
    if output_map == "reference":
        # the reference's (x+2)/4 after x*2-1: a perfect autoencoder returns half the input's HU contrast
        assert np.abs(r.reconstruction_hu - hu / 2).max() < 0.5
        assert fid["slope"] == pytest.approx(0.5, abs=1e-3) and fid["mae_hu_body"] > 100
        assert len(r.warnings) == 1 and "slope 0.50" in r.warnings[0] and "--output-map calibrated" in r.warnings[0]
    else:
        assert np.abs(r.reconstruction_hu - hu).max() < 1.0
        assert fid["slope"] == pytest.approx(1.0, abs=1e-3) and fid["mae_hu_body"] < 1.0
        assert fid["calibration"]["scale"] == pytest.approx(2.0, abs=1e-3)
        assert r.warnings == []


def test_auto_output_map_follows_the_convention_and_faithful_keeps_the_reference():
    hu = _body_volume()[:2]
    clf = Classifier(TinyVolumeNet(1, 2).eval(), ["t"], VolumeConvention(size=16))
    search = SearchParams(max_steps=10.0)
    published = SliceAutoencoder(_Identity(), PUBLISHED_CT_CONVENTION)
    inverse = SliceAutoencoder(_Identity(), PUBLISHED_CT_CONVENTION.with_output_fit(2.0, -0.5))
    assert inverse.convention.output_inverts_input and not published.convention.output_inverts_input
    assert (
        explain(hu, published, clf, ExplainConfig(target=0, search=search, chunk_size=2)).settings["output_map"]
        == "calibrated"
    )
    assert (
        explain(hu, inverse, clf, ExplainConfig(target=0, search=search, chunk_size=2)).settings["output_map"]
        == "reference"
    )
    faithful = explain(hu, published, clf, ExplainConfig(target=0, search=search, chunk_size=2, faithful=True))
    assert faithful.settings["output_map"] == "reference" and faithful.settings["lambda_scale"] == "reference"


class _Scaled(torch.nn.Module):
    """A regression output (no sigmoid) multiplied by ``k``."""

    def __init__(self, net: torch.nn.Module, k: float):
        super().__init__()
        self.net, self.k = net, k

    def forward(self, x):
        return self.net(x) * self.k


def test_scale_free_lambda_gives_the_same_counterfactual_for_any_output_scale(ct):
    ae = tiny_autoencoder(seed=3).to("cpu", torch.float32)
    torch.manual_seed(5)
    net = TinyVolumeNet(1, 4).eval()
    with torch.no_grad():
        net.head.bias.fill_(3.0)  # a positive "size" to shrink
    results = []
    for k in (1e-3, 1.0, 1e3):
        clf = Classifier(_Scaled(net, k), ["lung size"], VolumeConvention(), apply_sigmoid=False)
        results.append(explain(ct, ae, clf, ExplainConfig(target=0, mode="joint", search=SearchParams())))
    lams = [r.chunks[0].lam for r in results]
    assert lams[0] != 0 and lams == [lams[0]] * 3
    assert len({r.chunks[0].stop_reason for r in results}) == 1
    for r in results[1:]:
        assert np.abs(r.counterfactual_hu - results[0].counterfactual_hu).max() < 0.05  # HU
    units = [r.chunks[0].lambda_unit for r in results]
    assert units[0] == pytest.approx(units[1] * 1e3, rel=1e-4) and units[2] == pytest.approx(units[1] * 1e-3, rel=1e-4)


def _steps_to(lam: float, step: float) -> int:
    n, value = 0, 0.0
    while value > lam:
        value, n = next_lambda(value, step), n + 1
    return n


@pytest.fixture(scope="module")
def demo_ct():
    return make_demo_input()


@pytest.mark.parametrize("model,target", [("demo-effusion", "pleural effusion"), ("demo-lungsize", "lung size")])
def test_bundled_targets_stop_on_a_rule_within_60_steps(model, target, demo_ct):
    """The bundled models on the demo CT (4 slices in the middle of its effusion) with the scale-free lambda."""
    rows = np.flatnonzero(demo_ct.effusion.any(axis=(1, 2)))
    a = int(rows[len(rows) // 2]) - 2
    ae, clf = load_bundled_autoencoder()[0], load_bundled_classifier(model)[0]
    cfg = ExplainConfig(target=target, slices=(a, a + 4), chunk_size=4)
    r = explain(demo_ct.hu, ae, clf, cfg)
    c = r.chunks[0]
    assert r.settings["lambda_scale"] == "auto"
    assert not c.stop_reason.startswith("lambda reached"), c.stop_reason
    assert c.lam < 0 and _steps_to(c.lam, cfg.search.step_size) <= 60
    assert c.prediction_min < c.prediction_before


def test_cli_prints_the_fidelity_and_warns_in_one_line(tmp_path, small_ct, tiny_model_files, capsys):
    import json

    from cli_runner import run_main

    ae, clf = tiny_model_files
    out = tmp_path / "r"
    argv = ["explain", small_ct, "--out", out, "--autoencoder", ae, "--classifier", clf, "--target", "effusion"]
    argv += ["--slices", "4:8", "--chunk-size", "4", "--progress", "none", "--output-map", "reference"]
    assert run_main([*argv, "--max-steps", "30", "--lambda-sweep-steps", "2"]) == 0
    std = capsys.readouterr()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["output_map"] == "reference" and summary["lambda_scale"] == "auto"
    assert "autoencoder fidelity in the body: mean error" in std.out
    # the random tiny VQ-GAN reconstructs nothing: one warning line, in the summary and on stderr
    warnings = [line for line in std.err.splitlines() if line.startswith("ctcf: warning: ")]
    assert len(warnings) == 1 and summary["warnings"] == [warnings[0].removeprefix("ctcf: warning: ")]
    assert set(summary["fidelity"]) >= {"mae_hu_body", "slope", "intercept", "output_map"}
